#include "oci/archive_source.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <thread>

#include "../unpack/tar_builder.hpp"
#include "oci/media_types.hpp"
#include "util/error.hpp"

using layer::Digest;
using layer::Error;
using layer::Hasher;
using layer::testing::Filter;
using layer::testing::TarBuilder;
using layer::testing::TempDir;
using nlohmann::json;
namespace oci = layer::oci;

namespace {

std::string read_all(layer::ByteSource& s) {
  std::string out;
  char buf[4096];
  while (size_t n = s.read(buf, sizeof buf)) out.append(buf, n);
  return out;
}

void write_file(const std::string& path, const std::string& data) {
  FILE* f = std::fopen(path.c_str(), "wb");
  REQUIRE(f);
  std::fwrite(data.data(), 1, data.size(), f);
  std::fclose(f);
}

std::string layer_tar(const std::string& content) {
  return TarBuilder().dir("etc/").file("etc/f", content).finish();
}

json config_for(const std::vector<std::string>& tars) {
  json ids = json::array();
  for (const auto& t : tars) ids.push_back(Hasher::of(t).str());
  return json{{"architecture", "amd64"},
              {"os", "linux"},
              {"rootfs", {{"type", "layers"}, {"diff_ids", ids}}}};
}

// A legacy `docker save` archive: manifest.json, <hex>.json, <id>/layer.tar.
struct Legacy {
  std::vector<std::string> tars{layer_tar("one"), layer_tar("two")};
  json config = config_for(tars);
  json manifest;  // set by build() unless preset
  std::string config_name;
  std::function<void(TarBuilder&)> extra;  // more members
  bool compress_second = false;

  std::string build() {
    TarBuilder t;
    std::string cfg = config.dump();
    if (config_name.empty()) config_name = Hasher::of(cfg).hex + ".json";
    json layers = json::array();
    for (size_t i = 0; i < tars.size(); ++i) {
      std::string id = std::string(64, static_cast<char>('a' + i));
      std::string data = tars[i];
      if (compress_second && i == 1) data = layer::testing::compress(data, Filter::Gzip);
      t.dir(id + "/").file(id + "/VERSION", "1.0").file(id + "/layer.tar", data);
      layers.push_back(id + "/layer.tar");
    }
    t.file(config_name, cfg);
    if (extra) extra(t);
    if (manifest.is_null())
      manifest =
          json::array({{{"Config", config_name}, {"RepoTags", {"app:v1"}}, {"Layers", layers}}});
    t.file("manifest.json", manifest.dump());
    return t.finish();
  }
};

std::string save(TempDir& d, const std::string& name, const std::string& bytes) {
  std::string p = d.path + "/" + name;
  write_file(p, bytes);
  return p;
}

}  // namespace

TEST_CASE("ArchiveSource: legacy docker save, synthesized manifest") {
  TempDir d;
  Legacy l;
  l.compress_second = true;
  std::string path = save(d, "legacy.tar", l.build());
  oci::ArchiveSource src(path, "");
  CHECK(src.default_name() == "app:v1");
  CHECK(src.describe() == "docker-archive:" + path);

  auto doc = src.get_manifest(std::nullopt);
  CHECK(doc.digest == Hasher::of(doc.bytes));
  auto m = oci::parse_manifest(doc.bytes);
  REQUIRE(m.layers.size() == 2);
  // Uncompressed: digest is the diff_id; compressed: hashed once.
  CHECK(m.layers[0].media_type == oci::kOciLayer);
  CHECK(m.layers[0].digest == Hasher::of(l.tars[0]));
  CHECK(m.layers[0].size == static_cast<int64_t>(l.tars[0].size()));
  std::string gz = layer::testing::compress(l.tars[1], Filter::Gzip);
  CHECK(m.layers[1].media_type == oci::kOciLayerGzip);
  CHECK(m.layers[1].digest == Hasher::of(gz));
  CHECK(m.layers[1].size == static_cast<int64_t>(gz.size()));

  std::string cfg = src.get_blob(m.config);
  CHECK(Hasher::of(cfg) == m.config.digest);
  CHECK(m.config.size == static_cast<int64_t>(cfg.size()));
  auto b0 = src.open_blob(m.layers[0]);
  CHECK(read_all(*b0) == l.tars[0]);
  auto b1 = src.open_blob(m.layers[1]);
  CHECK(read_all(*b1) == gz);
  // By digest, the same manifest.
  CHECK(src.get_manifest(doc.digest).bytes == doc.bytes);

  // Several threads stream at once, each its own reader.
  std::vector<std::thread> ts;
  std::atomic<int> good{0};
  for (int i = 0; i < 8; ++i)
    ts.emplace_back([&, i] {
      auto s = src.open_blob(m.layers[i % 2]);
      if (read_all(*s) == (i % 2 ? gz : l.tars[0])) ++good;
    });
  for (auto& t : ts) t.join();
  CHECK(good == 8);
}

