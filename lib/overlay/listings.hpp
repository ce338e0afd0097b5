// Listings: the merged entries of a directory (readdir), built from every
// layer of its stack and cached on its Node until the directory changes.
// Thread-safe: the cache is guarded by the node's mu; a listing is built
// without any lock and kept only if the directory did not change meanwhile.
#pragma once

#include <cstdint>
#include <memory>

#include "overlay/node.hpp"
#include "util/result.hpp"

namespace layer::overlay {

class Resolver;

class Listings {
 public:
  explicit Listings(const Resolver& resolver) : resolver_(resolver) {}

  // The merged directory's entries; the snapshot stays valid while held.
  Result<std::shared_ptr<const Listing>> list(Node* dir);
  // Drops dir's cached listing: an entry was added, removed or renamed.
  void invalidate(Node* dir);
  // A merged directory's link count: 2 + its subdirectories.
  Result<uint32_t> merged_nlink(Node* dir);

 private:
  Result<std::shared_ptr<const Listing>> build(const DirStack& stack);

  const Resolver& resolver_;
};

}  // namespace layer::overlay
