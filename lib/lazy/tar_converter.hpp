// convert_tar: the lossless walk shared by the eStargz and zstd:chunked
// writers. Copies a plain tar stream, byte for byte, into a FrameSink (a
// compressor that can end its current gzip member or zstd frame), ending a
// frame right before each non-empty regular file's content and at every
// chunk_size bytes of it, so each chunk can later be fetched and decoded on
// its own. libarchive finds the entries; their bytes are copied, never
// re-serialized. Reports each entry with where its content went. Single-
// threaded; one call per stream.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lazy/frame_decoder.hpp"
#include "util/byte_source.hpp"
#include "util/digest.hpp"

struct archive_entry;

namespace layer::lazy {

class FrameSink {
 public:
  virtual ~FrameSink() = default;
  virtual void write(const char* p, size_t n) = 0;  // uncompressed bytes in
  virtual void end_frame() = 0;         // ends the current frame (no-op if none is open)
  virtual uint64_t offset() const = 0;  // compressed bytes written so far
};

// A blob as it is written: counts and hashes every compressed byte, and
// hashes the uncompressed bytes fed to the compressor for the diff_id.
class BlobOut {
 public:
  explicit BlobOut(const Sink& sink) : sink_(sink) {}
  void put(const char* p, size_t n) {
    hash_.update(p, n);
    sink_(p, n);
    size_ += n;
  }
  void plain(const char* p, size_t n) { diff_.update(p, n); }
  uint64_t size() const { return size_; }
  Digest digest() { return hash_.finish(); }   // once
  Digest diff_id() { return diff_.finish(); }  // once

 private:
  const Sink& sink_;
  Hasher hash_;
  Hasher diff_;
  uint64_t size_ = 0;
};

struct ChunkOut {
  uint64_t offset = 0;  // of its first frame in the compressed output
  uint64_t end = 0;     // where its frames end (the last chunk's: 0 unless end_after_content)
  uint64_t file_offset = 0;
  uint64_t size = 0;
  Digest digest;
};

// `e` is valid during the call; `chunks` and `digest` are empty/null for
// entries without content.
using EntryFn = std::function<void(archive_entry* e, const std::vector<ChunkOut>& chunks,
                                   const Digest* digest)>;

struct ConvertStats {
  uint64_t entries = 0;
  uint64_t tar_bytes = 0;
};

// Reads `tar` to its end. Throws Error for a tar libarchive cannot read, a
// sparse file (its stored bytes are not its content), or an entry named
// `reserved` (the TOC's own name: a tar converted before).
// `end_after_content`: also end the frame after a file's last chunk (zstd:chunked
// does; eStargz keeps the padding and the next headers in the member).
ConvertStats convert_tar(ByteSource& tar, FrameSink& out, uint64_t chunk_size,
                         bool end_after_content, const std::string& reserved,
                         const EntryFn& on_entry);

// The TOC entry both formats share for `e` (name, type, size, modtime,
// linkName, mode, uid, gid, user/group names, device numbers, base64
// xattrs), without offsets and digests. `nanos`: modtime always, with
// nanoseconds (zstd:chunked); else whole seconds, none for 0 (eStargz).
nlohmann::ordered_json toc_entry_json(archive_entry* e, bool nanos);

}  // namespace layer::lazy
