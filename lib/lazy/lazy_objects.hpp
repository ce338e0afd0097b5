// LazyObjects: what a daemon serving lazily pulled layers asks for an object
// its lower entries name but objects/ lacks (store::MissingObjects). It
// knows every lazy layer of the mount (its lazy.json and TOC, read and
// verified at startup), fetches the object's frames with a Range request
// (with small missing neighbours) through a Fetcher per layer, checks the
// sha256 against the TOC and publishes it under objects/ atomically
// (O_TMPFILE per object; after each request one syncfs, then linkat of
// each: a name only ever holds verified, durable bytes).
// The background completion (complete_all) fetches what the layers' access
// lists name first, then the eStargz landmarks, then streams each whole blob
// through Store::complete_lazy_layer (lazy_completion.cpp).
// Registry credentials: the recorded locator's options without --creds,
// so the auth files a pull would read (--authfile, $REGISTRY_AUTH_FILE,
// XDG, docker config). Thread-safe; fetch() never throws.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "lazy/fetcher.hpp"
#include "lazy/lazy_record.hpp"
#include "lazy/lazy_service.hpp"
#include "store/object_ref.hpp"
#include "util/unique_fd.hpp"

namespace layer::registry {
class RegistryClient;
}

namespace layer::lazy {

class RateLimit;

// Objects as the store keeps them, written in place by a daemon.
// put() leaves each object a nameless O_TMPFILE; flush() makes this
// thread's pending ones durable with one syncfs and links them in.
class ObjectDir : public ObjectStore {
 public:
  explicit ObjectDir(int objects_dir) : dir_(objects_dir) {}
  bool has(const Digest& d) override;
  void put(const Digest& d, const std::function<void(const Sink&)>& produce) override;
  void flush() override;

 private:
  struct Pending {
    UniqueFd file;    // the object's data, nameless
    UniqueFd fanout;  // objects/<alg>/<2 hex>
    std::string name;
    std::string what;
  };
  int dir_;  // borrowed: the store's objects/
  std::mutex mu_;  // guards pending_
  std::map<std::thread::id, std::vector<Pending>> pending_;
};

class LazyObjects : public LazyService {
 public:
  using Log = std::function<void(const std::string& line)>;
  // The lazy layers among `lowerdirs` (a layer's diff/ whose layer directory
  // holds lazy.json); `objects_dir` is the store's objects/ (borrowed).
  // Throws Error naming a layer whose record or TOC does not verify. `log`
  // gets one line per failed fetch.
  LazyObjects(const std::vector<std::string>& lowerdirs, int objects_dir, Log log);
  ~LazyObjects() override;

  size_t layers() const override { return layers_.size(); }
  Result<void> fetch(const Digest& d) override;
  // The background completion: first the objects each layer's access list
  // (recorded by earlier mounts of the same blob) names, then the prefetch
  // landmarks, by Range requests; then each layer's whole blob streamed,
  // throttled, through Store::complete_lazy_layer (its digest and diff_id
  // verified, the tree compared, the missing objects stored: the layer
  // becomes an ordinary one). Until done or `stop`; a layer that fails gets
  // one log line and stays lazy. Returns the layers completed. Never throws.
  size_t complete_all(const BackgroundOptions& opt, const std::atomic<bool>& stop) override;
  // Writes the access list of each layer that had on-demand fetches since
  // the last save (access/ in the store: an ordering hint only, never
  // trusted for content). Never throws; a failure is logged once.
  void save_access_lists() override;
  // What the fetches so far did, summed over the layers.
  FetchStats stats() override;

 private:
  struct Layer;
  // Layer l's registry client and Fetcher, made at the first use (after the
  // daemon forked). Throws the Error that kept them from being made.
  Fetcher& fetcher_of(Layer& l);
  // Streams layer l's blob through Store::complete_lazy_layer. True if it
  // completed it (false: someone else did).
  bool complete_layer(Layer& l, const BackgroundOptions& opt, RateLimit& limit,
                      const std::atomic<bool>& stop);
  void log_failure(const std::string& what, std::exception_ptr e);
  ObjectDir objects_;
  std::atomic<bool> save_failed_{false};  // logged once
  std::atomic<int> on_demand_{0};  // fetch() calls under way, which the background yields to
  std::atomic<int64_t> last_on_demand_{0};  // when the last one ended (steady_clock ns)
  Log log_;
  std::vector<std::unique_ptr<Layer>> layers_;
  std::map<Digest, std::pair<Layer*, size_t>> by_digest_;  // constant after construction
};

}  // namespace layer::lazy
