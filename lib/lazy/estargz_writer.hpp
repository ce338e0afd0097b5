// write_estargz: converts a plain (uncompressed) tar stream into an eStargz
// blob (containerd/stargz-snapshotter docs/estargz.md), losslessly: the tar's
// bytes are kept exactly, each non-empty regular file's payload starts a new
// gzip member (large files one member per chunk), and after the tar's own
// end-of-archive come the TOC entry "stargz.index.json" in its own member and
// the 51-byte footer. A tar reader that stops at end-of-archive reads exactly
// the input's entries; the decompressed stream (hence the diff_id) is the
// input plus the TOC entry. libarchive finds the entries; the tar bytes
// themselves are copied, never rewritten. Single-threaded; one call per blob.
#pragma once

#include <cstdint>
#include <string>

#include "lazy/frame_decoder.hpp"
#include "util/byte_source.hpp"
#include "util/digest.hpp"

namespace layer::lazy {

struct EstargzOptions {
  int level = -1;                    // zlib level; < 0: zlib's default
  uint64_t chunk_size = 4ull << 20;  // content bytes per gzip member (the reference's default)
};

struct EstargzResult {
  Digest blob_digest;  // sha256 of what went to the sink
  uint64_t blob_size = 0;
  Digest toc_digest;  // for the containerd.io/snapshot/stargz/toc.digest annotation
  Digest diff_id;     // sha256 of the decompressed blob
  uint64_t entries = 0;
};

// Reads `tar` to its end and writes the blob to `out`. Throws Error naming the
// entry for a tar libarchive cannot read, a sparse file (whose stored bytes
// are not its content), or an entry named stargz.index.json.
EstargzResult write_estargz(ByteSource& tar, const Sink& out, const EstargzOptions& opt = {});

}  // namespace layer::lazy
