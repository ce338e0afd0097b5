#include "overlay/open_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include "overlay/overlay.hpp"
#include "util/sys.hpp"

namespace layer::overlay {

namespace {

bool may_write(int flags) {
  return (flags & O_ACCMODE) != O_RDONLY;
}

// Flags that keep an fd from serving other opens (see OpenFile::open).
bool own_fd_only(int flags) {
  return (flags & O_ACCMODE) == O_RDWR ||
         (flags & (O_APPEND | O_DIRECT | O_SYNC | O_DSYNC | O_TRUNC | O_PATH));
}

}  // namespace

OpenFile::OpenFile(Overlay& ov, Node* n, int flags, UniqueFd fd, bool lower)
    : ov_(ov), node_(n), flags_(flags), fd_(std::move(fd)), lower_(lower) {
  ov_.ref(n);
  if (may_write(flags) && (writer_ = ov_.lazy().partial_of(n))) ov_.lazy().add_writer(*writer_);
}

OpenFile::~OpenFile() {
  if (writer_) ov_.lazy().drop_writer(writer_);
  ov_.unref(node_);
}

int OpenFile::create_flags(int flags, bool shareable) {
  if (!shareable || own_fd_only(flags)) return flags;
  return (flags & ~O_ACCMODE) | O_RDWR;
}

Result<std::unique_ptr<OpenFile>> OpenFile::open(Overlay& ov, Node* n, int flags, bool shareable) {
  LazyCopy& lazy = ov.lazy();
  // A file still being copied up lazily gets the rest of its data first
  // (its fsync is left to the background), so that this open can go
  // straight to the upper file. A read never fails for it: if the fill
  // cannot finish, the open reads through the daemon, lower bytes for holes.
  if (shareable)
    if (auto p = lazy.unfilled_of(n))
      if (auto r = lazy.fill(*p); !r && may_write(flags)) return Errno{r.error()};
  int real_flags = flags;
  if (n->layer.load() == kUpper && n->data_layer.load() == 0 && !lazy.unfilled_of(n))
    real_flags = create_flags(flags, shareable);
  auto r = ov.open_real(n, real_flags);
  if (!r && real_flags != flags && r.error() != ENOENT)  // read-write refused: as asked
    r = ov.open_real(n, flags);
  if (!r) return Errno{r.error()};
  return std::unique_ptr<OpenFile>(new OpenFile(ov, n, flags, std::move(r->fd), r->lower));
}

std::unique_ptr<OpenFile> OpenFile::created(Overlay& ov, Node* n, int flags, UniqueFd fd) {
  return std::unique_ptr<OpenFile>(new OpenFile(ov, n, flags, std::move(fd), false));
}

int OpenFile::current_fd() {
  std::lock_guard<std::mutex> g(mu_);
  if (lower_ && node_->layer.load() == kUpper && node_->data_layer.load() == 0) {
    auto loc = ov_.locate(node_);
    if (loc) {
      auto r = sys::open_at(loc->dirfd, loc->name.c_str(),
                            (flags_ & ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC)) | O_NOFOLLOW);
      if (r) {
        fd_ = std::move(r).value();
        lower_ = false;
      }
    }
  }
  return fd_.get();
}

int OpenFile::backing_fd() {
  std::lock_guard<std::mutex> g(mu_);
  return fd_.get();
}

bool OpenFile::upper() {
  std::lock_guard<std::mutex> g(mu_);
  return !lower_;
}

bool OpenFile::has_all_data() const {
  return !ov_.lazy().unfilled_of(node_);
}

Result<void> OpenFile::getattr(struct stat* st) {
  std::lock_guard<std::mutex> g(mu_);
  return ov_.getattr(node_, lower_ ? -1 : fd_.get(), st);
}

Result<void> OpenFile::setattr(const SetAttr& a, const Caller& c, struct stat* st) {
  std::lock_guard<std::mutex> g(mu_);
  return ov_.setattr(node_, lower_ ? -1 : fd_.get(), a, c, st);
}

int OpenFile::read_fd() {
  int fd = current_fd();
  return ov_.lazy().unfilled_of(node_) ? -1 : fd;
}

Result<size_t> OpenFile::read(char* buf, size_t size, off_t off) {
  int fd = current_fd();
  if (auto p = ov_.lazy().unfilled_of(node_)) return ov_.lazy().read(*p, buf, size, off);
  return sys::pread_full(fd, buf, size, off);
}

Result<size_t> OpenFile::write(off_t off, size_t size, const std::function<ssize_t(int fd)>& copy) {
  int fd = current_fd();
  std::unique_lock<std::mutex> partial_lock;
  if (auto p = ov_.lazy().unfilled_of(node_)) {
    auto l = ov_.lazy().begin_write(*p, off, size);
    if (!l) return Errno{l.error()};
    partial_lock = std::move(l).value();
  }
  ssize_t r = copy(fd);
  if (r < 0) return Errno{static_cast<int>(-r)};
  return static_cast<size_t>(r);
}

Result<void> OpenFile::flush() {
  int fd = ::dup(current_fd());
  if (fd < 0) return last_errno();
  if (::close(fd) != 0) return last_errno();
  return {};
}

Result<void> OpenFile::fsync(bool datasync) {
  if (!ov_.config().fsync) return {};
  int fd = current_fd();
  if ((datasync ? ::fdatasync(fd) : ::fsync(fd)) != 0) return last_errno();
  return {};
}

Result<void> OpenFile::fill() {
  if (auto p = ov_.lazy().unfilled_of(node_)) return ov_.lazy().fill(*p);
  return {};
}

Result<void> OpenFile::complete() {
  if (auto p = ov_.lazy().partial_of(node_)) return ov_.lazy().complete(*p);
  return {};
}

Result<void> OpenFile::fallocate(int mode, off_t off, off_t len) {
  // Its holes would be filled from the lower again after a crash.
  if (auto r = complete(); !r) return r;
  if (::fallocate(current_fd(), mode, off, len) != 0) return last_errno();
  return {};
}

Result<off_t> OpenFile::lseek(off_t off, int whence) {
  if (auto r = fill(); !r) return Errno{r.error()};
  off_t r = ::lseek(current_fd(), off, whence);
  if (r < 0) return last_errno();
  return r;
}

Result<size_t> OpenFile::copy_file_range(OpenFile& in, off_t off_in, OpenFile& out, off_t off_out,
                                         size_t len, unsigned flags) {
  if (auto r = in.fill(); !r) return Errno{r.error()};
  if (auto r = out.fill(); !r) return Errno{r.error()};
  int ifd = in.current_fd();
  int ofd = out.current_fd();
  ssize_t r = ::copy_file_range(ifd, &off_in, ofd, &off_out, len, flags);
  if (r < 0) return last_errno();
  return static_cast<size_t>(r);
}

}  // namespace layer::overlay
