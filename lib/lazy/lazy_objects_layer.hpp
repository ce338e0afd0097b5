// LazyObjects::Layer: what a daemon keeps of one lazily pulled lower layer
// (lazy_objects.cpp, lazy_completion.cpp). Internal to LazyObjects.
#pragma once

#include <exception>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "lazy/fetcher.hpp"
#include "lazy/lazy_objects.hpp"
#include "lazy/lazy_record.hpp"
#include "lazy/range_fetcher.hpp"
#include "registry/registry_client.hpp"
#include "util/digest.hpp"
#include "util/unique_fd.hpp"

namespace layer::lazy {

struct LazyObjects::Layer {
  std::string dir;  // the layer directory, for messages
  LazyLayer ll;
  // The store the layer is in (<root>/layers/<alg>/<hex>) and its diff_id;
  // invalid / empty when the directory is not laid out so (a plain
  // lowerdir): then there is no access list and no completion.
  UniqueFd root;
  std::string root_path;
  Digest diff_id;

  std::once_flag connect;
  std::unique_ptr<registry::RegistryClient> client;  // made at the first fetch
  std::unique_ptr<BlobRanges> ranges;
  std::unique_ptr<Fetcher> fetcher;
  std::exception_ptr connect_error;

  std::mutex mu;                 // guards the three below
  std::vector<Digest> accessed;  // the access list: recorded, then this run's, in order
  std::set<Digest> listed;       // what `accessed` holds
  bool dirty = false;            // accessed grew since it was saved
};

}  // namespace layer::lazy
