// ArchiveSource: an ImageSource over a `docker save` tar
// (`docker-archive:FILE[:REF]`), both the legacy format (manifest.json,
// <id>/layer.tar, <hex>.json config) and Docker 25's (an OCI layout plus
// manifest.json). Members are read in place with libarchive, never extracted:
// the constructor indexes member names once; every stream reopens its own
// libarchive reader over a shared fd with pread. Thread-safe after construction.
#pragma once

#include <map>
#include <string>

#include "oci/image_source.hpp"
#include "util/unique_fd.hpp"

namespace layer::oci {

class ArchiveSource : public ImageSource {
 public:
  // `ref`: empty (the archive must hold one image), a RepoTag ("app:v1"), or
  // "@N" (the N-th image of manifest.json). Throws Error naming the archive.
  ArchiveSource(const std::string& file, const std::string& ref);

  std::string describe() const override;
  std::string default_name() const override;
  FetchedDocument get_manifest(const std::optional<Digest>& digest) override;
  std::string get_blob(const Descriptor& d) override;
  std::unique_ptr<ByteSource> open_blob(const Descriptor& d) override;

  struct Member {
    int64_t size = 0;
    std::string link;  // symlink target (as stored), empty for regular files
    bool hardlink = false;
  };

 private:
  void index_members();
  std::string resolve(const std::string& name) const;  // follows symlinks inside the archive
  std::string read_member(const std::string& name, size_t max) const;
  std::unique_ptr<ByteSource> open_member(const std::string& name, int64_t limit) const;
  void synthesize_manifest(const std::vector<std::string>& layer_paths,
                           const std::vector<Digest>& diff_ids, const Digest& config_digest,
                           int64_t config_size);

  std::string file_;
  std::string abs_file_;
  std::string ref_;
  std::string repo_tag_;  // of the chosen image, may be empty
  UniqueFd fd_;
  std::map<std::string, Member> members_;     // normalized name → member
  std::map<Digest, std::string> blob_paths_;  // digest → member (config, layers)
  std::string manifest_;                      // the image manifest (real or synthesized)
  std::string manifest_media_type_;
};

}  // namespace layer::oci
