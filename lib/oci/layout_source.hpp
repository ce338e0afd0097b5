// LayoutSource: an ImageSource over an OCI image layout directory
// (`oci:DIR[:TAG]`): oci-layout, index.json, blobs/<alg>/<hex>. Owns a dirfd
// on DIR; every blob is opened beneath it by digest (never a path taken from
// a document). Thread-safe after construction (each open_blob has its own fd).
#pragma once

#include <string>
#include <vector>

#include "oci/image_source.hpp"
#include "util/unique_fd.hpp"

namespace layer::oci {

class LayoutSource : public ImageSource {
 public:
  // `tag` empty: the layout must hold one image (or one tag over several
  // platforms). Throws Error naming the layout.
  LayoutSource(const std::string& dir, const std::string& tag);

  std::string describe() const override;
  std::string default_name() const override;
  FetchedDocument get_manifest(const std::optional<Digest>& digest) override;
  std::string get_blob(const Descriptor& d) override;
  std::unique_ptr<ByteSource> open_blob(const Descriptor& d) override;
  std::vector<std::string> warnings() const override { return warnings_; }

 private:
  UniqueFd open_blob_fd(const Digest& d) const;
  std::string read_small_blob(const Digest& d) const;

  std::string dir_;       // as given
  std::string abs_dir_;   // realpath
  std::string tag_;       // as given, may be empty
  std::string name_tag_;  // the tag the image is recorded under
  UniqueFd dirfd_;
  std::vector<Descriptor> selected_;   // index.json entries for the tag
  std::vector<std::string> warnings_;  // index.json entries skipped
};

}  // namespace layer::oci
