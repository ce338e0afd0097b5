// Uploader: the push half of the OCI distribution API for one repository,
// over a RegistryClient (its auth, TLS, redirects and retries): blob
// existence checks, cross-repository mounts, monolithic and chunked blob
// uploads, manifest PUTs. Every digest the registry reports back is checked.
// Thread-safe as RegistryClient is: one upload per thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>

#include "registry/registry_client.hpp"
#include "util/digest.hpp"

namespace layer::registry {

class Uploader {
 public:
  explicit Uploader(RegistryClient& client) : client_(client) {}

  // HEAD /v2/<name>/blobs/<digest>: true if the repository has the blob.
  bool blob_exists(const Digest& d);

  // POST .../blobs/uploads/?mount=<d>&from=<repo>. True when the registry
  // mounted the blob; false when it opened an upload session instead (the
  // blob is not readable in `from`), which is then used by the next upload().
  bool mount(const Digest& d, const std::string& from_repo);

  // Uploads bytes [0, size) of `fd` as blob d: one PUT when size <=
  // chunk_size (chunk_size 0: always one), else PATCH chunks of chunk_size
  // with Content-Range and a closing PUT. `progress` gets the bytes sent.
  void upload(const Digest& d, int fd, uint64_t size, uint64_t chunk_size,
              const std::function<void(uint64_t)>& progress = {});

  // A small blob (a config) in one PUT.
  void upload_data(const Digest& d, const std::string& data);

  // PUT /v2/<name>/manifests/<tag_or_digest>; returns the manifest's digest
  // after checking the registry's Docker-Content-Digest against it.
  Digest put_manifest(const std::string& tag_or_digest, const std::string& media_type,
                      const std::string& bytes);

  // Requests sent, by kind, for tests and the summary line.
  struct Counts {
    int heads = 0, mounts = 0, posts = 0, patches = 0, puts = 0;
  };
  const Counts& counts() const { return counts_; }

 private:
  std::string start_upload();
  std::string path_of(const std::string& location);
  void check_digest(HttpTransfer& t, const Digest& want, const std::string& what);

  RegistryClient& client_;
  std::string location_;  // an open upload session from mount(), or empty
  Counts counts_;
};

}  // namespace layer::registry
