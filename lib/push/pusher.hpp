// push(): sends one image of the store to a registry repository with the
// distribution API (registry::Uploader): for each layer, a blob the
// repository has is skipped, one on the same registry in the repository the
// image came from is mounted, one the store kept (pulls and commits keep
// theirs) is uploaded as is, and one the store did not keep (pull
// --drop-blobs) is regenerated from the unpacked layer (LayerBlobs): a new
// tar of the same files, so a new diff_id and digest, and then the config
// and manifest are rewritten to name it (the image pushed has another digest
// than the local one, as with podman). Config next, manifest last. Not
// thread-safe; one push per call.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "oci/media_types.hpp"
#include "registry/registry_source.hpp"
#include "registry/uploader.hpp"
#include "store/store.hpp"

namespace layer::push {

enum class BlobState { Checking, Exists, Mounted, Regenerating, Uploading, Done };

struct BlobEvent {
  size_t index = 0;  // 0..layers-1, then the config
  size_t total = 0;
  std::string kind;  // "layer" or "config"
  Digest digest;
  uint64_t size = 0;
  uint64_t sent = 0;
  BlobState state = BlobState::Checking;
};

// Blobs up to this size go in one PUT unless chunk_size says otherwise.
inline constexpr uint64_t kChunkThreshold = 256ull << 20;
inline constexpr uint64_t kDefaultChunk = 64ull << 20;

struct Options {
  registry::RegistryOptions registry;
  // > 0: blobs larger than this go in PATCH chunks of this size. 0: one PUT
  // up to kChunkThreshold, chunks of kDefaultChunk above.
  uint64_t chunk_size = 0;
  std::function<void(const BlobEvent&)> on_blob;
};

struct Result {
  std::string ref;         // where it went, normalized
  Digest manifest;         // as pushed
  bool rewritten = false;  // regenerated layers: another manifest than the local one
  size_t uploaded = 0, existed = 0, mounted = 0, regenerated = 0;
  uint64_t bytes_sent = 0;
  registry::Uploader::Counts requests;
};

// Throws Error naming the image, the registry or the blob at fault; the
// manifest is only PUT after every blob is in the repository.
Result push(store::Store& st, const store::ImageRecord& img, const std::string& dest,
            const Options& opt);

}  // namespace layer::push
