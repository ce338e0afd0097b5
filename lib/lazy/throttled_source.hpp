// ThrottledSource: the background completion's view of a blob stream. It
// passes reads through no faster than its RateLimit allows (one RateLimit
// shared by every stream of a completion, so that the rate is the total),
// waits while `yield()` says so (on-demand fetches under way or just done),
// so that an open is never queued behind the background, and throws once
// `stop` is set. Borrows `in`, the limit and `stop`; one reader, as any
// ByteSource. RateLimit is thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>

#include "util/byte_source.hpp"

namespace layer::lazy {

class RateLimit {
 public:
  explicit RateLimit(uint64_t bytes_per_second) : rate_(bytes_per_second) {}
  // When `n` bytes just read may be handed on: now, or later if the bytes
  // read before them used up the rate (time not used is not saved up beyond
  // a short burst).
  std::chrono::steady_clock::time_point take(size_t n);

 private:
  const uint64_t rate_;  // 0: no limit
  std::mutex mu_;        // guards next_
  std::chrono::steady_clock::time_point next_{};
};

class ThrottledSource : public ByteSource {
 public:
  ThrottledSource(ByteSource& in, RateLimit& limit, std::function<bool()> yield,
                  const std::atomic<bool>& stop);
  size_t read(void* buf, size_t n) override;

 private:
  ByteSource& in_;
  RateLimit& limit_;
  std::function<bool()> yield_;
  const std::atomic<bool>& stop_;
};

}  // namespace layer::lazy
