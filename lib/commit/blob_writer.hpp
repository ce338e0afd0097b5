// BlobWriter: the compression stage of a layer being written. Takes the tar
// stream, hashes it for the diff_id, compresses it (gzip, zstd or none, with
// libarchive's filters) and writes the blob to a file descriptor while
// hashing it for the blob digest: one pass, nothing held in memory. Owns its
// libarchive handle; borrows the fd. Single-threaded.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "oci/media_types.hpp"
#include "util/digest.hpp"

struct archive;

namespace layer::commit {

// "gzip", "zstd" or "none"; throws Error for anything else.
oci::Compression parse_compression(std::string_view name);
// The OCI layer media type of a blob with this compression.
std::string_view layer_media_type(oci::Compression c);

class BlobWriter {
 public:
  // `fd`: where the blob goes (borrowed). `level` < 0: the filter's default.
  // `what`: names the blob in errors.
  BlobWriter(int fd, oci::Compression c, int level, std::string what);
  ~BlobWriter();
  BlobWriter(const BlobWriter&) = delete;
  BlobWriter& operator=(const BlobWriter&) = delete;

  // Tar bytes in. Throws Error.
  void write(const void* data, size_t n);
  // Flushes the compressor. Call once, after the last write.
  void finish();

  // Valid after finish().
  const Digest& diff_id() const { return diff_id_; }
  const Digest& digest() const { return digest_; }
  uint64_t size() const { return size_; }            // compressed bytes written
  uint64_t tar_bytes() const { return tar_bytes_; }  // uncompressed bytes in

 private:
  struct ArchiveFree {
    void operator()(archive* a) const;
  };
  static long on_write(archive*, void* self, const void* buf, size_t n);
  [[noreturn]] void fail(const std::string& what) const;

  int fd_;
  std::string what_;
  std::unique_ptr<archive, ArchiveFree> a_;
  Hasher tar_hash_;
  Hasher blob_hash_;
  Digest diff_id_;
  Digest digest_;
  uint64_t size_ = 0;
  uint64_t tar_bytes_ = 0;
  int write_errno_ = 0;  // set by on_write when the fd write fails
  bool finished_ = false;
};

}  // namespace layer::commit
