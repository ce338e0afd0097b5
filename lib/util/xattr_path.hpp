// XattrPath: names one real object for the xattr syscalls, either (dirfd, name)
// without following a final symlink, or a directory fd itself (name null).
// Built on /proc/self/fd (sys::proc_path) so that it works for O_PATH fds and
// symlinks. A small value on the stack; not shared between threads.
#pragma once

#include <sys/types.h>
#include <sys/xattr.h>

#include <string>

#include "util/sys.hpp"

namespace layer {

class XattrPath {
 public:
  XattrPath(int dirfd, const char* name)
      : fd_only_(name == nullptr), path_(sys::proc_path(dirfd, name ? name : "")) {}
  // Each returns what the syscall returns, errno set on failure.
  ssize_t get(const char* name, void* buf, size_t size) const {
    return fd_only_ ? ::getxattr(path(), name, buf, size) : ::lgetxattr(path(), name, buf, size);
  }
  int set(const char* name, const void* value, size_t size, int flags) const {
    return fd_only_ ? ::setxattr(path(), name, value, size, flags)
                    : ::lsetxattr(path(), name, value, size, flags);
  }
  ssize_t list(char* buf, size_t size) const {
    return fd_only_ ? ::listxattr(path(), buf, size) : ::llistxattr(path(), buf, size);
  }
  int remove(const char* name) const {
    return fd_only_ ? ::removexattr(path(), name) : ::lremovexattr(path(), name);
  }
  const char* path() const { return path_.c_str(); }

 private:
  bool fd_only_;
  std::string path_;
};

}  // namespace layer
