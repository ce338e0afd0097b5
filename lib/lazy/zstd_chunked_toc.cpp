// zstd:chunked (containers/storage pkg/chunked): every file's content is its
// own zstd frame(s), tar headers and padding in frames between them, then
// skippable frames with the zstd-compressed TOC ("manifest"), the tar-split
// and a footer. The layer annotation manifest-position is
// "offset:length:uncompressed length:type" (type 1) locating the compressed
// TOC past its 8-byte skippable-frame header, and manifest-checksum is the
// sha256 of those compressed bytes. Entries give offset/endOffset of each
// file's frames; files cut into chunks list "chunk" entries after the "reg".
#include <zstd.h>

#include "lazy/frame_decoder.hpp"
#include "lazy/toc_json.hpp"
#include "lazy/toc_reader.hpp"
#include "util/error.hpp"

namespace layer::lazy {

namespace {

constexpr uint64_t kSkippableHeader = 8;

// Sets the blob_end of f's chunks: each ends where the next begins, the last
// at the file's endOffset.
void close_file(Toc& toc, uint64_t end_offset, const std::string& what) {
  if (toc.entries.empty()) return;
  Entry& f = toc.entries.back();
  if (f.chunks.empty()) return;
  if (end_offset == 0) throw Error(what + ": '" + f.path + "' has no endOffset");
  for (size_t k = 0; k < f.chunks.size(); ++k)
    f.chunks[k].blob_end = k + 1 < f.chunks.size() ? f.chunks[k + 1].blob_offset : end_offset;
}

}  // namespace

Toc read_zstd_chunked_toc(RangeReader& blob, const TocSource& src, const std::string& what,
                          const TocLimits& limits) {
  if (src.length > limits.max_compressed || src.uncompressed > limits.max_uncompressed)
    throw Error(what + ": TOC of " + std::to_string(src.length) + " bytes (" +
                std::to_string(src.uncompressed) + " uncompressed) is too large");
  if (src.offset < kSkippableHeader || src.length == 0 || src.offset > src.blob_size ||
      src.length > src.blob_size - src.offset)
    throw Error(what + ": manifest-position lies outside the blob's " +
                std::to_string(src.blob_size) + " bytes");
  std::string compressed = blob.read(src.offset, src.length);
  Digest got = Hasher::of(compressed, src.digest.algorithm);
  if (got != src.digest)
    throw Error(what + ": TOC is " + got.str() + ", its annotation says " + src.digest.str());
  std::string json;
  json.reserve(src.uncompressed);
  unzstd_range(
      compressed, 0, src.uncompressed, [&](const char* p, size_t n) { json.append(p, n); },
      what + ": TOC");

  Toc toc;
  toc.format = Format::ZstdChunked;
  toc.digest = src.digest;
  toc.payload_end = src.offset - kSkippableHeader;
  std::vector<RawEntry> raws = read_toc_json(json, limits, what);
  uint64_t end_offset = 0;  // of the file whose chunks are being listed
  for (const RawEntry& r : raws) {
    if (r.type == "chunk") {
      add_next_chunk(toc, r, what);
      continue;
    }
    close_file(toc, end_offset, what);
    Entry e;
    fill_entry(e, r, limits, what);
    end_offset = 0;
    if (e.type == EntryType::Reg && e.size > 0) {
      add_first_chunk(e, r, what);
      end_offset = static_cast<uint64_t>(r.end_offset);
    }
    toc.entries.push_back(std::move(e));
  }
  close_file(toc, end_offset, what);
  check_toc(toc, limits, what);
  return toc;
}

}  // namespace layer::lazy
