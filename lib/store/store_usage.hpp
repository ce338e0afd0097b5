// StoreUsage: where a store's disk space goes (layerctl df). Per layer, per
// image and per container the bytes that are shared with others and the
// bytes that are their own, and what sharing saves against unpacking every
// image on its own. Bytes are disk blocks (st_blocks * 512), each inode
// counted once. A value computed by measure(); thread-safe as a value.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "store/store.hpp"

namespace layer::store {

struct LayerUsage {
  Digest diff_id;
  uint64_t bytes = 0;                   // the whole layers/<alg>/<hex> directory
  std::vector<std::string> images;      // refs using it
  std::vector<std::string> containers;  // ids using it
};

// Layers and content objects alike: an object is shared when a layer of
// another image names it too.
struct ImageUsage {
  std::string ref;
  uint64_t shared = 0;  // its layers and objects that another image uses too
  uint64_t own = 0;     // its layers and objects no other image uses
};

// A container shares its image's layers; its own bytes are its directory
// (upper, work, records) plus layers that only it still references.
struct ContainerUsage {
  std::string id;
  std::string name;
  std::string image;
  uint64_t shared = 0;
  uint64_t own = 0;
};

struct StoreUsage {
  std::vector<LayerUsage> layers;
  std::vector<ImageUsage> images;
  std::vector<ContainerUsage> containers;
  uint64_t total = 0;        // the whole store root
  uint64_t layer_bytes = 0;  // every layer once
  uint64_t blob_bytes = 0;
  uint64_t container_bytes = 0;
  uint64_t other_bytes = 0;  // tmp/, quarantine/, records
  // Content objects (store format 2): their disk bytes, and the bytes of the
  // layer entries that redirect to them, each layer once (what the layers
  // would hold without objects).
  uint64_t object_bytes = 0;
  uint64_t object_entry_bytes = 0;
  // Every image unpacked on its own: the sum over images of their layers and
  // objects.
  uint64_t unshared = 0;
  uint64_t saved = 0;  // unshared - the bytes of the layers and objects the images use

  // Walks the store. REQUIRES: a Store opened with any lock mode.
  static StoreUsage measure(const Store& st);
};

}  // namespace layer::store
