// lib/lazy zstd:chunked writer: the blob decompresses to the input tar
// exactly (same diff_id), and its TOC, found through the annotations the
// writer returns, gives back every file from that file's frames alone.
#include <zstd.h>

#include <catch2/catch.hpp>

#include "lazy/zstd_chunked_writer.hpp"
#include "lazy_fixtures.hpp"

using namespace layer;
using namespace layer::lazy;
using namespace layer::testing;

namespace {

std::string unzstd_all(const std::string& in) {
  std::string out;
  unzstd_range(
      in, 0, UINT64_MAX, [&](const char* p, size_t n) { out.append(p, n); }, "blob");
  return out;
}

struct Written {
  std::string blob;
  ZstdChunkedResult res;
  oci::Descriptor desc;
};

Written convert(const std::string& tar, ZstdChunkedOptions opt = {}) {
  Written w;
  StringSource src(tar, 5000);
  w.res = write_zstd_chunked(
      src, [&](const char* p, size_t n) { w.blob.append(p, n); }, opt);
  w.desc.media_type = "application/vnd.oci.image.layer.v1.tar+zstd";
  w.desc.digest = w.res.blob_digest;
  w.desc.size = static_cast<int64_t>(w.blob.size());
  w.desc.annotations = w.res.annotations;
  return w;
}

}  // namespace

TEST_CASE("zstd:chunked writer: the blob is the input tar, diff_id unchanged") {
  std::string tar = sample_tar();
  Written w = convert(tar, {.level = 3, .chunk_size = 65536});
  CHECK(w.res.diff_id == Hasher::of(tar));
  CHECK(Hasher::of(w.blob) == w.res.blob_digest);
  std::string plain;
  // Decoding past the end: the skippable frames add nothing.
  CHECK_THROWS_WITH(unzstd_all(w.blob), Catch::Contains("ends"));
  unzstd_range(
      w.blob, 0, tar.size(), [&](const char* p, size_t n) { plain.append(p, n); }, "b");
  CHECK(plain == tar);
  CHECK(read_tar(w.blob) == read_tar(tar));  // libarchive's zstd filter reads it whole
}

TEST_CASE("zstd:chunked round trip through the TOC") {
  Written w = convert(sample_tar(), {.level = 1, .chunk_size = 65536});
  MemReader r(w.blob);
  auto src = TocSource::of(w.desc);
  REQUIRE(src);
  CHECK(src->format == Format::ZstdChunked);
  Toc toc = read_toc(r, *src, "layer");
  CHECK(r.served == src->length);
  size_t big = *toc.find("usr/lib/big.bin");
  CHECK(toc.entries[big].chunks.size() == 5);
  CHECK(toc.entries[big].uid == 1000);
  CHECK(toc.entries[big].mode == 04755);
  CHECK(toc.entries[big].xattrs.size() == 2);
  CHECK(decode(toc, big, r) == pattern(300000, 1));
  CHECK(decode(toc, *toc.find("usr/lib/small.txt"), r) == "hello\n");
  CHECK(decode(toc, *toc.find("usr/lib/exact"), r) == pattern(65536, 2));
  CHECK(toc.entries[*toc.find("usr/lib/hard")].link == "usr/lib/small.txt");
  auto [lo, hi] = toc.blob_range(*toc.find("usr/lib/small.txt"));
  CHECK(hi - lo < 100);  // its own frame, nothing else
}

TEST_CASE("zstd:chunked: older producers' annotation keys work alone") {
  Written w = convert(sample_tar());
  w.desc.annotations.erase(kZstdChunkedChecksum);
  w.desc.annotations.erase(kZstdChunkedPosition);
  MemReader r(w.blob);
  CHECK(read_toc(r, *TocSource::of(w.desc), "layer").entries.size() > 5);
}
