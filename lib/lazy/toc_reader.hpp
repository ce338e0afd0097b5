// Finding and reading the TOC of a lazily pullable layer. TocSource says
// from a layer descriptor's annotations which format a layer is in and where
// its TOC is checked against; read_toc fetches the TOC through a RangeReader
// (a few Range requests), verifies it against the annotation's digest and
// parses it into a Toc. Stateless; thread-safe as far as the reader is.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "lazy/toc.hpp"
#include "oci/image.hpp"
#include "oci/image_source.hpp"

namespace layer::lazy {

using RangeReader = oci::RangeReader;

// The annotations this code reads.
inline constexpr const char* kEstargzTocDigest = "containerd.io/snapshot/stargz/toc.digest";
inline constexpr const char* kZstdChunkedPosition =
    "io.github.containers.zstd-chunked.manifest-position";
inline constexpr const char* kZstdChunkedChecksum =
    "io.github.containers.zstd-chunked.manifest-checksum";
inline constexpr const char* kZstdChunkedPositionOld =
    "io.containers.zstd-chunked.manifest-position";
inline constexpr const char* kZstdChunkedChecksumOld =
    "io.containers.zstd-chunked.manifest-checksum";
// Written by newer producers; this code reads no tar-split, only drops it with the rest.
inline constexpr const char* kZstdChunkedTarSplitPosition =
    "io.github.containers.zstd-chunked.tarsplit-position";

// Where a layer's TOC is, from its descriptor alone.
struct TocSource {
  Format format = Format::Estargz;
  uint64_t blob_size = 0;
  Digest digest;  // eStargz: of the TOC JSON; zstd:chunked: of the compressed manifest
  // zstd:chunked: the manifest-position annotation's fields.
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t uncompressed = 0;

  // nullopt for a layer that names no TOC (pull it whole). Throws Error for
  // annotations that are present but malformed, or a media type that does
  // not match them.
  static std::optional<TocSource> of(const oci::Descriptor& layer);
};

// Fetches, verifies and parses the TOC. Throws Error naming the layer.
Toc read_toc(RangeReader& blob, const TocSource& src, const std::string& what,
             const TocLimits& limits = {});

// The format-specific halves (estargz_toc.cpp, zstd_chunked_toc.cpp).
Toc read_estargz_toc(RangeReader& blob, const TocSource& src, const std::string& what,
                     const TocLimits& limits);
Toc read_zstd_chunked_toc(RangeReader& blob, const TocSource& src, const std::string& what,
                          const TocLimits& limits);

// eStargz's footer: the offset of the TOC's gzip member, or nullopt if `footer`
// (the blob's last 51 bytes) is not an eStargz footer.
inline constexpr size_t kEstargzFooterSize = 51;
std::optional<uint64_t> parse_estargz_footer(std::string_view footer);
std::string estargz_footer(uint64_t toc_offset);

}  // namespace layer::lazy
