// layer::Error: the cold path's exception (store, registry, unpack, CLI). A
// std::system_error whose message names the thing at fault (path, digest,
// reference), like LevelDB's PosixError(context, errno).
#pragma once

#include <string>
#include <system_error>

namespace layer {

class Error : public std::system_error {
 public:
  // An error from errno `err` while working on `context` (a path, digest, ref).
  Error(const std::string& context, int err)
      : std::system_error(err, std::generic_category(), context) {}
  // An error that is not an errno (bad input, policy): carries EINVAL.
  explicit Error(const std::string& message)
      : std::system_error(EINVAL, std::generic_category(), message), plain_(true) {}

  // The one line a user sees: "context: strerror" or the plain message.
  std::string line() const;

 private:
  bool plain_ = false;
};

// Throws Error(context, errno).
[[noreturn]] void throw_errno(const std::string& context);

}  // namespace layer
