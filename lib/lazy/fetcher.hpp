// Fetcher: gets the content of a lazily pulled layer's files into content
// objects, on demand and in the background. ensure() is what an open or a
// read of a missing file calls: it fetches the file's byte range (together
// with small missing neighbours, in one request), decodes and verifies it
// against the TOC and hands it to the ObjectStore. Concurrent callers for
// the same content (by digest) share one fetch; a failed fetch fails every
// waiter and leaves nothing behind, so the next call retries. complete()
// fetches the rest in priority order (a recorded access list, then the
// eStargz prefetch landmark's entries, then blob order) in large spans,
// yielding to on-demand fetches. Thread-safe; the Toc, the RangeReader and
// the ObjectStore are borrowed and must outlive it (the RangeReader must be
// thread-safe, as BlobRanges is).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "lazy/frame_decoder.hpp"
#include "lazy/range_fetcher.hpp"
#include "lazy/toc.hpp"

namespace layer::lazy {

// Where verified content goes: the store's content objects.
class ObjectStore {
 public:
  virtual ~ObjectStore() = default;
  virtual bool has(const Digest& d) = 0;
  // Stores the object `d`: `produce` writes its bytes to the sink and throws
  // if they turn out wrong, in which case nothing may be published.
  virtual void put(const Digest& d, const std::function<void(const Sink&)>& produce) = 0;
  // Publishes what this thread put since its last flush, if put() defers
  // that (to make many objects durable with one sync). The Fetcher calls it
  // after each request's objects; throws if they could not be published.
  virtual void flush() {}
};

struct FetchOptions {
  CoalesceOptions on_demand{64 << 10, 4 << 20};   // neighbours joined to a miss
  uint64_t neighbour_max = 256 << 10;             // only files this small tag along
  CoalesceOptions background{1 << 20, 16 << 20};  // completion's spans
};

struct FetchStats {
  uint64_t on_demand_requests = 0;
  uint64_t background_requests = 0;
  uint64_t bytes = 0;    // compressed bytes fetched
  uint64_t objects = 0;  // objects stored
};

class Fetcher {
 public:
  Fetcher(const Toc& toc, RangeReader& blob, ObjectStore& objects, FetchOptions opt = {});

  // Returns once entry i's content is in the ObjectStore (at once if it is,
  // or if the entry has none). Throws Error if the fetch or the
  // verification failed; nothing is kept then and a later call tries again.
  void ensure(size_t i);

  // Fetches every missing object, first `first` (entry indexes, e.g. a
  // recorded access list), then the prefetch landmark's entries, then the
  // rest in blob order (only with `rest`: the daemon's background completion
  // streams the whole blob instead). Returns when all are in or `stop` is
  // set; throws the first Error after trying every span once.
  void complete(const std::vector<size_t>& first, const std::atomic<bool>& stop,
                bool rest = true);
  // Entry indexes by content digest (the first entry naming each).
  std::optional<size_t> entry_of(const Digest& d) const;

  // Entries with content whose object is missing.
  size_t missing();
  FetchStats stats();

 private:
  // Fetches `entries` (missing, claimed by the caller) with one request per
  // coalesced span and stores each; returns the failures by entry.
  std::map<size_t, std::exception_ptr> fetch(const std::vector<size_t>& entries,
                                             const CoalesceOptions& co, bool background);
  // Waits for the fetch under way of entry i's content; retries if it ended
  // without the object.
  void wait_for(size_t i);
  // Claims the missing, unclaimed ones of `want` (by digest) for this caller.
  std::vector<size_t> claim(const std::vector<size_t>& want,
                            std::shared_ptr<std::promise<void>>& promise);
  void release(const std::vector<size_t>& claimed, std::exception_ptr err,
               std::shared_ptr<std::promise<void>>& promise);

  const Toc& toc_;
  RangeReader& blob_;
  ObjectStore& objects_;
  FetchOptions opt_;

  std::mutex mu_;  // guards in_flight_, stats_; never held across I/O
  std::map<Digest, std::shared_future<void>> in_flight_;
  std::map<Digest, size_t> by_digest_;  // constant after construction
  FetchStats stats_;
  std::atomic<int> on_demand_active_{0};
};

}  // namespace layer::lazy
