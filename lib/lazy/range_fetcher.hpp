// Range reads of a registry blob. coalesce() plans the requests: wanted
// byte ranges that lie close together are fetched as one span (one round
// trip instead of many for a directory of small files), up to a cap per
// request. BlobRanges sends one "Range: bytes=A-B" GET per span, checks the
// 206's Content-Range, and retries cut connections a few times. Thread-safe
// as RegistryClient is: spans may be fetched from several threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "lazy/toc_reader.hpp"
#include "oci/image.hpp"

namespace layer::registry {
class RegistryClient;
}

namespace layer::lazy {

struct Span {
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t end() const { return offset + length; }
  bool operator==(const Span&) const = default;
};

struct CoalesceOptions {
  uint64_t max_gap = 64 << 10;  // join ranges at most this far apart
  uint64_t max_span = 8 << 20;  // but make no request larger than this
};

// The spans to request so that every wanted range lies within one span,
// sorted by offset. Empty wanted ranges are dropped; overlaps merge.
std::vector<Span> coalesce(std::vector<Span> wanted, const CoalesceOptions& opt = {});

class BlobRanges : public RangeReader {
 public:
  BlobRanges(registry::RegistryClient& client, oci::Descriptor blob);
  std::string read(uint64_t offset, uint64_t length) override;

  // Fetches the wanted ranges, coalesced; result[i] holds wanted[i]'s bytes.
  std::vector<std::string> read_many(const std::vector<Span>& wanted,
                                     const CoalesceOptions& opt = {});

  uint64_t bytes_fetched() const { return fetched_; }
  uint64_t requests() const { return requests_; }

 private:
  std::string fetch_once(uint64_t offset, uint64_t length);

  registry::RegistryClient& client_;
  oci::Descriptor blob_;
  std::string what_;
  std::atomic<uint64_t> fetched_{0};  // body bytes received, for reports
  std::atomic<uint64_t> requests_{0};
};

}  // namespace layer::lazy
