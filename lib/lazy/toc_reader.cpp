#include "lazy/toc_reader.hpp"

#include <cstdio>

#include "oci/media_types.hpp"
#include "util/error.hpp"

namespace layer::lazy {

namespace {

const std::string* annotation(const oci::Descriptor& d, const char* key, const char* old_key) {
  if (auto it = d.annotations.find(key); it != d.annotations.end()) return &it->second;
  if (old_key)
    if (auto it = d.annotations.find(old_key); it != d.annotations.end()) return &it->second;
  return nullptr;
}

bool parse_u64(std::string_view s, uint64_t& out) {
  if (s.empty() || s.size() > 19) return false;
  out = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    out = out * 10 + static_cast<uint64_t>(c - '0');
  }
  return true;
}

}  // namespace

std::optional<TocSource> TocSource::of(const oci::Descriptor& layer) {
  std::string what = "layer " + layer.digest.str();
  const std::string* position = annotation(layer, kZstdChunkedPosition, kZstdChunkedPositionOld);
  const std::string* checksum = annotation(layer, kZstdChunkedChecksum, kZstdChunkedChecksumOld);
  const std::string* toc_digest = annotation(layer, kEstargzTocDigest, nullptr);
  if (!position && !toc_digest) return std::nullopt;
  if (layer.size <= 0) throw Error(what + ": a lazily pullable layer needs its size");
  TocSource src;
  src.blob_size = static_cast<uint64_t>(layer.size);
  oci::LayerKind kind = oci::layer_kind(layer.media_type);
  if (position) {
    if (kind != oci::LayerKind::TarZstd)
      throw Error(what + ": zstd:chunked annotations on a layer of type " + layer.media_type);
    if (!checksum) throw Error(what + ": zstd:chunked manifest-position without manifest-checksum");
    std::string_view s = *position;
    uint64_t f[4];
    for (int i = 0; i < 4; ++i) {
      size_t colon = i < 3 ? s.find(':') : s.size();
      if (colon == std::string_view::npos || !parse_u64(s.substr(0, colon), f[i]))
        throw Error(what + ": malformed manifest-position '" + *position + "'");
      s = i < 3 ? s.substr(colon + 1) : std::string_view();
    }
    if (f[3] != 1)
      throw Error(what + ": unknown zstd:chunked manifest type " + std::to_string(f[3]));
    src.format = Format::ZstdChunked;
    src.offset = f[0];
    src.length = f[1];
    src.uncompressed = f[2];
    try {
      src.digest = Digest::parse(*checksum);
    } catch (const Error& e) {
      throw Error(what + ": manifest-checksum: " + e.line());
    }
    return src;
  }
  if (kind != oci::LayerKind::TarGzip)
    throw Error(what + ": eStargz TOC digest on a layer of type " + layer.media_type);
  src.format = Format::Estargz;
  try {
    src.digest = Digest::parse(*toc_digest);
  } catch (const Error& e) {
    throw Error(what + ": toc.digest: " + e.line());
  }
  return src;
}

Toc read_toc(RangeReader& blob, const TocSource& src, const std::string& what,
             const TocLimits& limits) {
  return src.format == Format::Estargz ? read_estargz_toc(blob, src, what, limits)
                                       : read_zstd_chunked_toc(blob, src, what, limits);
}

}  // namespace layer::lazy
