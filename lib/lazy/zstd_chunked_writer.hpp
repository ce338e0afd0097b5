// write_zstd_chunked: converts a plain tar stream into a zstd:chunked blob
// (containers/storage pkg/chunked): the tar's bytes exactly, each non-empty
// regular file's content in its own zstd frame(s), then skippable frames
// with the zstd-compressed TOC and the 64-byte footer. Skippable frames
// decompress to nothing, so the blob's diff_id is the tar's. The TOC is
// located and checked through the annotations returned. No tar-split frame
// is written (newer containers/storage wants one for partial pulls; layerfs
// does not). Single-threaded; one call per blob.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "lazy/frame_decoder.hpp"
#include "util/byte_source.hpp"
#include "util/digest.hpp"

namespace layer::lazy {

struct ZstdChunkedOptions {
  int level = 3;
  uint64_t chunk_size = 4ull << 20;  // content bytes per frame
};

struct ZstdChunkedResult {
  Digest blob_digest;
  uint64_t blob_size = 0;
  Digest diff_id;  // the input tar's sha256
  // manifest-checksum and manifest-position, under both the current
  // (io.github.containers.) and the older (io.containers.) keys.
  std::map<std::string, std::string> annotations;
  uint64_t entries = 0;
};

// Reads `tar` to its end and writes the blob to `out`. Throws Error as
// convert_tar does.
ZstdChunkedResult write_zstd_chunked(ByteSource& tar, const Sink& out,
                                     const ZstdChunkedOptions& opt = {});

}  // namespace layer::lazy