TEST_CASE("ArchiveSource: a layer.tar that is a symlink to another (docker's dedup)") {
  TempDir d;
  Legacy l;
  l.tars = {layer_tar("same"), layer_tar("same")};
  l.config = config_for(l.tars);
  std::string cfg = l.config.dump();
  std::string name = Hasher::of(cfg).hex + ".json";
  TarBuilder t;
  t.dir("a/").file("a/layer.tar", l.tars[0]).dir("b/").symlink("b/layer.tar", "../a/layer.tar");
  t.file(name, cfg);
  t.file(
      "manifest.json",
      json::array(
          {{{"Config", name}, {"RepoTags", nullptr}, {"Layers", {"a/layer.tar", "b/layer.tar"}}}})
          .dump());
  std::string path = save(d, "dedup.tar", t.finish());
  oci::ArchiveSource src(path, "");
  CHECK(src.default_name() == "docker-archive:" + path);
  auto m = oci::parse_manifest(src.get_manifest(std::nullopt).bytes);
  REQUIRE(m.layers.size() == 2);
  auto s = src.open_blob(m.layers[1]);
  CHECK(read_all(*s) == l.tars[0]);
}

TEST_CASE("ArchiveSource: picks the image by RepoTag or @N") {
  TempDir d;
  Legacy l;
  std::string cfg = l.config.dump();
  std::string name = Hasher::of(cfg).hex + ".json";
  json layers = {std::string(64, 'a') + "/layer.tar", std::string(64, 'b') + "/layer.tar"};
  l.manifest = json::array(
      {{{"Config", name}, {"RepoTags", {"one:v1"}}, {"Layers", layers}},
       {{"Config", name}, {"RepoTags", {"docker.io/library/two:latest"}}, {"Layers", layers}}});
  std::string path = save(d, "two.tar", l.build());
  CHECK_THROWS_WITH(
      oci::ArchiveSource(path, ""),
      Catch::Contains("holds 2 images") && Catch::Contains("one:v1, docker.io/library/two:latest"));
  CHECK(oci::ArchiveSource(path, "one:v1").default_name() == "one:v1");
  CHECK(oci::ArchiveSource(path, "two").default_name() == "docker.io/library/two:latest");
  CHECK(oci::ArchiveSource(path, "docker.io/library/one:v1").default_name() == "one:v1");
  CHECK(oci::ArchiveSource(path, "@1").default_name() == "docker.io/library/two:latest");
  CHECK_THROWS_WITH(oci::ArchiveSource(path, "@2"), Catch::Contains("no image @2"));
  CHECK_THROWS_WITH(oci::ArchiveSource(path, "@x"), Catch::Contains("no image @x"));
  CHECK_THROWS_WITH(oci::ArchiveSource(path, "one:v2"),
                    Catch::Contains("no image tagged 'one:v2'"));
}

