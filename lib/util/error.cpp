#include "util/error.hpp"

#include <cerrno>
#include <cstring>

namespace layer {

std::string Error::line() const {
  if (plain_) {
    // system_error appends ": <strerror(EINVAL)>"; strip it for plain messages.
    std::string w = what();
    std::string suffix = std::string(": ") + std::strerror(EINVAL);
    if (w.size() >= suffix.size() && w.compare(w.size() - suffix.size(), suffix.size(), suffix) == 0)
      w.resize(w.size() - suffix.size());
    return w;
  }
  return what();
}

void throw_errno(const std::string& context) { throw Error(context, errno ? errno : EIO); }

}  // namespace layer
