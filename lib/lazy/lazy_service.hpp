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
#include <cstddef>
#include <string>
#include <vector>

#include "lazy/fetcher.hpp"
#include "store/object_ref.hpp"

namespace layer::lazy {

class LazyService : public store::MissingObjects {
 public:
  // How many of the lower layers are lazy.
  virtual size_t layers() const = 0;
  // Fetches every missing object of every lazy layer until done or `stop`;
  // returns the layers whose objects are all present. Never throws.
  virtual size_t fetch_all(const std::atomic<bool>& stop) = 0;
  // What the fetches so far did, summed over the layers.
  virtual FetchStats stats() = 0;
};

// The layer directories (a lower's parent) of the lazily pulled layers among
// `lowerdirs` (store diff/ directories): those holding lazy.json.
std::vector<std::string> lazy_layer_dirs(const std::vector<std::string>& lowerdirs);

}  // namespace layer::lazy