TEST_CASE("ArchiveSource: Docker 25 format uses the real manifest") {
  TempDir d;
  std::string tar = layer_tar("x");
  std::string blob = layer::testing::compress(tar, Filter::Zstd);
  std::string cfg = config_for({tar}).dump();
  json manifest = {
      {"schemaVersion", 2},
      {"mediaType", oci::kOciManifest},
      {"config",
       {{"mediaType", oci::kOciConfig}, {"digest", Hasher::of(cfg).str()}, {"size", cfg.size()}}},
      {"layers",
       {{{"mediaType", oci::kOciLayerZstd},
         {"digest", Hasher::of(blob).str()},
         {"size", blob.size()}}}}};
  std::string mtext = manifest.dump();
  json index = {{"schemaVersion", 2},
                {"manifests",
                 {{{"mediaType", oci::kOciManifest},
                   {"digest", Hasher::of(mtext).str()},
                   {"size", mtext.size()}}}}};
  auto build = [&](const std::string& index_text, const std::string& manifest_text) {
    TarBuilder t;
    t.file("oci-layout", R"({"imageLayoutVersion":"1.0.0"})").dir("blobs/").dir("blobs/sha256/");
    t.file("blobs/sha256/" + Hasher::of(blob).hex, blob);
    t.file("blobs/sha256/" + Hasher::of(cfg).hex, cfg);
    t.file("blobs/sha256/" + Hasher::of(mtext).hex, manifest_text);
    t.file("index.json", index_text);
    t.file("manifest.json", json::array({{{"Config", "blobs/sha256/" + Hasher::of(cfg).hex},
                                          {"RepoTags", {"new:1"}},
                                          {"Layers", {"blobs/sha256/" + Hasher::of(blob).hex}}}})
                                .dump());
    return t.finish();
  };
  oci::ArchiveSource src(save(d, "new.tar", build(index.dump(), mtext)), "new:1");
  auto doc = src.get_manifest(std::nullopt);
  CHECK(doc.bytes == mtext);
  auto m = oci::parse_manifest(doc.bytes);
  auto s = src.open_blob(m.layers[0]);
  CHECK(read_all(*s) == blob);
  CHECK(src.get_blob(m.config) == cfg);

  // A manifest blob that does not match index.json's descriptor.
  std::string forged = mtext;
  forged.back() = ' ';
  CHECK_THROWS_WITH(
      oci::ArchiveSource(save(d, "forged.tar", build(index.dump(), forged + "}")), ""),
      Catch::Contains("does not match its descriptor"));
}

