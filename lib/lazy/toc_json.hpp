// The JSON half of TOC parsing, shared by both formats: eStargz's
// stargz.index.json and zstd:chunked's manifest use the same field names
// (both descend from CRFS's stargz TOC). read_toc_json checks the JSON's
// shape and field types and decodes values; check_toc then checks the
// assembled Toc as a whole. Stateless; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lazy/toc.hpp"

namespace layer::lazy {

// One "entries" element as written, fields absent -> 0 / empty.
struct RawEntry {
  std::string name;
  std::string type;  // "dir", "reg", "symlink", "hardlink", "char", "block", "fifo", "chunk"
  std::string link_name;
  int64_t mode = 0;
  int64_t size = 0;
  int64_t uid = 0;
  int64_t gid = 0;
  struct timespec mtime = {};
  int64_t dev_major = 0;
  int64_t dev_minor = 0;
  std::vector<std::pair<std::string, std::string>> xattrs;  // base64-decoded
  std::string digest;
  int64_t offset = 0;
  int64_t end_offset = 0;    // zstd:chunked
  int64_t inner_offset = 0;  // eStargz
  int64_t chunk_offset = 0;
  int64_t chunk_size = 0;
  std::string chunk_digest;
};

// Parses `json` ({"version": 1, "entries": [...]}). Throws Error prefixed by
// `what` for bad JSON, a nesting deeper than a TOC has, a wrong type, a
// negative number, an undecodable xattr or modtime, or too many entries.
std::vector<RawEntry> read_toc_json(std::string_view json, const TocLimits& limits,
                                    const std::string& what);

// Parses RFC 3339 ("2006-01-02T15:04:05Z", fractions and offsets allowed).
bool parse_rfc3339(std::string_view s, struct timespec& out);
// Strict standard base64 (padding required); false on anything else.
bool decode_base64(std::string_view in, std::string& out);

// Fills the metadata of `e` from `r` (not chunks, not the digest); checks the
// name, type, mode, ids, link and xattrs as the unpacker would.
void fill_entry(Entry& e, const RawEntry& r, const TocLimits& limits, const std::string& what);

// The content chunks both formats write alike: a "reg" entry's first chunk
// (when the file is not empty) and a "chunk" entry continuing the last
// regular file. They set offsets, sizes and digests; the blob_end and the
// eStargz inner_offset are the caller's.
void add_first_chunk(Entry& e, const RawEntry& r, const std::string& what);
Chunk& add_next_chunk(Toc& toc, const RawEntry& r, const std::string& what);

// Whole-TOC checks once entries and chunks are in: no duplicate paths, hard
// links to earlier regular files, chunks that tile each file and lie before
// payload_end, a digest for every non-empty file. Builds toc.by_path.
void check_toc(Toc& toc, const TocLimits& limits, const std::string& what);

}  // namespace layer::lazy
