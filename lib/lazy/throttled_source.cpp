#include "lazy/throttled_source.hpp"

#include <algorithm>
#include <thread>

#include "util/error.hpp"

namespace layer::lazy {

namespace {

// Small reads, so that a pause for an on-demand fetch starts soon and the
// rate is kept over short stretches.
constexpr size_t kChunk = 64 << 10;

}  // namespace

ThrottledSource::ThrottledSource(ByteSource& in, uint64_t rate, std::function<bool()> yield,
                                 const std::atomic<bool>& stop)
    : in_(in),
      rate_(rate),
      yield_(std::move(yield)),
      stop_(stop),
      start_(std::chrono::steady_clock::now()) {}

size_t ThrottledSource::read(void* buf, size_t n) {
  using namespace std::chrono;
  if (stop_.load()) throw Error("background fetch stopped");
  if (yield_()) {
    auto t0 = steady_clock::now();
    while (yield_() && !stop_.load()) std::this_thread::sleep_for(milliseconds(2));
    paused_ += steady_clock::now() - t0;  // the rate is over the time we ran
    if (stop_.load()) throw Error("background fetch stopped");
  }
  size_t got = in_.read(buf, std::min(n, kChunk));
  bytes_ += got;
  if (rate_ > 0) {
    auto due = start_ + paused_ +
               duration_cast<steady_clock::duration>(
                   duration<double>(static_cast<double>(bytes_) / rate_));
    // In slices, so that a stop or an on-demand fetch is seen within 50 ms.
    while (steady_clock::now() < due && !stop_.load() && !yield_())
      std::this_thread::sleep_for(
          std::min<steady_clock::duration>(due - steady_clock::now(), milliseconds(50)));
  }
  return got;
}

}  // namespace layer::lazy
