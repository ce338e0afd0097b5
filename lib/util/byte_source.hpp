// ByteSource: a pull-model byte stream (a file, a registry blob download, a
// tar member). Owned by whoever opened it; not thread-safe: one reader.
#pragma once

#include <cstddef>
#include <string>

#include "util/unique_fd.hpp"

namespace layer {

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Reads up to n bytes into buf; returns 0 only at end of stream.
  // Throws layer::Error on failure.
  virtual size_t read(void* buf, size_t n) = 0;
};

// Reads from an owned file descriptor (a file or a pipe), optionally limited
// to `limit` bytes from the current offset.
class FdSource : public ByteSource {
 public:
  FdSource(UniqueFd fd, std::string what, long long limit = -1);
  size_t read(void* buf, size_t n) override;

 private:
  UniqueFd fd_;
  std::string what_;
  long long left_;  // -1: unlimited
};

}  // namespace layer
