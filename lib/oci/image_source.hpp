// ImageSource: where a pull reads an image from (a registry, an OCI layout
// directory, a docker-save archive). The puller drives it; implementations
// must allow open_blob() from several threads at once (one stream each).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "oci/image.hpp"
#include "util/byte_source.hpp"

namespace layer::oci {

struct FetchedDocument {
  std::string bytes;         // at most kMaxDocumentBytes
  std::string content_type;  // as the source reports it, may be empty
  Digest digest;             // digest of `bytes`, computed by the source
};

// Random access to a blob's bytes (a registry blob by Range requests, a file).
class RangeReader {
 public:
  virtual ~RangeReader() = default;
  // Exactly the bytes [offset, offset + length); throws Error otherwise.
  virtual std::string read(uint64_t offset, uint64_t length) = 0;
};

class ImageSource {
 public:
  virtual ~ImageSource() = default;
  // For messages: "oci:/path:tag", "docker://host/repo:tag".
  virtual std::string describe() const = 0;
  // The name a pulled image is recorded under by default: the source's
  // reference made absolute ("oci:/abs/dir:tag"), or the RepoTag of a
  // docker-save archive. Sources without a better idea use describe().
  virtual std::string default_name() const { return describe(); }
  // The top-level manifest or index for the source's reference, or the
  // document with this digest (a child of an index). The caller verifies a
  // requested digest against FetchedDocument::digest.
  virtual FetchedDocument get_manifest(const std::optional<Digest>& digest) = 0;
  // A small blob (the config): whole, at most kMaxDocumentBytes. Unverified.
  virtual std::string get_blob(const Descriptor& d) = 0;
  // A layer blob as a stream of its compressed bytes. Unverified: the
  // unpacker checks digest and size while streaming.
  virtual std::unique_ptr<ByteSource> open_blob(const Descriptor& d) = 0;
  // Random access to a layer blob (lazy pull), or nullptr where the source
  // has none. Unverified, like open_blob. Valid while the source is.
  virtual std::unique_ptr<RangeReader> open_ranges(const Descriptor& d) {
    (void)d;
    return nullptr;
  }
  // Where a daemon finds the source's blobs again later, without the user's
  // secrets (a JSON object as text: registry::locator_json), or empty.
  virtual std::string locator() const { return {}; }
  // Problems found and stepped around (an index entry skipped), for the
  // caller to show; one line each.
  virtual std::vector<std::string> warnings() const { return {}; }
};

// Opens "oci:DIR[:TAG]" or "docker-archive:FILE[:REF]"; throws Error.
std::unique_ptr<ImageSource> open_local_source(const std::string& ref);

}  // namespace layer::oci
