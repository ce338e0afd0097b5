// LazyService: what the daemon asks of the lazily pulled layers of its mount
// (LazyObjects implements it). An interface so that the daemon loads the code
// that fetches (libcurl, libcrypto, libzstd and their 38 shared libraries,
// which cost every start of the daemon ~25 ms of loading and page faults on
// a 2-core VM) only when a lower layer is lazy: fuse/lazy_module.cpp builds
// that code into a module the daemon dlopen()s then (fuse/lazy_loader.cpp).
// lazy_layer_dirs() is here, apart from the rest, for that decision: it
// needs nothing but the file system.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "lazy/fetcher.hpp"
#include "store/object_ref.hpp"

namespace layer::lazy {

struct BackgroundOptions {
  // The completion stream's bytes a second (0: no limit). On-demand fetches
  // pre-empt it whatever the rate.
  uint64_t rate = 0;
  // And it keeps quiet this long after each one (a container's start opens
  // file after file: the stream waits until it settles).
  std::chrono::milliseconds quiet{1000};
};

class LazyService : public store::MissingObjects {
 public:
  // How many of the lower layers are lazy.
  virtual size_t layers() const = 0;
  // Completes every lazy layer in the background until done or `stop`;
  // returns the layers completed (LazyObjects::complete_all). Never throws.
  virtual size_t complete_all(const BackgroundOptions& opt, const std::atomic<bool>& stop) = 0;
  // Records what was fetched on demand, for the next mount (LazyObjects).
  virtual void save_access_lists() = 0;
  // What the fetches so far did, summed over the layers.
  virtual FetchStats stats() = 0;
};

// The layer directories (a lower's parent) of the lazily pulled layers among
// `lowerdirs` (store diff/ directories): those holding lazy.json.
std::vector<std::string> lazy_layer_dirs(const std::vector<std::string>& lowerdirs);

}  // namespace layer::lazy
