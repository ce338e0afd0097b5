// lib/lazy eStargz: the writer's blob is a plain gzip tar whose entries are
// the input's, byte for byte; its TOC parses back into the metadata the tar
// holds and every file decodes, verified, from its own byte range.
#include <catch2/catch.hpp>

#include "lazy/estargz_writer.hpp"
#include "lazy/frame_decoder.hpp"
#include "lazy/toc_reader.hpp"
#include "lazy_fixtures.hpp"

using namespace layer;
using namespace layer::lazy;
using namespace layer::testing;

namespace {

struct Written {
  std::string tar;
  std::string blob;
  EstargzResult res;
  oci::Descriptor desc;
};

Written convert(const std::string& tar, EstargzOptions opt = {}) {
  Written w;
  w.tar = tar;
  StringSource src(tar, 7000);  // odd read sizes: entries straddle reads
  w.res = write_estargz(
      src, [&](const char* p, size_t n) { w.blob.append(p, n); }, opt);
  w.desc.media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
  w.desc.digest = w.res.blob_digest;
  w.desc.size = static_cast<int64_t>(w.blob.size());
  w.desc.annotations[kEstargzTocDigest] = w.res.toc_digest.str();
  return w;
}

}  // namespace

TEST_CASE("estargz writer: the blob is gzip of the input tar followed by the TOC entry") {
  Written w = convert(sample_tar(), {.level = -1, .chunk_size = 65536});
  std::string plain = gunzip_all(w.blob);
  REQUIRE(plain.size() > w.tar.size());
  CHECK(plain.compare(0, w.tar.size(), w.tar) == 0);  // the input, byte for byte
  CHECK(Hasher::of(plain) == w.res.diff_id);
  CHECK(Hasher::of(w.blob) == w.res.blob_digest);
  // A tar reader stops at the input's end-of-archive: the same entries.
  CHECK(read_tar(w.blob) == read_tar(w.tar));
  // Past it, the TOC entry the spec puts last.
  CHECK(plain.compare(w.tar.size(), 17, "stargz.index.json") == 0);
}

TEST_CASE("estargz round trip: TOC metadata and every file's content") {
  Written w = convert(sample_tar(), {.level = 1, .chunk_size = 65536});
  MemReader r(w.blob);
  auto src = TocSource::of(w.desc);
  REQUIRE(src);
  CHECK(src->format == Format::Estargz);
  Toc toc = read_toc(r, *src, "layer");
  CHECK(r.served < 4096);  // footer + TOC only
  CHECK(toc.payload_end < w.blob.size());

  auto big = toc.find("usr/lib/big.bin");
  REQUIRE(big);
  const Entry& e = toc.entries[*big];
  CHECK(e.type == EntryType::Reg);
  CHECK(e.size == 300000);
  CHECK(e.mode == 04755);
  CHECK(e.uid == 1000);
  CHECK(e.gid == 50);
  CHECK(e.mtime.tv_sec == 1600000000);
  CHECK(e.chunks.size() == 5);  // 4 x 64 KiB + the tail
  CHECK(e.xattrs ==
        std::vector<std::pair<std::string, std::string>>{{"security.capability", "\x01\x02"},
                                                         {"user.note", std::string("v\0al", 4)}});
  CHECK(*e.digest == Hasher::of(pattern(300000, 1)));
  CHECK(decode(toc, *big, r) == pattern(300000, 1));
  CHECK(decode(toc, *toc.find("usr/lib/small.txt"), r) == "hello\n");
  CHECK(decode(toc, *toc.find("usr/lib/exact"), r) == pattern(65536, 2));

  CHECK(toc.entries[*toc.find("usr/lib/link")].type == EntryType::Symlink);
  CHECK(toc.entries[*toc.find("usr/lib/link")].link == "big.bin");
  CHECK(toc.entries[*toc.find("usr/lib/hard")].type == EntryType::Hardlink);
  CHECK(toc.entries[*toc.find("usr/lib/hard")].link == "usr/lib/small.txt");
  CHECK(toc.entries[*toc.find("usr/fifo")].type == EntryType::Fifo);
  CHECK(toc.entries[*toc.find("usr/null")].dev_minor == 3);
  CHECK(toc.entries[*toc.find("usr/lib/empty")].chunks.empty());
  CHECK(toc.find(""));  // the "./" entry is the root
  CHECK(toc.find("usr/lib/.wh.gone"));
}

TEST_CASE("estargz: one file's bytes are enough to decode it") {
  Written w = convert(sample_tar(), {.level = -1, .chunk_size = 65536});
  MemReader r(w.blob);
  Toc toc = read_toc(r, *TocSource::of(w.desc), "layer");
  size_t i = *toc.find("usr/lib/small.txt");
  auto [lo, hi] = toc.blob_range(i);
  CHECK(hi - lo < 1024);  // its member and the headers after it
  r.served = 0;
  CHECK(decode(toc, i, r) == "hello\n");
  CHECK(r.served == hi - lo);
}

TEST_CASE("estargz: tampering is caught") {
  Written w = convert(sample_tar(), {.level = -1, .chunk_size = 65536});
  SECTION("a TOC digest annotation that does not match") {
    w.desc.annotations[kEstargzTocDigest] = Hasher::of("other").str();
    MemReader r(w.blob);
    CHECK_THROWS_WITH(read_toc(r, *TocSource::of(w.desc), "layer"),
                      Catch::Contains("its annotation says"));
  }
  SECTION("a changed content byte fails the file's digest, never decodes silently") {
    MemReader clean(w.blob);
    Toc toc = read_toc(clean, *TocSource::of(w.desc), "layer");
    size_t i = *toc.find("usr/lib/small.txt");
    auto [lo, hi] = toc.blob_range(i);
    // Re-compress other content into the same member slot: valid gzip, wrong bytes.
    std::string forged = gzip_member("HELLO\n");
    std::string bytes = forged;
    CHECK_THROWS(decode_entry(toc, i, bytes, lo, [](const char*, size_t) {}));
    std::string flipped = w.blob.substr(lo, hi - lo);
    flipped[flipped.size() / 2] ^= 0x40;
    CHECK_THROWS(decode_entry(toc, i, flipped, lo, [](const char*, size_t) {}));
  }
  SECTION("a broken footer") {
    w.blob[w.blob.size() - 20] = 'x';
    MemReader r(w.blob);
    CHECK_THROWS_WITH(read_toc(r, *TocSource::of(w.desc), "layer"),
                      Catch::Contains("no eStargz footer"));
  }
}

TEST_CASE("estargz writer refuses a tar that already holds a TOC") {
  std::string tar = TarBuilder().file("stargz.index.json", "{}").finish();
  StringSource src(tar);
  CHECK_THROWS_WITH(write_estargz(src, [](const char*, size_t) {}),
                    Catch::Contains("converted before"));
}

TEST_CASE("estargz writer: an empty tar and a tar without end-of-archive") {
  for (std::string tar : {std::string(1024, '\0'), TarBuilder().dir("a").finish()}) {
    Written w = convert(tar);
    CHECK(gunzip_all(w.blob).compare(0, tar.size(), tar) == 0);
    MemReader r(w.blob);
    CHECK_NOTHROW(read_toc(r, *TocSource::of(w.desc), "layer"));
  }
}
