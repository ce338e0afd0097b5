// lib/lazy against a real zstd:chunked producer: Debian's skopeo converts an
// OCI layout built here (from files made by the test) into a zstd:chunked
// dir: image; its TOC must parse, verify against the layer's annotations,
// and give back every file's content from that file's byte range alone.
// Exits 77 (skipped) where skopeo is not installed.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "lazy/frame_decoder.hpp"
#include "lazy/toc_reader.hpp"
#include "lazy_fixtures.hpp"

using namespace layer;
using namespace layer::lazy;
using namespace layer::testing;
using json = nlohmann::json;

namespace {

void put(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary);
  f << data;
  REQUIRE(f.good());
}

std::string get(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string blob_path(const std::string& layout, const Digest& d) {
  return layout + "/blobs/sha256/" + d.hex;
}

std::string noise(size_t n) {
  std::string s(n, '\0');
  uint64_t x = 88172645463325252ull;
  for (auto& c : s) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x);
  }
  return s;
}

}  // namespace

TEST_CASE("zstd:chunked layer written by skopeo: TOC and files, verified") {
  TempDir tmp;
  std::map<std::string, std::string> files = {
      {"etc/hostname", "lazy\n"},
      {"usr/lib/libbig.so", noise(3 << 20)},
      {"usr/lib/zeros", std::string(200000, '\0')},
      {"usr/share/doc/README", std::string(5000, 'r')},
  };
  TarBuilder tb;
  tb.dir("etc").dir("usr").dir("usr/lib").dir("usr/share").dir("usr/share/doc");
  EntryOpts x;
  x.xattrs = {{"user.tag", "t1"}};
  x.mode = 0750;
  for (const auto& [name, data] : files)
    tb.file(name, data, name == "etc/hostname" ? x : EntryOpts{});
  tb.symlink("usr/lib/libbig.so.1", "libbig.so").hardlink("etc/hostname2", "etc/hostname");
  std::string tar = tb.finish();

  // An OCI layout holding a one-layer gzip image.
  std::string layout = tmp / "oci";
  REQUIRE(std::system(("mkdir -p " + layout + "/blobs/sha256").c_str()) == 0);
  std::string gz = compress(tar, Filter::Gzip);
  Digest layer = Hasher::of(gz);
  put(blob_path(layout, layer), gz);
  json config = {{"architecture", "amd64"},
                 {"os", "linux"},
                 {"rootfs", {{"type", "layers"}, {"diff_ids", {Hasher::of(tar).str()}}}}};
  std::string config_s = config.dump();
  put(blob_path(layout, Hasher::of(config_s)), config_s);
  json manifest = {{"schemaVersion", 2},
                   {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                   {"config",
                    {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                     {"digest", Hasher::of(config_s).str()},
                     {"size", config_s.size()}}},
                   {"layers",
                    {{{"mediaType", "application/vnd.oci.image.layer.v1.tar+gzip"},
                      {"digest", layer.str()},
                      {"size", gz.size()}}}}};
  std::string manifest_s = manifest.dump();
  put(blob_path(layout, Hasher::of(manifest_s)), manifest_s);
  json index = {{"schemaVersion", 2},
                {"manifests",
                 {{{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                   {"digest", Hasher::of(manifest_s).str()},
                   {"size", manifest_s.size()},
                   {"annotations", {{"org.opencontainers.image.ref.name", "t"}}}}}}};
  put(layout + "/index.json", index.dump());
  put(layout + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");

  std::string out = tmp / "out";
  std::string cmd =
      "skopeo --insecure-policy copy -q --dest-compress "
      "--dest-compress-format zstd:chunked oci:" +
      layout + ":t dir:" + out;
  REQUIRE(std::system(cmd.c_str()) == 0);

  json m = json::parse(get(out + "/manifest.json"));
  REQUIRE(m["layers"].size() == 1);
  oci::Descriptor d;
  d.media_type = m["layers"][0]["mediaType"];
  d.digest = Digest::parse(m["layers"][0]["digest"].get<std::string>());
  d.size = m["layers"][0]["size"];
  for (const auto& [k, v] : m["layers"][0]["annotations"].items()) d.annotations[k] = v;
  std::string blob = get(out + "/" + d.digest.hex);
  REQUIRE(blob.size() == static_cast<size_t>(d.size));

  auto src = TocSource::of(d);
  REQUIRE(src);
  CHECK(src->format == Format::ZstdChunked);
  MemReader r(blob);
  Toc toc = read_toc(r, *src, "layer " + d.digest.str());
  CHECK(r.served == src->length);

  for (const auto& [name, data] : files) {
    INFO(name);
    auto i = toc.find(name);
    REQUIRE(i);
    const Entry& e = toc.entries[*i];
    CHECK(e.size == data.size());
    CHECK(*e.digest == Hasher::of(data));
    auto [lo, hi] = toc.blob_range(*i);
    r.served = 0;
    std::string bytes = r.read(lo, hi - lo);
    std::string got;
    decode_entry(toc, *i, bytes, lo, [&](const char* p, size_t n) { got.append(p, n); });
    CHECK(got == data);
    if (name == "usr/lib/libbig.so") CHECK(hi - lo < data.size() + 4096);  // its frames only
  }
  const Entry& host = toc.entries[*toc.find("etc/hostname")];
  CHECK(host.mode == 0750);
  CHECK(host.mtime.tv_sec == 1600000000);
  CHECK(host.xattrs == std::vector<std::pair<std::string, std::string>>{{"user.tag", "t1"}});
  CHECK(toc.entries[*toc.find("usr/lib/libbig.so.1")].link == "libbig.so");
  CHECK(toc.entries[*toc.find("etc/hostname2")].type == EntryType::Hardlink);

  // The checksum annotation is what the TOC is checked against.
  d.annotations[kZstdChunkedChecksum] = d.annotations[kZstdChunkedChecksumOld] =
      Hasher::of("forged").str();
  CHECK_THROWS_WITH(read_toc(r, *TocSource::of(d), "layer"), Catch::Contains("annotation says"));
}

int main(int argc, char** argv) {
  if (std::system("command -v skopeo >/dev/null 2>&1") != 0) {
    std::fprintf(stderr, "skopeo not installed: skipped\n");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
