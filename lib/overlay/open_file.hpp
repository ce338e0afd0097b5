// OpenFile: one open of a non-directory through the overlay, as a program
// holds it. Reads and writes go to the real file; the handle hides that the
// file may move from a lower layer to the upper one after the open (a
// copy-up through another open or name), and that its upper copy may still
// be filling from below (a lazy copy-up, see LazyCopy). Holds a reference on
// its node and, if it may write, counts as a writer of the lazy copy-up.
//
// Thread-safe: the kernel may send several requests for one open at once.
// mu_ guards fd_ and lower_, and is the first mutex in the overlay's lock
// order (overlay.hpp).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <functional>
#include <memory>
#include <mutex>

#include "overlay/node.hpp"
#include "overlay/owners.hpp"
#include "util/result.hpp"
#include "util/thread_annotations.hpp"
#include "util/unique_fd.hpp"

namespace layer::overlay {

class Overlay;
struct Partial;
struct SetAttr;

class OpenFile {
 public:
  // Opens n as open(2) with `flags` (an O_TRUNC or writing open copies it
  // up). `shareable`: the fd is to serve as the backing file of FUSE
  // passthrough for every open of the node: a lazy copy-up is filled first,
  // so that the fd has all the data, and an upper file is opened read-write
  // where it can be (the kernel still enforces the caller's access mode).
  static Result<std::unique_ptr<OpenFile>> open(Overlay& ov, Node* n, int flags, bool shareable);
  // The flags for Overlay::create() of a file that `open` would open with
  // `flags` and `shareable`.
  static int create_flags(int flags, bool shareable);
  // A file just made by Overlay::create() or tmpfile(), open as `fd`.
  static std::unique_ptr<OpenFile> created(Overlay& ov, Node* n, int flags, UniqueFd fd);
  ~OpenFile();  // the release: drops the writer count and the node reference
  OpenFile(const OpenFile&) = delete;
  OpenFile& operator=(const OpenFile&) = delete;

  Node* node() const { return node_; }
  int flags() const { return flags_; }

  // What FUSE passthrough needs: the real file (after a copy-up, the upper
  // one), whether it is in the upper layer, and whether it holds all of the
  // file's data (not a lazy copy-up still filling).
  int backing_fd() EXCLUDES(mu_);
  bool upper() EXCLUDES(mu_);
  bool has_all_data() const;

  Result<void> getattr(struct stat* st) EXCLUDES(mu_);
  Result<void> setattr(const SetAttr& a, const Caller& c, struct stat* st) EXCLUDES(mu_);

  // The fd that a read can take its bytes from at the same offsets (to
  // splice them), or -1 while a lazy copy-up is filling: then read() copies
  // them.
  int read_fd() EXCLUDES(mu_);
  Result<size_t> read(char* buf, size_t size, off_t off) EXCLUDES(mu_);
  // Writes [off, off+size) through `copy`, which writes the bytes to the fd
  // it is given at `off` and returns how many, or -errno.
  Result<size_t> write(off_t off, size_t size, const std::function<ssize_t(int fd)>& copy)
      EXCLUDES(mu_);
  Result<void> flush() EXCLUDES(mu_);
  Result<void> fsync(bool datasync) EXCLUDES(mu_);  // nothing with -o fsync=0
  Result<void> fallocate(int mode, off_t off, off_t len) EXCLUDES(mu_);
  Result<off_t> lseek(off_t off, int whence) EXCLUDES(mu_);
  static Result<size_t> copy_file_range(OpenFile& in, off_t off_in, OpenFile& out, off_t off_out,
                                        size_t len, unsigned flags);

 private:
  OpenFile(Overlay& ov, Node* n, int flags, UniqueFd fd, bool lower);
  // fd_, switched from a lower file to the upper copy once there is one.
  int current_fd() EXCLUDES(mu_);
  // All of the data in the upper file (lseek's SEEK_DATA, copy_file_range).
  Result<void> fill();
  // ... and durable, before anything that may make holes (fallocate).
  Result<void> complete();

  Overlay& ov_;
  Node* const node_;
  const int flags_;
  std::shared_ptr<Partial> writer_;  // a lazy copy-up this open may write; constant
  std::mutex mu_;
  UniqueFd fd_ GUARDED_BY(mu_);
  bool lower_ GUARDED_BY(mu_);  // fd_ is a lower layer's file (read-only)
};

}  // namespace layer::overlay
