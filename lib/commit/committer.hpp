// commit(): turns a container's changes into a new image in the store. The
// upper directory is written as one OCI layer (DiffWriter, compressed and
// hashed in one pass by BlobWriter) into a staging file, unpacked into the
// store from that blob like any pulled layer (keyed by diff_id, unpacked
// once), and the blob is kept in blobs/ so that a push sends it as is. Then
// the parent's config plus the new diff_id and a history entry, an OCI
// manifest, and the image record last. Thread-safe as Store is; the
// container should not be written to meanwhile (see layerctl commit --help).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "commit/diff_writer.hpp"
#include "oci/media_types.hpp"
#include "store/store.hpp"

namespace layer::commit {

struct Options {
  oci::Compression compression = oci::Compression::Gzip;
  int level = -1;  // compression level; < 0: the default
  // Seconds since the epoch: mtimes later than this are clamped to it and it
  // is the image's created time (SOURCE_DATE_EPOCH). Unset: now, times kept.
  std::optional<int64_t> timestamp;
  std::string created_by = "layerctl commit";
  std::string comment;  // the history entry's comment, if any
  bool sync = true;     // fsync the blob and syncfs the unpacked layer
  std::function<void(uint64_t file_bytes)> progress;
};

struct Result {
  store::ImageRecord image;
  Digest digest;   // of the new layer blob
  Digest diff_id;  // of its tar
  std::string media_type;
  uint64_t blob_size = 0;
  uint64_t tar_bytes = 0;
  DiffStats stats;
  bool layer_existed = false;  // the same layer was in the store already
};

// The name an image is recorded under: "localhost/x:latest" for a name
// without a registry host (as podman names committed images),
// "quay.io/t/x:v1" for one with it. Throws Error for a malformed name or one
// with a digest.
std::string image_name(const std::string& name);

// RFC 3339 UTC ("2024-01-02T03:04:05Z") of `t` seconds since the epoch.
std::string rfc3339(int64_t t);

// REQUIRES: `c` is not read-only. Throws Error naming the container, the
// image or the path at fault; nothing is published unless all went well
// (a layer unpacked before a later failure stays, as after a pull).
Result commit(store::Store& st, const store::ContainerRecord& c, const std::string& name,
              const Options& opt);

}  // namespace layer::commit
