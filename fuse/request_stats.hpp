// RequestStats: how many FUSE requests of each opcode the kernel sent this
// mount, counted as the channel hook reads them (from /dev/fuse or a ring),
// so the requests libfuse answers itself (INTERRUPT, FORGET, ...) count too.
// Counting is one relaxed atomic increment per request. The daemon logs the
// counts at unmount and on SIGUSR1. Thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

namespace layer::fuse {

class RequestStats {
 public:
  void count(uint32_t opcode) {
    counts_[opcode < kSlots ? opcode : kOther].fetch_add(1, std::memory_order_relaxed);
  }
  // "requests: 1234 (LOOKUP 500, GETATTR 300, ...)": the total, then each
  // opcode seen, most frequent first.
  std::string summary() const;
  uint64_t of(uint32_t opcode) const {
    return counts_[opcode < kSlots ? opcode : kOther].load(std::memory_order_relaxed);
  }

 private:
  static constexpr uint32_t kSlots = 63;  // opcodes 0..62; kernel 6.18 ends at 53
  static constexpr uint32_t kOther = kSlots;
  std::array<std::atomic<uint64_t>, kSlots + 1> counts_{};
};

}  // namespace layer::fuse
