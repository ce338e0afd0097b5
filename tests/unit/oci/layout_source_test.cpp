#include "oci/layout_source.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "../unpack/tar_builder.hpp"
#include "oci/media_types.hpp"
#include "util/error.hpp"

using layer::Digest;
using layer::Error;
using layer::Hasher;
using layer::testing::TempDir;
using nlohmann::json;
namespace oci = layer::oci;

namespace {

void write_file(const std::string& path, const std::string& data) {
  FILE* f = std::fopen(path.c_str(), "wb");
  REQUIRE(f);
  std::fwrite(data.data(), 1, data.size(), f);
  std::fclose(f);
}

std::string read_all(layer::ByteSource& s) {
  std::string out;
  char buf[4096];
  while (size_t n = s.read(buf, sizeof buf)) out.append(buf, n);
  return out;
}

// A hand-written layout: one layer, one config, manifests per platform.
struct Layout {
  std::string dir;
  std::string layer = "layer bytes";
  std::string config =
      R"({"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":[]}})";
  json index = {{"schemaVersion", 2}, {"manifests", json::array()}};

  explicit Layout(const std::string& d) : dir(d) {
    ::mkdir((dir + "/blobs").c_str(), 0755);
    ::mkdir((dir + "/blobs/sha256").c_str(), 0755);
    write_file(dir + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
    blob(layer);
    blob(config);
  }
  Digest blob(const std::string& data) {
    Digest d = Hasher::of(data);
    write_file(dir + "/blobs/sha256/" + d.hex, data);
    return d;
  }
  std::string manifest_text() const {
    return json{{"schemaVersion", 2},
                {"mediaType", oci::kOciManifest},
                {"config",
                 {{"mediaType", oci::kOciConfig},
                  {"digest", Hasher::of(config).str()},
                  {"size", config.size()}}},
                {"layers",
                 {{{"mediaType", oci::kOciLayer},
                   {"digest", Hasher::of(layer).str()},
                   {"size", layer.size()}}}}}
        .dump();
  }
  json add(const std::string& tag, const std::string& platform = "", std::string text = "") {
    if (text.empty()) text = manifest_text();
    Digest d = blob(text);
    json e = {{"mediaType", oci::kOciManifest}, {"digest", d.str()}, {"size", text.size()}};
    if (!tag.empty()) e["annotations"] = {{"org.opencontainers.image.ref.name", tag}};
    if (!platform.empty()) {
      auto p = oci::Platform::parse(platform);
      e["platform"] = {{"os", p.os}, {"architecture", p.architecture}};
    }
    index["manifests"].push_back(e);
    save();
    return e;
  }
  void save() { write_file(dir + "/index.json", index.dump()); }
};

}  // namespace

TEST_CASE("LayoutSource: one image, by tag or alone") {
  TempDir d;
  Layout l(d.path);
  l.add("v1");
  for (const char* tag : {"v1", ""}) {
    oci::LayoutSource src(d.path, tag);
    auto doc = src.get_manifest(std::nullopt);
    CHECK(doc.bytes == l.manifest_text());
    CHECK(doc.content_type == oci::kOciManifest);
    CHECK(src.default_name() == "oci:" + d.path + ":v1");
    auto m = oci::parse_manifest(doc.bytes);
    CHECK(src.get_blob(m.config) == l.config);
    auto s = src.open_blob(m.layers[0]);
    CHECK(read_all(*s) == l.layer);
  }
  CHECK(oci::LayoutSource(d.path, "v1").describe() == "oci:" + d.path + ":v1");
  CHECK_THROWS_WITH(oci::LayoutSource(d.path, "v2"),
                    Catch::Contains("no image tagged 'v2' (tags: v1)"));
}

TEST_CASE("LayoutSource: one tag over several platforms gives an index to select from") {
  TempDir d;
  Layout l(d.path);
  auto amd = l.add("multi", "linux/amd64");
  auto arm = l.add("multi", "linux/arm64");
  l.add("other", "linux/amd64");
  oci::LayoutSource src(d.path, "multi");
  auto doc = src.get_manifest(std::nullopt);
  REQUIRE(oci::classify(doc.bytes, doc.content_type) == oci::DocKind::Index);
  auto idx = oci::parse_index(doc.bytes);
  REQUIRE(idx.manifests.size() == 2);
  const auto& pick = oci::select_platform(idx, oci::Platform::parse("linux/arm64"));
  CHECK(pick.digest.str() == arm["digest"]);
  CHECK(src.get_manifest(pick.digest).bytes == l.manifest_text());
  CHECK_THROWS_WITH(oci::LayoutSource(d.path, ""),
                    Catch::Contains("several images") && Catch::Contains("multi, other"));
}

TEST_CASE("LayoutSource refuses bad layouts and blobs") {
  SECTION("not a layout") {
    TempDir d;
    CHECK_THROWS_WITH(oci::LayoutSource(d.path, ""), Catch::Contains("oci-layout"));
    CHECK_THROWS_AS(oci::LayoutSource(d.path + "/absent", ""), Error);
  }
  SECTION("layout version") {
    TempDir d;
    Layout l(d.path);
    l.add("t");
    write_file(d.path + "/oci-layout", R"({"imageLayoutVersion":"2.0.0"})");
    CHECK_THROWS_WITH(oci::LayoutSource(d.path, ""), Catch::Contains("imageLayoutVersion"));
    write_file(d.path + "/oci-layout", "garbage");
    CHECK_THROWS_WITH(oci::LayoutSource(d.path, ""), Catch::Contains("oci-layout"));
  }
  SECTION("index.json") {
    TempDir d;
    Layout l(d.path);
    write_file(d.path + "/index.json", "{");
    CHECK_THROWS_WITH(oci::LayoutSource(d.path, ""), Catch::Contains("index.json"));
    write_file(d.path + "/index.json", std::string(5 << 20, ' '));
    CHECK_THROWS_WITH(oci::LayoutSource(d.path, ""), Catch::Contains("larger than"));
    l.save();
    CHECK_THROWS_WITH(oci::LayoutSource(d.path, ""), Catch::Contains("holds no image"));
  }
  SECTION("manifest that does not match its descriptor") {
    TempDir d;
    Layout l(d.path);
    auto e = l.add("t");
    write_file(d.path + "/blobs/sha256/" + Digest::parse(e["digest"].get<std::string>()).hex,
               l.manifest_text() + " ");
    CHECK_THROWS_WITH(oci::LayoutSource(d.path, "t").get_manifest(std::nullopt),
                      Catch::Contains("digest mismatch"));
    l.index["manifests"][0]["size"] = 3;
    l.index["manifests"][0]["digest"] = l.blob(l.manifest_text()).str();
    l.save();
    CHECK_THROWS_WITH(oci::LayoutSource(d.path, "t").get_manifest(std::nullopt),
                      Catch::Contains("differs from the descriptor"));
  }
  SECTION("blobs: missing, a directory, a symlink out of the layout, too big") {
    TempDir d;
    Layout l(d.path);
    l.add("t");
    oci::LayoutSource src(d.path, "t");
    oci::Descriptor desc;
    desc.media_type = std::string(oci::kOciLayer);
    desc.size = 10;
    desc.digest = Digest::parse("sha256:" + std::string(64, '1'));
    CHECK_THROWS_WITH(src.open_blob(desc), Catch::Contains("blob sha256:1111"));
    ::mkdir((d.path + "/blobs/sha256/" + std::string(64, '1')).c_str(), 0755);
    CHECK_THROWS_WITH(src.open_blob(desc), Catch::Contains("not a regular file"));
    TempDir outside;
    write_file(outside.path + "/secret", "secret");
    desc.digest = Digest::parse("sha256:" + std::string(64, '2'));
    REQUIRE(::symlink((outside.path + "/secret").c_str(),
                      (d.path + "/blobs/sha256/" + std::string(64, '2')).c_str()) == 0);
    CHECK_THROWS_AS(src.open_blob(desc), Error);
    CHECK_THROWS_AS(src.get_blob(desc), Error);
    desc.digest = Digest::parse("sha256:" + std::string(64, '3'));
    REQUIRE(::symlink("../../../secret",
                      (d.path + "/blobs/sha256/" + std::string(64, '3')).c_str()) == 0);
    CHECK_THROWS_AS(src.open_blob(desc), Error);
    Digest big = l.blob(std::string((4 << 20) + 1, 'x'));
    desc.digest = big;
    CHECK_THROWS_WITH(src.get_blob(desc), Catch::Contains("larger than"));
    CHECK_THROWS_WITH(src.get_manifest(big), Catch::Contains("larger than"));
    // A layer stream stops one byte past the descriptor's size.
    desc.size = 100;
    auto s = src.open_blob(desc);
    CHECK(read_all(*s).size() == 101);
  }
}
