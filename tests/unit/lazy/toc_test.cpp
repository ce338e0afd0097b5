// lib/lazy TOC checks: the value parsers as tables with must-fail rows, a
// should-fail corpus of hostile TOCs (each one valid JSON, correctly
// digested, and wrong), and the range coalescing plan.
#include <catch2/catch.hpp>

#include "lazy/range_fetcher.hpp"
#include "lazy/toc_json.hpp"
#include "lazy_fixtures.hpp"

using namespace layer;
using namespace layer::lazy;
using namespace layer::testing;

TEST_CASE("parse_rfc3339") {
  struct Row {
    const char* in;
    bool ok;
    time_t sec;
    long nsec;
  } rows[] = {
      {"2020-09-13T12:26:40Z", true, 1600000000, 0},
      {"2020-09-13T14:26:40+02:00", true, 1600000000, 0},
      {"2020-09-13T12:26:40.5Z", true, 1600000000, 500000000},
      {"2020-09-13T12:26:40.123456789Z", true, 1600000000, 123456789},
      {"1970-01-01T00:00:00Z", true, 0, 0},
      {"2020-09-13 12:26:40Z", false, 0, 0},
      {"2020-09-13T12:26:40", false, 0, 0},
      {"2020-13-13T12:26:40Z", false, 0, 0},
      {"2020-09-13T12:26:40.Z", false, 0, 0},
      {"2020-09-13T12:26:40Zjunk", false, 0, 0},
      {"", false, 0, 0},
  };
  for (const Row& r : rows) {
    INFO(r.in);
    struct timespec ts {};
    REQUIRE(parse_rfc3339(r.in, ts) == r.ok);
    if (r.ok) {
      CHECK(ts.tv_sec == r.sec);
      CHECK(ts.tv_nsec == r.nsec);
    }
  }
}

TEST_CASE("decode_base64") {
  struct Row {
    const char* in;
    bool ok;
    std::string out;
  } rows[] = {
      {"", true, ""},
      {"YQ==", true, "a"},
      {"YWI=", true, "ab"},
      {"YWJj", true, "abc"},
      {"AAE=", true, std::string("\0\1", 2)},
      {"YQ", false, ""},
      {"Y===", false, ""},
      {"YW=j", false, ""},
      {"YWJj\n", false, ""},
      {"YW*j", false, ""},
  };
  for (const Row& r : rows) {
    INFO(r.in);
    std::string out;
    REQUIRE(decode_base64(r.in, out) == r.ok);
    if (r.ok) CHECK(out == r.out);
  }
}

TEST_CASE("hostile eStargz TOCs are refused, each with its reason") {
  std::string payload = TarBuilder().file("a", "x").finish();
  auto reg = [](const std::string& name, const std::string& extra = "") {
    return R"({"name":")" + name + R"(","type":"reg","size":1,"offset":0,"digest":")" +
           Hasher::of("x").str() + "\"" + extra + "}";
  };
  struct Row {
    const char* what;
    std::string json;
    const char* reason;
  } rows[] = {
      {"parent escape", R"({"version":1,"entries":[{"name":"../etc/x","type":"dir"}]})", "'..'"},
      {"absolute", R"({"version":1,"entries":[{"name":"/etc/x","type":"dir"}]})", "absolute"},
      {"NUL", R"({"version":1,"entries":[{"name":"a\u0000b","type":"dir"}]})", "NUL"},
      {"empty name", R"({"version":1,"entries":[{"name":"","type":"reg"}]})", "empty name"},
      {"root as file", R"({"version":1,"entries":[{"name":"./","type":"reg"}]})", "root"},
      {"unknown type", R"({"version":1,"entries":[{"name":"a","type":"sock"}]})", "unknown type"},
      {"duplicate",
       R"({"version":1,"entries":[{"name":"a","type":"dir"},{"name":"a/","type":"dir"}]})",
       "duplicate"},
      {"dangling hardlink",
       R"({"version":1,"entries":[{"name":"a","type":"hardlink","linkName":"b"}]})", "hard link"},
      {"hardlink escape",
       R"({"version":1,"entries":[{"name":"a","type":"hardlink","linkName":"../b"}]})", "'..'"},
      {"negative size", R"({"version":1,"entries":[{"name":"a","type":"reg","size":-1}]})",
       "negative"},
      {"string mode", R"({"version":1,"entries":[{"name":"a","type":"dir","mode":"0755"}]})",
       "not an integer"},
      {"huge uid", R"({"version":1,"entries":[{"name":"a","type":"dir","uid":4294967296}]})",
       "out of range"},
      {"bad xattr",
       R"({"version":1,"entries":[{"name":"a","type":"dir","xattrs":{"user.x":"!!"}}]})", "base64"},
      {"bad modtime",
       R"({"version":1,"entries":[{"name":"a","type":"dir","modtime":"yesterday"}]})", "modtime"},
      {"version 2", R"({"version":2,"entries":[]})", "version"},
      {"no entries", R"({"version":1})", "entries"},
      {"too deep", R"({"version":1,"entries":[{"name":"a","type":"dir","xattrs":{"k":[[1]]}}]})",
       "nesting"},
      {"not JSON", R"({"version":1,"entries":[)", "not valid JSON"},
      {"content past the TOC",
       R"({"version":1,"entries":[)" +
           reg("a").replace(reg("a").find("\"offset\":0"), 10, "\"offset\":999999") + "]}",
       "outside the payload"},
      {"no digest", R"({"version":1,"entries":[{"name":"a","type":"reg","size":1,"offset":1}]})",
       "no content digest"},
      {"bad digest",
       R"({"version":1,"entries":[)" + reg("a").replace(reg("a").find("sha256:"), 7, "md5:") + "]}",
       "invalid digest"},
      {"chunk first", R"({"version":1,"entries":[{"name":"a","type":"chunk","offset":1}]})",
       "chunk entry without"},
      {"chunk gap",
       R"({"version":1,"entries":[)" + reg("a", R"(,"size":4,"chunkSize":1)") +
           R"(,{"name":"a","type":"chunk","offset":1,"chunkOffset":2}]})",
       "tile"},
  };
  for (const Row& r : rows) {
    INFO(r.what);
    HandBlob b = estargz_with_toc(payload, r.json);
    MemReader m(b.bytes);
    CHECK_THROWS_WITH(read_toc(m, *TocSource::of(b.desc), "layer"), Catch::Contains(r.reason));
  }
}

