// ThrottledSource: the background completion's view of a blob stream. It
// passes reads through at no more than `rate` bytes a second (0: no limit),
// waits while `yield()` says so (on-demand fetches under way or just done),
// so that an open is never queued behind the background, and throws once
// `stop` is set. Borrows `in` and `stop`; one reader, as any ByteSource.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>

#include "util/byte_source.hpp"

namespace layer::lazy {

class ThrottledSource : public ByteSource {
 public:
  ThrottledSource(ByteSource& in, uint64_t rate, std::function<bool()> yield,
                  const std::atomic<bool>& stop);
  size_t read(void* buf, size_t n) override;

 private:
  ByteSource& in_;
  uint64_t rate_;
  std::function<bool()> yield_;
  const std::atomic<bool>& stop_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::duration paused_{};  // waits for on-demand fetches
  uint64_t bytes_ = 0;
};

}  // namespace layer::lazy
