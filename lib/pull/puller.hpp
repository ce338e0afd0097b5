// pull(): brings one image from an ImageSource into a Store: resolve the
// manifest (selecting the platform from an index), verify and store the
// config and manifest, skip layers already present by diff_id, ingest the
// rest in parallel (opt.jobs streams at once, each straight through the
// unpacker), publish each layer as it completes and the image record last.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "oci/image.hpp"
#include "oci/image_source.hpp"
#include "store/store.hpp"
#include "unpack/unpacker.hpp"

namespace layer::pull {

enum class LayerState { Exists, Waiting, Downloading, Unpacking, Done, Failed };

struct LayerEvent {
  size_t index;  // position in the manifest
  Digest digest;
  Digest diff_id;
  int64_t size;  // compressed, from the descriptor
  LayerState state;
  uint64_t bytes = 0;  // compressed bytes read so far
  size_t total = 0;    // layers in the manifest
};

struct Options {
  oci::Platform platform = oci::Platform::host();
  int jobs = 4;
  unpack::Options unpack;
  // Keep each layer's compressed blob as fetched (blobs/<digest>), so a push
  // sends the same digests; false (pull --drop-blobs) keeps only the
  // unpacked tree, and push then rebuilds the layer (new digests).
  bool keep_blobs = true;
  // Lazy pull (docs/lazy-pull.md): a layer whose descriptor names a TOC
  // (zstd:chunked, eStargz) gets only its metadata tree, written from the
  // TOC read by Range requests and verified against its annotation; its
  // content objects are fetched later (by the daemon, or a pull without
  // lazy). Layers without a TOC, and sources without Range reads, are
  // pulled whole.
  bool lazy = false;
  std::function<void(const LayerEvent&)> on_layer;  // called from worker threads, serialized
};

struct Result {
  store::ImageRecord image;
  size_t layers_total = 0;
  size_t layers_reused = 0;  // present before the pull (or unpacked meanwhile by another)
  uint64_t bytes_fetched = 0;
  size_t layers_lazy = 0;  // written from their TOC, content still to come
  size_t layers_completed = 0;  // lazy layers made whole (pull without lazy)
};

// `name`: the ref to record the image under. Throws Error on failure; layers
// already published stay (they are valid), the image record is not written.
// Refuses an image in which layer `i` (diff/ at `diff_dirfd`, record `info`)
// writes through a symlink of the layers below it: an entry "a/b" with no
// entry for "a", where the merged view of layers 0..i-1 has a symlink "a".
// Unpacked on its own the layer holds a real directory "a" and nothing
// outside is touched, but a runtime applying the layers the way tar does
// would write "b" wherever "a" points. Layers 0..i-1 must be in the store.
// Throws Error naming the image, both layers and the entry.
void check_write_through(const store::Store& store, const std::vector<Digest>& diff_ids, size_t i,
                         const store::LayerInfo& info, int diff_dirfd, const std::string& image);

Result pull(store::Store& store, oci::ImageSource& source, const std::string& name,
            const Options& opt);

}  // namespace layer::pull
