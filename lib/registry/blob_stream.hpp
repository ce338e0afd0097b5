// BlobStream: a registry blob as a ByteSource. A cut connection resumes with
// "Range: bytes=N-" from the last byte handed out; a 200 instead of 206, or a
// Content-Range that does not start at N, restarts the download and skips
// the N bytes already delivered, so the reader sees one continuous stream.
// Never yields more than the descriptor's size. Owned by one reader thread.
#pragma once

#include <memory>
#include <string>

#include "oci/image.hpp"
#include "registry/registry_client.hpp"
#include "util/byte_source.hpp"

namespace layer::registry {

class BlobStream : public ByteSource {
 public:
  BlobStream(RegistryClient& client, oci::Descriptor desc);
  size_t read(void* buf, size_t n) override;

  int resumes() const { return resumes_; }

 private:
  void open();  // (re)starts the download at offset_
  // Throws if the response's Content-Length is not `want` (-1: unknown).
  void check_length(int64_t want) const;

  RegistryClient& client_;
  oci::Descriptor desc_;
  std::string what_;  // "blob sha256:..." for messages
  std::unique_ptr<HttpTransfer> t_;
  uint64_t offset_ = 0;    // bytes handed to the reader
  uint64_t skip_ = 0;      // bytes of the current response to drop before offset_
  int resumes_ = 0;        // cuts survived, in total
  int stalls_ = 0;         // cuts in a row without progress
  bool external_ = false;  // from desc_.urls: the registry lacks this non-distributable blob
  int slow_ = 0;           // transfers aborted below the speed floor
};

}  // namespace layer::registry
