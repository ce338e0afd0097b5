#include "lazy/throttled_source.hpp"

#include <algorithm>
#include <thread>

#include "util/error.hpp"

namespace layer::lazy {

namespace {

// Small reads, so that a pause for an on-demand fetch starts soon and the
// rate is kept over short stretches.
constexpr size_t kChunk = 64 << 10;
constexpr auto kBurst = std::chrono::milliseconds(100);

}  // namespace

std::chrono::steady_clock::time_point RateLimit::take(size_t n) {
  using namespace std::chrono;
  auto now = steady_clock::now();
  if (rate_ == 0) return now;
  std::lock_guard g(mu_);
  next_ = std::max(next_, now - kBurst) +
          duration_cast<steady_clock::duration>(duration<double>(static_cast<double>(n) / rate_));
  return next_;
}

ThrottledSource::ThrottledSource(ByteSource& in, RateLimit& limit, std::function<bool()> yield,
                                 const std::atomic<bool>& stop)
    : in_(in), limit_(limit), yield_(std::move(yield)), stop_(stop) {}

size_t ThrottledSource::read(void* buf, size_t n) {
  using namespace std::chrono;
  while (yield_() && !stop_.load()) std::this_thread::sleep_for(milliseconds(2));
  if (stop_.load()) throw Error("background fetch stopped");
  size_t got = in_.read(buf, std::min(n, kChunk));
  // In slices, so that a stop is seen within 50 ms.
  for (auto due = limit_.take(got); steady_clock::now() < due && !stop_.load();)
    std::this_thread::sleep_for(
        std::min<steady_clock::duration>(due - steady_clock::now(), milliseconds(50)));
  return got;
}

}  // namespace layer::lazy
