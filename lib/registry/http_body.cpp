#include "registry/http_body.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::registry {

size_t StringBody::read(char* buf, size_t n) {
  size_t k = std::min(n, data_.size() - pos_);
  std::memcpy(buf, data_.data() + pos_, k);
  pos_ += k;
  return k;
}

FileBody::FileBody(int fd, off_t offset, uint64_t len, std::string what,
                   std::function<void(uint64_t)> progress)
    : fd_(fd), offset_(offset), len_(len), what_(std::move(what)), progress_(std::move(progress)) {}

size_t FileBody::read(char* buf, size_t n) {
  size_t want = static_cast<size_t>(std::min<uint64_t>(n, len_ - pos_));
  if (want == 0) return 0;
  ssize_t got =
      sys::retry_eintr([&] { return ::pread(fd_, buf, want, offset_ + static_cast<off_t>(pos_)); });
  if (got < 0) throw Error("read " + what_, errno);
  if (got == 0) throw Error(what_ + ": file ended early");
  pos_ += static_cast<uint64_t>(got);
  if (progress_) progress_(pos_);
  return static_cast<size_t>(got);
}

}  // namespace layer::registry