TEST_CASE("ArchiveSource refuses hostile archives") {
  TempDir d;
  struct Row {
    const char* what;
    std::function<void(Legacy&)> edit;
    const char* message;
  };
  const std::string a_layer = std::string(64, 'a') + "/layer.tar";
  const std::string b_layer = std::string(64, 'b') + "/layer.tar";
  const Row rows[] = {
      {"manifest.json not JSON", [](Legacy& l) { l.manifest = "x"; }, "not a non-empty array"},
      {"manifest.json empty", [](Legacy& l) { l.manifest = json::array(); },
       "not a non-empty array"},
      {"entry not object", [](Legacy& l) { l.manifest = json::array({1}); }, "not an object"},
      {"no Config",
       [&](Legacy& l) {
         l.manifest = json::array({{{"Layers", {a_layer, b_layer}}}});
       },
       "missing 'Config'"},
      {"no Layers",
       [&](Legacy& l) {
         l.manifest = json::array({{{"Config", "x.json"}}});
       },
       "missing 'Layers'"},
      {"config path ..",
       [&](Legacy& l) {
         l.manifest =
             json::array({{{"Config", "../../etc/passwd"}, {"Layers", {a_layer, b_layer}}}});
       },
       "invalid member path"},
      {"config path absolute",
       [&](Legacy& l) {
         l.manifest = json::array({{{"Config", "/etc/passwd"}, {"Layers", {a_layer, b_layer}}}});
       },
       "invalid member path"},
      {"config missing",
       [&](Legacy& l) {
         l.manifest = json::array({{{"Config", "nope.json"}, {"Layers", {a_layer, b_layer}}}});
       },
       "no member 'nope.json'"},
      {"config name mismatch", [](Legacy& l) { l.config_name = std::string(64, 'f') + ".json"; },
       "content has digest"},
      {"diff_ids fewer", [](Legacy& l) { l.config["rootfs"]["diff_ids"].erase(1); },
       "1 diff_ids for 2 layers"},
      {"rootfs.type", [](Legacy& l) { l.config["rootfs"]["type"] = "zfs"; },
       "rootfs.type is 'zfs'"},
      {"diff_id uppercase",
       [](Legacy& l) { l.config["rootfs"]["diff_ids"][0] = "sha256:" + std::string(64, 'A'); },
       "invalid digest"},
      {"config over 4 MiB", [](Legacy& l) { l.config["pad"] = std::string(5 << 20, 'x'); },
       "more than the limit"},
      {"layer symlink escapes",
       [&](Legacy& l) {
         l.extra = [](TarBuilder& t) { t.symlink("evil.tar", "../../../etc/passwd"); };
         l.manifest = json::array({{{"Config", ""}, {"Layers", {a_layer, "evil.tar"}}}});
       },
       "links outside the archive"},
      {"layer symlink absolute",
       [&](Legacy& l) {
         l.extra = [](TarBuilder& t) { t.symlink("evil.tar", "/etc/passwd"); };
         l.manifest = json::array({{{"Config", ""}, {"Layers", {a_layer, "evil.tar"}}}});
       },
       "links outside the archive"},
      {"layer symlink loop",
       [&](Legacy& l) {
         l.extra = [](TarBuilder& t) { t.symlink("x.tar", "y.tar").symlink("y.tar", "x.tar"); };
         l.manifest = json::array({{{"Config", ""}, {"Layers", {a_layer, "x.tar"}}}});
       },
       "too many levels of links"},
      {"layer missing",
       [&](Legacy& l) {
         l.manifest = json::array({{{"Config", ""}, {"Layers", {a_layer, "gone.tar"}}}});
       },
       "no member 'gone.tar'"},
      {"duplicate member",
       [](Legacy& l) { l.extra = [](TarBuilder& t) { t.file("dup", "1").file("./dup", "2"); }; },
       "appears twice"},
  };
  for (const auto& r : rows) {
    INFO(r.what);
    Legacy l;
    r.edit(l);
    // Rows that name Config "" mean: the real config name.
    if (l.manifest.is_array() && !l.manifest.empty() && l.manifest[0].is_object() &&
        l.manifest[0].contains("Config") && l.manifest[0]["Config"] == "")
      l.manifest[0]["Config"] = Hasher::of(l.config.dump()).hex + ".json";
    std::string path = save(d, "bad.tar", l.build());
    try {
      oci::ArchiveSource src(path, "");
      FAIL("accepted: " << r.what);
    } catch (const Error& e) {
      CHECK_THAT(e.line(), Catch::Contains(r.message));
      CHECK_THAT(e.line(), Catch::Contains("docker-archive:" + path));
    }
  }
  // Not a tar, no manifest.json, missing file.
  CHECK_THROWS_AS(oci::ArchiveSource(save(d, "junk.tar", std::string(1000, 'j')), ""), Error);
  CHECK_THROWS_WITH(
      oci::ArchiveSource(save(d, "plain.tar", TarBuilder().file("a", "b").finish()), ""),
      Catch::Contains("no manifest.json"));
  CHECK_THROWS_AS(oci::ArchiveSource(d.path + "/absent.tar", ""), Error);
  CHECK_THROWS_WITH(oci::ArchiveSource(d.path, ""), Catch::Contains("not a regular file"));
  // manifest.json over 4 MiB.
  std::string big =
      TarBuilder().file("manifest.json", "[" + std::string(5 << 20, ' ') + "]").finish();
  CHECK_THROWS_WITH(oci::ArchiveSource(save(d, "big.tar", big), ""),
                    Catch::Contains("more than the limit"));
}

TEST_CASE("open_local_source parses references") {
  TempDir d;
  Legacy l;
  std::string path = save(d, "l.tar", l.build());
  CHECK(oci::open_local_source("docker-archive:" + path)->default_name() == "app:v1");
  CHECK(oci::open_local_source("docker-archive:" + path + ":app:v1")->default_name() == "app:v1");
  CHECK_THROWS_WITH(oci::open_local_source("docker-archive:"), Catch::Contains("no archive file"));
  CHECK_THROWS_WITH(oci::open_local_source("oci:"), Catch::Contains("no layout directory"));
  CHECK_THROWS_WITH(oci::open_local_source("dir:/x"),
                    Catch::Contains("not a local image reference"));
}
