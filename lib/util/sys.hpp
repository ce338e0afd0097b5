// Thin syscall wrappers: EINTR is retried here and nowhere else, every open is
// O_CLOEXEC, and fds come back owned by UniqueFd. The Result-returning calls
// are for the hot path; the x-prefixed ones throw layer::Error naming `what`.
// All are thread-safe (they hold no state).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.hpp"
#include "util/unique_fd.hpp"

namespace layer::sys {

template <typename F>
auto retry_eintr(F f) {
  decltype(f()) r;
  do {
    r = f();
  } while (r == -1 && errno == EINTR);
  return r;
}

// openat(2) with O_CLOEXEC added.
Result<UniqueFd> open_at(int dirfd, const char* path, int flags, mode_t mode = 0);

// openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS plus `extra_resolve`
// (e.g. RESOLVE_NO_SYMLINKS, RESOLVE_IN_ROOT): `path` can never leave dirfd.
Result<UniqueFd> open_beneath(int dirfd, const char* path, int flags, mode_t mode = 0,
                              uint64_t extra_resolve = 0);

Result<size_t> read_full(int fd, void* buf, size_t len);   // short only at EOF
Result<size_t> pread_full(int fd, void* buf, size_t len, off_t off);  // the same, at off
Result<void> write_all(int fd, const void* buf, size_t len);
Result<void> fsync_fd(int fd);
// Copies bytes [start, end) of src to the same offsets of dst, in the kernel
// (copy_file_range) where it can, else through a buffer. Stops early at
// src's end.
Result<void> copy_range(int src, int dst, off_t start, off_t end);

// "/proc/self/fd/FD" or "/proc/self/fd/FD/NAME": a path naming what an fd
// (or a name beneath a directory fd) refers to, for calls that take only a
// path (xattrs of symlinks and O_PATH fds, link(2) of an fd). An empty name
// names the fd itself.
std::string proc_path(int fd, std::string_view name = {});

// Throwing forms for the cold path.
UniqueFd xopen_at(int dirfd, const std::string& path, int flags, mode_t mode,
                  const std::string& what);
UniqueFd xopen_dir(const std::string& path);  // O_DIRECTORY | O_RDONLY
void xfsync(int fd, const std::string& what);
void xmkdir_p(const std::string& path, mode_t mode = 0755);

// Reads all of a file beneath dirfd, refusing files over `max` bytes.
std::string xread_file(int dirfd, const std::string& path, size_t max, const std::string& what);

// Writes `data` into tmpdir/tmpname, fsyncs it, renames it to dstdir/dstname
// and fsyncs dstdir: after return the file is whole and durable, and a crash
// at any point leaves either the old state or the new one. `sync_dir` false:
// dstdir is not fsynced, so a crash may still leave the old state (whole).
void xwrite_file_atomic(int tmpdir, const std::string& tmpname, int dstdir,
                        const std::string& dstname, std::string_view data, mode_t mode = 0644,
                        bool sync_dir = true);

// Entry names of directory `name` beneath dirfd (not followed if a symlink),
// sorted, without . and ..; a missing directory is empty.
std::vector<std::string> xlist_dir(int dirfd, const std::string& name);

// Whether `path` beneath dirfd exists (the last component not followed).
bool exists_at(int dirfd, const std::string& path);

// Removes `name` beneath dirfd recursively, never following symlinks.
// Missing is not an error.
void xremove_tree(int dirfd, const std::string& name);

}  // namespace layer::sys