TEST_CASE("a hand-made TOC that is fine parses") {
  // The same builder as the hostile table, with nothing wrong: the table's
  // rows fail for their own reason, not the builder's.
  std::string payload = TarBuilder().file("a", "x").finish();
  std::string json = R"({"version":1,"entries":[{"name":"d/","type":"dir","mode":493},)"
                     R"({"name":"d/.prefetch.landmark","type":"reg","size":1,"offset":1,)"
                     R"("digest":")" +
                     Hasher::of("\x0f").str() + R"("}]})";
  HandBlob b = estargz_with_toc(payload, json);
  MemReader m(b.bytes);
  Toc toc = read_toc(m, *TocSource::of(b.desc), "layer");
  CHECK(toc.entries.size() == 2);
  CHECK(toc.entries[0].mode == 0755);
}

TEST_CASE("TocSource::of reads the annotations") {
  oci::Descriptor d;
  d.digest = Hasher::of("blob");
  d.size = 1000;
  d.media_type = "application/vnd.oci.image.layer.v1.tar+zstd";
  CHECK_FALSE(TocSource::of(d));
  std::string sum = Hasher::of("toc").str();
  d.annotations[kZstdChunkedPositionOld] = "900:80:300:1";
  d.annotations[kZstdChunkedChecksumOld] = sum;
  auto src = TocSource::of(d);
  REQUIRE(src);
  CHECK(src->format == Format::ZstdChunked);
  CHECK(src->offset == 900);
  CHECK(src->length == 80);
  CHECK(src->uncompressed == 300);
  for (const char* bad : {"900:80:300", "900:80:300:2", "a:80:300:1", "900:80:300:1:5", ""}) {
    INFO(bad);
    d.annotations[kZstdChunkedPositionOld] = bad;
    CHECK_THROWS(TocSource::of(d));
  }
  d.annotations.clear();
  d.annotations[kEstargzTocDigest] = sum;
  CHECK_THROWS_WITH(TocSource::of(d), Catch::Contains("eStargz TOC digest on a layer of type"));
  d.media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
  CHECK(TocSource::of(d)->format == Format::Estargz);
}

TEST_CASE("zstd:chunked position outside the blob and a wrong checksum are refused") {
  std::string blob(5000, 'z');
  MemReader m(blob);
  TocSource src;
  src.format = Format::ZstdChunked;
  src.blob_size = blob.size();
  src.digest = Hasher::of("toc");
  src.offset = 4990;
  src.length = 100;
  src.uncompressed = 10;
  CHECK_THROWS_WITH(read_toc(m, src, "layer"), Catch::Contains("outside the blob"));
  src.offset = 100;
  CHECK_THROWS_WITH(read_toc(m, src, "layer"), Catch::Contains("its annotation says"));
  src.uncompressed = 1ull << 40;
  CHECK_THROWS_WITH(read_toc(m, src, "layer"), Catch::Contains("too large"));
}

TEST_CASE("coalesce plans one request for neighbouring ranges") {
  struct Row {
    const char* what;
    std::vector<Span> in;
    std::vector<Span> out;
  } rows[] = {
      {"empty", {}, {}},
      {"one", {{10, 5}}, {{10, 5}}},
      {"adjacent", {{10, 5}, {15, 5}}, {{10, 10}}},
      {"small gap", {{0, 10}, {1000, 10}}, {{0, 1010}}},
      {"unsorted", {{1000, 10}, {0, 10}}, {{0, 1010}}},
      {"far apart", {{0, 10}, {200000, 10}}, {{0, 10}, {200000, 10}}},
      {"overlap", {{0, 100}, {50, 100}}, {{0, 150}}},
      {"zero length dropped", {{0, 0}, {5, 5}}, {{5, 5}}},
      {"span cap",
       {{0, 5 << 20}, {(5 << 20) + 10, 5 << 20}},
       {{0, 5 << 20}, {(5 << 20) + 10, 5 << 20}}},
      {"large range never split", {{0, 20 << 20}}, {{0, 20 << 20}}},
  };
  for (const Row& r : rows) {
    INFO(r.what);
    CHECK(coalesce(r.in) == r.out);
  }
}
