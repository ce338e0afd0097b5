// eStargz (containerd/stargz-snapshotter docs/estargz.md): gzip members per
// file (large files cut into chunks), the TOC as a tar entry
// "stargz.index.json" in its own member, then a 51-byte footer: an empty
// gzip member whose Extra field (SI1 'S', SI2 'G', LEN 22) holds
// "%016xSTARGZ" with the TOC member's offset. The TOC JSON's sha256 is the
// layer annotation containerd.io/snapshot/stargz/toc.digest.
#include <archive.h>
#include <archive_entry.h>

#include <cstring>
#include <memory>

#include "lazy/toc_json.hpp"
#include "lazy/toc_reader.hpp"
#include "util/error.hpp"

namespace layer::lazy {

namespace {

constexpr std::string_view kTocTarName = "stargz.index.json";
constexpr std::string_view kMagic = "STARGZ";

struct ArchiveFree {
  void operator()(archive* a) const { archive_read_free(a); }
};

// The TOC JSON out of the TOC's gzip member: one tar entry, named
// stargz.index.json, at most limits.max_uncompressed bytes.
std::string toc_json_of(const std::string& member, const TocLimits& limits,
                        const std::string& what) {
  std::unique_ptr<archive, ArchiveFree> a(archive_read_new());
  archive_read_support_filter_gzip(a.get());
  archive_read_support_format_tar(a.get());
  if (archive_read_open_memory(a.get(), member.data(), member.size()) != ARCHIVE_OK)
    throw Error(what + ": TOC member: " + archive_error_string(a.get()));
  archive_entry* e = nullptr;
  if (archive_read_next_header(a.get(), &e) != ARCHIVE_OK)
    throw Error(what + ": TOC member holds no tar entry");
  const char* name = archive_entry_pathname(e);
  if (!name || kTocTarName != name || archive_entry_filetype(e) != AE_IFREG)
    throw Error(what + ": TOC member's entry is not the regular file stargz.index.json");
  if (archive_entry_size(e) < 0 ||
      static_cast<uint64_t>(archive_entry_size(e)) > limits.max_uncompressed)
    throw Error(what + ": TOC is too large");
  std::string json(static_cast<size_t>(archive_entry_size(e)), '\0');
  size_t got = 0;
  while (got < json.size()) {
    la_ssize_t n = archive_read_data(a.get(), json.data() + got, json.size() - got);
    if (n < 0) throw Error(what + ": TOC member: " + archive_error_string(a.get()));
    if (n == 0) throw Error(what + ": TOC member ends early");
    got += static_cast<size_t>(n);
  }
  return json;
}

}  // namespace

std::optional<uint64_t> parse_estargz_footer(std::string_view f) {
  // 10 bytes gzip header with FEXTRA, XLEN = 26, SI1 SI2 LEN = 22, subfield.
  if (f.size() != kEstargzFooterSize) return std::nullopt;
  auto u8 = [&](size_t i) { return static_cast<unsigned char>(f[i]); };
  if (u8(0) != 0x1f || u8(1) != 0x8b || u8(2) != 8 || !(u8(3) & 0x04)) return std::nullopt;
  if (u8(10) != 26 || u8(11) != 0 || f[12] != 'S' || f[13] != 'G' || u8(14) != 22 || u8(15) != 0)
    return std::nullopt;
  if (f.substr(32, 6) != kMagic) return std::nullopt;
  uint64_t off = 0;
  for (size_t i = 16; i < 32; ++i) {
    char c = f[i];
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0) return std::nullopt;
    off = off << 4 | static_cast<uint64_t>(v);
  }
  return off;
}

std::string estargz_footer(uint64_t toc_offset) {
  std::string f;
  f += std::string("\x1f\x8b\x08\x04\0\0\0\0\0\xff", 10);  // FEXTRA, MTIME 0, OS unknown
  f += std::string("\x1a\0SG\x16\0", 6);                   // XLEN 26; SI1 SI2; LEN 22
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(toc_offset));
  f += hex;
  f += kMagic;
  f += std::string("\x01\0\0\xff\xff", 5);  // a final stored block of length 0
  f += std::string(8, '\0');                // CRC32 and ISIZE of nothing
  return f;
}

Toc read_estargz_toc(RangeReader& blob, const TocSource& src, const std::string& what,
                     const TocLimits& limits) {
  if (src.blob_size <= kEstargzFooterSize) throw Error(what + ": too small for eStargz");
  uint64_t footer_at = src.blob_size - kEstargzFooterSize;
  auto toc_offset = parse_estargz_footer(blob.read(footer_at, kEstargzFooterSize));
  if (!toc_offset) throw Error(what + ": no eStargz footer at the end of the blob");
  if (*toc_offset >= footer_at) throw Error(what + ": eStargz footer points past the blob");
  if (footer_at - *toc_offset > limits.max_compressed)
    throw Error(what + ": TOC of " + std::to_string(footer_at - *toc_offset) +
                " bytes is too large");
  std::string json = toc_json_of(blob.read(*toc_offset, footer_at - *toc_offset), limits, what);
  Digest got = Hasher::of(json, src.digest.algorithm);
  if (got != src.digest)
    throw Error(what + ": TOC is " + got.str() + ", its annotation says " + src.digest.str());

  Toc toc;
  toc.format = Format::Estargz;
  toc.digest = src.digest;
  toc.payload_end = *toc_offset;
  std::vector<RawEntry> raws = read_toc_json(json, limits, what);
  // (entry, chunk) of each data element, in TOC order, with its raw offsets.
  struct DataRef {
    size_t entry, chunk;
    int64_t offset, inner;
  };
  std::vector<DataRef> data;
  for (const RawEntry& r : raws) {
    if (r.type == "chunk") {
      Chunk& c = add_next_chunk(toc, r, what);
      c.inner_offset = static_cast<uint64_t>(r.inner_offset);
      data.push_back(
          {toc.entries.size() - 1, toc.entries.back().chunks.size() - 1, r.offset, r.inner_offset});
      continue;
    }
    Entry e;
    fill_entry(e, r, limits, what);
    if (e.type == EntryType::Reg && e.size > 0) {
      add_first_chunk(e, r, what);
      e.chunks.back().inner_offset = static_cast<uint64_t>(r.inner_offset);
      data.push_back({toc.entries.size(), 0, r.offset, r.inner_offset});
    }
    if (e.path == kPrefetchLandmark) toc.prefetch_end = toc.entries.size();
    toc.entries.push_back(std::move(e));
  }
  // A chunk's compressed bytes end where the next gzip member that starts a
  // new stream begins (the TOC's, after the last one); chunks sharing one
  // stream (innerOffset > 0) end with it.
  uint64_t end = *toc_offset;
  for (size_t k = data.size(); k-- > 0;) {
    toc.entries[data[k].entry].chunks[data[k].chunk].blob_end = end;
    if (data[k].offset != 0 && data[k].inner == 0) end = static_cast<uint64_t>(data[k].offset);
  }
  check_toc(toc, limits, what);
  return toc;
}

}  // namespace layer::lazy
