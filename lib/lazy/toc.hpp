// Toc: the table of contents of a lazily pullable layer (eStargz or
// zstd:chunked) as one in-memory model: each entry's metadata and where its
// content lies in the compressed blob. Only the parsers build one, after
// checking every field (TocChecker); it is immutable afterwards and may be
// read from several threads.
#pragma once

#include <time.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "util/digest.hpp"

namespace layer::lazy {

enum class Format { Estargz, ZstdChunked };
enum class EntryType { Dir, Reg, Symlink, Hardlink, Char, Block, Fifo };

// One independently decodable piece of a regular file's content: decode the
// blob's bytes [blob_offset, blob_end) (whole gzip members or zstd frames),
// skip inner_offset bytes, and the next `size` bytes are the file's bytes at
// file_offset.
struct Chunk {
  uint64_t blob_offset = 0;
  uint64_t blob_end = 0;  // exclusive; > blob_offset
  uint64_t inner_offset = 0;
  uint64_t file_offset = 0;
  uint64_t size = 0;
  std::optional<Digest> digest;  // of the chunk's bytes, when the TOC gives one
};

struct Entry {
  std::string path;  // normalized as the unpacker does: "a/b", "" for the root
  EntryType type = EntryType::Reg;
  uint32_t mode = 0;  // permission bits, setuid/setgid/sticky (& 07777)
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;  // Reg only
  struct timespec mtime = {};
  std::string link;  // Symlink: the target as given; Hardlink: a normalized path
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
  std::vector<std::pair<std::string, std::string>> xattrs;  // name, raw value
  std::optional<Digest> digest;  // Reg with size > 0: sha256 of the content
  std::vector<Chunk> chunks;     // Reg with size > 0: in file order, covering it
};

struct Toc {
  Format format = Format::Estargz;
  Digest digest;               // of the TOC as its annotation names it (checked)
  uint64_t payload_end = 0;    // where the TOC starts: every chunk lies before it
  std::vector<Entry> entries;  // in blob order
  // eStargz: entries [0, prefetch_end) come before a .prefetch.landmark and
  // are what the image's producer wants fetched first; 0 when none is marked.
  size_t prefetch_end = 0;

  // Index of the entry at `path`, or nullopt.
  std::optional<size_t> find(std::string_view path) const;
  // The byte range of the blob that holds all of entry i's content.
  std::pair<uint64_t, uint64_t> blob_range(size_t i) const;

  std::unordered_map<std::string, size_t> by_path;  // built by TocChecker
};

// Caps on what a TOC may claim (hostile input).
struct TocLimits {
  uint64_t max_compressed = 64ull << 20;     // TOC bytes fetched from the blob
  uint64_t max_uncompressed = 256ull << 20;  // TOC JSON
  size_t max_entries = 2'000'000;
  size_t max_chunks_per_file = 1'000'000;
  size_t max_xattrs = 128;  // per entry
  size_t max_xattr_value = 64 << 10;
  size_t max_path = 4096;
};

// The landmark files of eStargz (regular files of one byte, 0xf).
inline constexpr std::string_view kPrefetchLandmark = ".prefetch.landmark";
inline constexpr std::string_view kNoPrefetchLandmark = ".no.prefetch.landmark";

}  // namespace layer::lazy
