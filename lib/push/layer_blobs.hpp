// LayerBlobs: the blobs of one stored image as a push or an export sends
// them: each layer's compressed blob as the store kept it (pulls and commits
// keep them), or, for a layer whose blob is not kept, a new blob made from
// the unpacked tree (a new tar: new digest and diff_id), in which case the
// config and manifest are rewritten to name it. Owns a staging dir for the
// regenerated blobs, removed in its destructor. Not thread-safe.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "oci/image.hpp"
#include "store/store.hpp"

namespace layer::push {

class LayerBlobs {
 public:
  // Reads the image's manifest and config from the store. Throws Error.
  LayerBlobs(store::Store& st, const store::ImageRecord& img);
  ~LayerBlobs();
  LayerBlobs(const LayerBlobs&) = delete;
  LayerBlobs& operator=(const LayerBlobs&) = delete;

  const oci::Manifest& manifest() const { return man_; }
  size_t size() const { return man_.layers.size(); }
  // Layer i's descriptor as it will be sent (a regenerated one once
  // regenerate(i) ran).
  const oci::Descriptor& layer(size_t i) const { return layers_[i]; }
  // An open fd of layer i's blob: the store's, or the regenerated one;
  // invalid when neither exists yet (call regenerate). Checks the size.
  UniqueFd open(size_t i) const;
  // Makes layer i's blob from its unpacked tree (gzip, or zstd for a zstd
  // layer). Throws Error naming the layer.
  void regenerate(size_t i);
  size_t regenerated() const { return regenerated_; }

  // The config and manifest to send: the stored bytes when nothing was
  // regenerated, else rewritten (new diff_ids; an OCI manifest).
  struct Documents {
    std::string config, manifest, manifest_type;
    Digest config_digest, manifest_digest;
  };
  Documents documents() const;

 private:
  store::Store& st_;
  const store::ImageRecord& img_;
  std::string man_bytes_, cfg_bytes_;
  oci::Manifest man_;
  std::vector<oci::Descriptor> layers_;
  std::vector<Digest> diff_ids_;
  std::vector<bool> regen_;  // layer i's blob is in the staging dir
  size_t regenerated_ = 0;
  std::optional<store::Store::Staging> stage_;
};

}  // namespace layer::push
