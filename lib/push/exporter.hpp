// export_image(): writes one image of the store to an OCI image layout
// directory ("oci:DIR[:TAG]") or a `docker save` archive
// ("docker-archive:FILE[:REF]"), skopeo's transport names, with the layer
// blobs the store kept (byte for byte: the same digests as pulled or
// committed) or, where a blob was not kept, regenerated ones (LayerBlobs).
// Not thread-safe; one export per call.
#pragma once

#include <cstdint>
#include <string>

#include "store/store.hpp"
#include "util/digest.hpp"

namespace layer::push {

// True for "oci:..." and "docker-archive:..." destinations.
bool is_export_destination(const std::string& dest);

struct ExportResult {
  std::string dest;          // "oci:/abs/dir:tag", "docker-archive:/abs/file"
  Digest manifest;           // as written
  size_t layers = 0;         // layer blobs written (an OCI layout skips those it has)
  size_t regenerated = 0;    // layers not kept in the store, rebuilt from their trees
  uint64_t bytes = 0;        // blob bytes written
};

// OCI layout: DIR is created if absent, or must be an OCI layout (or empty);
// blobs it has are not written again; index.json gets the manifest with
// TAG as its org.opencontainers.image.ref.name (replacing an entry with the
// same name), written atomically. Docker archive: FILE is written whole (a
// temporary file renamed into place) in the format `docker save` of Docker
// 25 writes (manifest.json with RepoTags [REF] plus an OCI layout). Throws
// Error naming the destination, the image or the blob at fault.
ExportResult export_image(store::Store& st, const store::ImageRecord& img,
                          const std::string& dest);

}  // namespace layer::push
