// Decoding one file's content out of fetched blob bytes: gzip members
// (eStargz) or zstd frames (zstd:chunked; skippable frames are passed over),
// chunk by chunk, each chunk checked against its digest and the whole file
// against the entry's digest. Output goes to a sink as it is decoded, so the
// caller must treat it as unverified until decode_entry returns (write to a
// temporary, publish after). Stateless; thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "lazy/toc.hpp"

namespace layer::lazy {

using Sink = std::function<void(const char* data, size_t n)>;

// Decodes `in` (whole gzip members or zstd frames, back to back), drops the
// first `skip` bytes of output and passes the next `want` to `sink`. Throws
// Error prefixed by `what` for corrupt data or if `in` ends before `want`.
void gunzip_range(std::string_view in, uint64_t skip, uint64_t want, const Sink& sink,
                  const std::string& what);
void unzstd_range(std::string_view in, uint64_t skip, uint64_t want, const Sink& sink,
                  const std::string& what);

// Decodes entry `i` of `toc` from `bytes`, which hold the blob's bytes from
// offset `bytes_offset` on and must cover toc.blob_range(i). Throws Error
// naming the entry if a chunk or the file does not match its digest.
void decode_entry(const Toc& toc, size_t i, std::string_view bytes, uint64_t bytes_offset,
                  const Sink& sink);

}  // namespace layer::lazy
