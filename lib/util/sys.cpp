#include "util/sys.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "util/error.hpp"

namespace layer::sys {

Result<UniqueFd> open_at(int dirfd, const char* path, int flags, mode_t mode) {
  int fd = retry_eintr([&] { return ::openat(dirfd, path, flags | O_CLOEXEC, mode); });
  if (fd < 0) return last_errno();
  return UniqueFd(fd);
}

Result<UniqueFd> open_beneath(int dirfd, const char* path, int flags, mode_t mode,
                              uint64_t extra_resolve) {
  struct open_how how {};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | extra_resolve;
  int fd = static_cast<int>(
      retry_eintr([&] { return ::syscall(SYS_openat2, dirfd, path, &how, sizeof(how)); }));
  if (fd < 0) return last_errno();
  return UniqueFd(fd);
}

Result<size_t> read_full(int fd, void* buf, size_t len) {
  size_t done = 0;
  auto* p = static_cast<char*>(buf);
  while (done < len) {
    ssize_t n = retry_eintr([&] { return ::read(fd, p + done, len - done); });
    if (n < 0) return last_errno();
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

Result<size_t> pread_full(int fd, void* buf, size_t len, off_t off) {
  size_t done = 0;
  auto* p = static_cast<char*>(buf);
  while (done < len) {
    ssize_t n = retry_eintr(
        [&] { return ::pread(fd, p + done, len - done, off + static_cast<off_t>(done)); });
    if (n < 0) return last_errno();
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

Result<void> write_all(int fd, const void* buf, size_t len) {
  const auto* p = static_cast<const char*>(buf);
  while (len > 0) {
    ssize_t n = retry_eintr([&] { return ::write(fd, p, len); });
    if (n < 0) return last_errno();
    p += n;
    len -= static_cast<size_t>(n);
  }
  return {};
}

Result<void> fsync_fd(int fd) {
  if (retry_eintr([&] { return ::fsync(fd); }) < 0) return last_errno();
  return {};
}

Result<void> copy_range(int src, int dst, off_t start, off_t end) {
  off_t in = start, out = start;
  bool use_cfr = true;
  std::vector<char> buf;
  while (in < end) {
    size_t want = static_cast<size_t>(std::min<off_t>(end - in, off_t{1} << 30));
    if (use_cfr) {
      ssize_t n = sys::retry_eintr([&] { return ::copy_file_range(src, &in, dst, &out, want, 0); });
      if (n > 0) continue;
      if (n == 0) break;
      if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
        return last_errno();
      use_cfr = false;
    }
    if (buf.empty()) buf.resize(1 << 20);
    want = std::min(want, buf.size());
    ssize_t n = sys::retry_eintr([&] { return ::pread(src, buf.data(), want, in); });
    if (n < 0) return last_errno();
    if (n == 0) break;
    size_t done = 0;
    while (done < static_cast<size_t>(n)) {
      ssize_t w = sys::retry_eintr(
          [&] { return ::pwrite(dst, buf.data() + done, static_cast<size_t>(n) - done, out); });
      if (w < 0) return last_errno();
      done += static_cast<size_t>(w);
      out += w;
    }
    in += n;
  }
  return {};
}

UniqueFd xopen_at(int dirfd, const std::string& path, int flags, mode_t mode,
                  const std::string& what) {
  auto r = open_at(dirfd, path.c_str(), flags, mode);
  if (!r) throw Error(what, r.error());
  return std::move(r).value();
}

UniqueFd xopen_dir(const std::string& path) {
  return xopen_at(AT_FDCWD, path, O_RDONLY | O_DIRECTORY, 0, path);
}

void xfsync(int fd, const std::string& what) {
  auto r = fsync_fd(fd);
  if (!r) throw Error("fsync " + what, r.error());
}

void xmkdir_p(const std::string& path, mode_t mode) {
  std::string cur;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    cur = path.substr(0, pos);
    if (cur.empty()) continue;
    if (::mkdir(cur.c_str(), mode) < 0 && errno != EEXIST) throw_errno("mkdir " + cur);
  }
}

std::string xread_file(int dirfd, const std::string& path, size_t max, const std::string& what) {
  UniqueFd fd = xopen_at(dirfd, path, O_RDONLY | O_NOFOLLOW, 0, what);
  std::string out;
  char buf[65536];
  for (;;) {
    auto n = read_full(fd.get(), buf, sizeof buf);
    if (!n) throw Error(what, n.error());
    if (*n == 0) break;
    if (out.size() + *n > max)
      throw Error(what + ": larger than " + std::to_string(max) + " bytes");
    out.append(buf, *n);
  }
  return out;
}

void xwrite_file_atomic(int tmpdir, const std::string& tmpname, int dstdir,
                        const std::string& dstname, std::string_view data, mode_t mode,
                        bool sync_dir) {
  UniqueFd fd =
      xopen_at(tmpdir, tmpname, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, mode, tmpname);
  try {
    auto w = write_all(fd.get(), data.data(), data.size());
    if (!w) throw Error("write " + tmpname, w.error());
    xfsync(fd.get(), tmpname);
    fd.reset();
    if (::renameat(tmpdir, tmpname.c_str(), dstdir, dstname.c_str()) < 0)
      throw_errno("rename to " + dstname);
  } catch (...) {
    ::unlinkat(tmpdir, tmpname.c_str(), 0);
    throw;
  }
  if (sync_dir) xfsync(dstdir, dstname + " (directory)");
}

namespace {
struct DirCloser {
  void operator()(DIR* d) const { ::closedir(d); }
};
}  // namespace

std::vector<std::string> xlist_dir(int dirfd, const std::string& name) {
  std::vector<std::string> out;
  auto r = open_at(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!r) {
    if (r.error() == ENOENT) return out;
    throw Error("open " + name, r.error());
  }
  int fd = r->release();
  DIR* d = ::fdopendir(fd);
  if (!d) {
    ::close(fd);
    throw_errno("opendir " + name);
  }
  std::unique_ptr<DIR, int (*)(DIR*)> closer(d, ::closedir);
  errno = 0;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(std::move(n));
    errno = 0;
  }
  if (errno) throw_errno("readdir " + name);
  std::sort(out.begin(), out.end());
  return out;
}

bool exists_at(int dirfd, const std::string& path) {
  struct stat st;
  return ::fstatat(dirfd, path.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

void xremove_tree(int dirfd, const std::string& name) {
  if (::unlinkat(dirfd, name.c_str(), 0) == 0 || errno == ENOENT) return;
  if (errno != EISDIR && errno != EPERM) throw_errno("remove " + name);
  auto r = open_at(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!r) {
    if (r.error() == ENOENT) return;
    throw Error("open " + name, r.error());
  }
  int sub = r->release();
  std::unique_ptr<DIR, DirCloser> d(::fdopendir(sub));
  if (!d) {
    ::close(sub);
    throw_errno("opendir " + name);
  }
  while (struct dirent* e = ::readdir(d.get())) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    xremove_tree(::dirfd(d.get()), n);
  }
  if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) < 0 && errno != ENOENT)
    throw_errno("rmdir " + name);
}

std::string proc_path(int fd, std::string_view name) {
  std::string p = "/proc/self/fd/" + std::to_string(fd);
  if (!name.empty()) {
    p += '/';
    p += name;
  }
  return p;
}

}  // namespace layer::sys

#include "util/byte_source.hpp"

namespace layer {

FdSource::FdSource(UniqueFd fd, std::string what, long long limit)
    : fd_(std::move(fd)), what_(std::move(what)), left_(limit) {}

size_t FdSource::read(void* buf, size_t n) {
  if (left_ == 0) return 0;
  if (left_ > 0 && static_cast<long long>(n) > left_) n = static_cast<size_t>(left_);
  ssize_t r = sys::retry_eintr([&] { return ::read(fd_.get(), buf, n); });
  if (r < 0) throw_errno("read " + what_);
  if (left_ > 0) left_ -= r;
  return static_cast<size_t>(r);
}

}  // namespace layer
