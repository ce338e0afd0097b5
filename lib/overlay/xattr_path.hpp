// XattrPath: names one real object for the xattr syscalls, either (dirfd, name)
// without following a final symlink, or a directory fd itself (name null).
// Built on /proc/self/fd so that it works for O_PATH fds and symlinks. A small
// value on the stack; not shared between threads.
#pragma once

#include <sys/types.h>
#include <sys/xattr.h>

#include <cstdio>

namespace layer::overlay {

class XattrPath {
 public:
  XattrPath(int dirfd, const char* name) : fd_only_(name == nullptr) {
    if (name)
      std::snprintf(path_, sizeof(path_), "/proc/self/fd/%d/%s", dirfd, name);
    else
      std::snprintf(path_, sizeof(path_), "/proc/self/fd/%d", dirfd);
  }
  // Each returns what the syscall returns, errno set on failure.
  ssize_t get(const char* name, void* buf, size_t size) const {
    return fd_only_ ? ::getxattr(path_, name, buf, size) : ::lgetxattr(path_, name, buf, size);
  }
  int set(const char* name, const void* value, size_t size, int flags) const {
    return fd_only_ ? ::setxattr(path_, name, value, size, flags)
                    : ::lsetxattr(path_, name, value, size, flags);
  }
  ssize_t list(char* buf, size_t size) const {
    return fd_only_ ? ::listxattr(path_, buf, size) : ::llistxattr(path_, buf, size);
  }
  int remove(const char* name) const {
    return fd_only_ ? ::removexattr(path_, name) : ::lremovexattr(path_, name);
  }
  const char* path() const { return path_; }

 private:
  bool fd_only_;
  char path_[32 + 256];
};

}  // namespace layer::overlay
