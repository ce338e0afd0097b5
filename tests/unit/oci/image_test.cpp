#include "oci/image.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "oci/media_types.hpp"
#include "util/error.hpp"

using layer::Digest;
using layer::Error;
using nlohmann::json;
namespace oci = layer::oci;

namespace {

const std::string kA = "sha256:" + std::string(64, 'a');
const std::string kB = "sha256:" + std::string(64, 'b');
const std::string kC = "sha256:" + std::string(64, 'c');

json good_manifest() {
  return json{{"schemaVersion", 2},
              {"mediaType", oci::kOciManifest},
              {"config", {{"mediaType", oci::kOciConfig}, {"digest", kA}, {"size", 100}}},
              {"layers",
               {{{"mediaType", oci::kOciLayerGzip}, {"digest", kB}, {"size", 1000}},
                {{"mediaType", oci::kOciLayerZstd}, {"digest", kC}, {"size", 2000}}}}};
}

json good_index() {
  auto entry = [](const std::string& d, const char* arch, const char* variant) {
    json e = {{"mediaType", oci::kOciManifest}, {"digest", d}, {"size", 500}};
    e["platform"] = {{"os", "linux"}, {"architecture", arch}};
    if (*variant) e["platform"]["variant"] = variant;
    return e;
  };
  return json{
      {"schemaVersion", 2},
      {"mediaType", oci::kOciIndex},
      {"manifests", {entry(kA, "amd64", ""), entry(kB, "arm64", "v8"), entry(kC, "arm", "v7")}}};
}

json good_config() {
  return json{{"architecture", "amd64"},
              {"os", "linux"},
              {"created", "2024-01-01T00:00:00Z"},
              {"rootfs", {{"type", "layers"}, {"diff_ids", {kB, kC}}}}};
}

// Applies `edit` to a copy of `base` at a JSON pointer; a null value erases.
json edited(json base, const std::string& ptr, const json& value) {
  json::json_pointer p(ptr);
  if (value.is_null() && ptr != "") {
    base[p.parent_pointer()].erase(p.back());
  } else {
    base[p] = value;
  }
  return base;
}

struct Row {
  const char* what;
  std::string ptr;
  json value;
  const char* message;  // a part of the error text
};

}  // namespace

TEST_CASE("parse_manifest accepts a good manifest") {
  auto m = oci::parse_manifest(good_manifest().dump());
  CHECK(m.media_type == oci::kOciManifest);
  CHECK(m.config.digest.str() == kA);
  CHECK(m.config.size == 100);
  REQUIRE(m.layers.size() == 2);
  CHECK(m.layers[1].media_type == oci::kOciLayerZstd);
  CHECK(m.layers[1].size == 2000);
  // Docker v2s2 too.
  json d = good_manifest();
  d["mediaType"] = oci::kDockerManifest;
  d["config"]["mediaType"] = oci::kDockerConfig;
  d["layers"][0]["mediaType"] = oci::kDockerLayerGzip;
  CHECK(oci::parse_manifest(d.dump()).layers[0].media_type == oci::kDockerLayerGzip);
  // mediaType is optional in OCI manifests.
  CHECK(oci::parse_manifest(edited(good_manifest(), "/mediaType", nullptr).dump()).media_type ==
        oci::kOciManifest);
}

TEST_CASE("parse_manifest refuses bad manifests, naming the field") {
  const std::string big(oci::kMaxDocumentBytes, ' ');
  const Row rows[] = {
      {"schema 1", "/schemaVersion", 1, "schema 1"},
      {"schema 3", "/schemaVersion", 3, "schemaVersion"},
      {"no schema", "/schemaVersion", nullptr, "schemaVersion"},
      {"index media type", "/mediaType", oci::kOciIndex, "index"},
      {"unknown media type", "/mediaType", "application/json", "unsupported media type"},
      {"no config", "/config", nullptr, "missing 'config'"},
      {"config not object", "/config", "x", "config: not an object"},
      {"config artifact", "/config/mediaType", "application/vnd.cncf.helm.config.v1+json",
       "not a container image config"},
      {"config too big", "/config/size", 5 << 20, "over the limit"},
      {"config digest ../", "/config/digest", "sha256:../" + std::string(61, 'a'),
       "invalid digest"},
      {"config digest uppercase", "/config/digest", "sha256:" + std::string(64, 'A'),
       "invalid digest"},
      {"config digest short", "/config/digest", "sha256:" + std::string(63, 'a'), "invalid digest"},
      {"config digest long", "/config/digest", "sha256:" + std::string(65, 'a'), "invalid digest"},
      {"config digest md5", "/config/digest", "md5:d41d8cd98f00b204e9800998ecf8427e",
       "invalid digest"},
      {"config digest unknown alg", "/config/digest", "sha384:" + std::string(96, 'a'),
       "invalid digest"},
      {"config digest no alg", "/config/digest", std::string(64, 'a'), "invalid digest"},
      {"config digest NUL", "/config/digest", "sha256:" + std::string(63, 'a') + '\0',
       "invalid digest"},
      {"config digest number", "/config/digest", 5, "not a string"},
      {"no layers", "/layers", nullptr, "missing 'layers'"},
      {"layers not array", "/layers", json::object(), "not an array"},
      {"layer digest slash", "/layers/1/digest", "sha256:" + std::string(63, 'a') + "/",
       "layers[1]: invalid digest"},
      {"layer digest uppercase", "/layers/0/digest", "sha256:" + std::string(64, 'F'),
       "layers[0]: invalid digest"},
      {"layer negative size", "/layers/0/size", -1, "negative size"},
      {"layer size string", "/layers/0/size", "10", "not an integer"},
      {"layer size float", "/layers/0/size", 1.5, "not an integer"},
      {"layer size huge", "/layers/0/size", 18446744073709551615ull, "too large"},
      {"layer no size", "/layers/0/size", nullptr, "missing 'size'"},
      {"layer no media type", "/layers/0/mediaType", nullptr, "missing 'mediaType'"},
      {"layer urls not array", "/layers/0/urls", "http://x/", "'urls' is not an array"},
      {"layer url not string", "/layers/0/urls", json{1}, "a url is not a string"},
      {"layer bzip2", "/layers/0/mediaType", "application/vnd.oci.image.layer.v1.tar+bzip2",
       "unsupported layer media type"},
      {"layer annotations not strings", "/layers/0/annotations", json{{"a", 1}}, "not a string"},
      {"manifests field", "/manifests", json::array(), "'manifests'"},
  };
  for (const auto& r : rows) {
    INFO(r.what);
    json doc = edited(good_manifest(), r.ptr, r.value);
    try {
      oci::parse_manifest(doc.dump());
      FAIL("accepted: " << r.what);
    } catch (const Error& e) {
      CHECK_THAT(e.line(), Catch::Contains(r.message));
    }
  }
}

TEST_CASE("documents: size cap, syntax, nesting") {
  std::string padded = good_manifest().dump();
  padded.append(oci::kMaxDocumentBytes + 1 - padded.size(), ' ');
  CHECK_THROWS_WITH(oci::parse_manifest(padded), Catch::Contains("more than the limit"));
  CHECK_THROWS_WITH(oci::parse_config(std::string(oci::kMaxDocumentBytes + 1, ' ')),
                    Catch::Contains("more than the limit"));
  CHECK_THROWS_WITH(oci::parse_index(std::string(oci::kMaxDocumentBytes + 1, ' ')),
                    Catch::Contains("more than the limit"));
  // Exactly at the cap is fine.
  std::string at_cap = good_manifest().dump();
  at_cap.append(oci::kMaxDocumentBytes - at_cap.size(), ' ');
  CHECK_NOTHROW(oci::parse_manifest(at_cap));

  const char* bad_json[] = {"", "{", "[]", "null", "\"x\"", "{\"schemaVersion\":2,}", "\xff\xfe"};
  for (const char* b : bad_json) {
    INFO(b);
    CHECK_THROWS_AS(oci::parse_manifest(b), Error);
    CHECK_THROWS_AS(oci::parse_index(b), Error);
    CHECK_THROWS_AS(oci::parse_config(b), Error);
    CHECK_THROWS_AS(oci::classify(b), Error);
  }
  // Deep nesting within the size cap must fail cleanly, not overflow the stack.
  std::string deep = "{\"x\":" + std::string(1 << 20, '[') + std::string(1 << 20, ']') + "}";
  CHECK_THROWS_AS(oci::parse_manifest(deep), Error);
  // Too many layers.
  json many = good_manifest();
  many["layers"] = json::array();
  for (size_t i = 0; i <= oci::kMaxLayers; ++i)
    many["layers"].push_back(good_manifest()["layers"][0]);
  CHECK_THROWS_WITH(oci::parse_manifest(many.dump()), Catch::Contains("limit"));
}

TEST_CASE("parse_config: rootfs and platform") {
  auto c = oci::parse_config(good_config().dump());
  REQUIRE(c.diff_ids.size() == 2);
  CHECK(c.diff_ids[0].str() == kB);
  CHECK(c.platform.str() == "linux/amd64");
  CHECK(c.created == "2024-01-01T00:00:00Z");
  CHECK(c.raw == good_config().dump());

  const Row rows[] = {
      {"no rootfs", "/rootfs", nullptr, "missing 'rootfs'"},
      {"rootfs string", "/rootfs", "layers", "not an object"},
      {"rootfs.type other", "/rootfs/type", "snapshot", "rootfs.type is 'snapshot'"},
      {"rootfs.type missing", "/rootfs/type", nullptr, "missing 'type'"},
      {"rootfs.type number", "/rootfs/type", 1, "not a string"},
      {"no diff_ids", "/rootfs/diff_ids", nullptr, "missing 'diff_ids'"},
      {"diff_ids object", "/rootfs/diff_ids", json::object(), "not an array"},
      {"diff_id uppercase", "/rootfs/diff_ids/0", "sha256:" + std::string(64, 'B'),
       "diff_ids[0]: invalid digest"},
      {"diff_id ../", "/rootfs/diff_ids/1", "sha256:../../etc/passwd",
       "diff_ids[1]: invalid digest"},
      {"diff_id short", "/rootfs/diff_ids/1", "sha256:abc", "invalid digest"},
      {"diff_id unknown alg", "/rootfs/diff_ids/0", "blake3:" + std::string(64, 'a'),
       "invalid digest"},
      {"diff_id number", "/rootfs/diff_ids/0", 7, "not a string"},
      {"os number", "/os", 7, "'os' is not a string"},
  };
  for (const auto& r : rows) {
    INFO(r.what);
    try {
      oci::parse_config(edited(good_config(), r.ptr, r.value).dump());
      FAIL("accepted: " << r.what);
    } catch (const Error& e) {
      CHECK_THAT(e.line(), Catch::Contains(r.message));
    }
  }
}

TEST_CASE("check_layers_match: as many diff_ids as layers, or refuse") {
  auto m = oci::parse_manifest(good_manifest().dump());
  auto c = oci::parse_config(good_config().dump());
  CHECK_NOTHROW(oci::check_layers_match(m, c));
  auto fewer = oci::parse_config(edited(good_config(), "/rootfs/diff_ids", json{kB}).dump());
  CHECK_THROWS_WITH(oci::check_layers_match(m, fewer), Catch::Contains("1 diff_ids for 2 layers"));
  auto more = oci::parse_config(edited(good_config(), "/rootfs/diff_ids", json{kB, kC, kA}).dump());
  CHECK_THROWS_WITH(oci::check_layers_match(m, more), Catch::Contains("3 diff_ids for 2 layers"));
}

TEST_CASE("parse_index and its must-fail rows") {
  auto idx = oci::parse_index(good_index().dump());
  REQUIRE(idx.manifests.size() == 3);
  REQUIRE(idx.manifests[1].platform);
  CHECK(idx.manifests[1].platform->variant == "v8");

  const Row rows[] = {
      {"manifest type", "/mediaType", oci::kOciManifest, "not an index"},
      {"unknown type", "/mediaType", "text/plain", "unsupported media type"},
      {"no manifests", "/manifests", nullptr, "missing 'manifests'"},
      {"schema 1", "/schemaVersion", 1, "schema 1"},
      {"entry digest upper", "/manifests/0/digest", "sha256:" + std::string(64, 'E'),
       "manifests[0]: invalid digest"},
      {"entry platform no os", "/manifests/1/platform/os", nullptr, "missing 'os'"},
      {"entry platform string", "/manifests/1/platform", "linux/amd64", "not an object"},
      {"entry too big", "/manifests/2/size", 5 << 20, "over the limit"},
      {"config field", "/config", json::object(), "'config'"},
  };
  for (const auto& r : rows) {
    INFO(r.what);
    try {
      oci::parse_index(edited(good_index(), r.ptr, r.value).dump());
      FAIL("accepted: " << r.what);
    } catch (const Error& e) {
      CHECK_THAT(e.line(), Catch::Contains(r.message));
    }
  }
}

TEST_CASE("classify by mediaType, Content-Type, then shape") {
  using K = oci::DocKind;
  CHECK(oci::classify(good_manifest().dump()) == K::Manifest);
  CHECK(oci::classify(good_index().dump()) == K::Index);
  CHECK(oci::classify(edited(good_manifest(), "/mediaType", nullptr).dump()) == K::Manifest);
  CHECK(oci::classify(edited(good_index(), "/mediaType", nullptr).dump()) == K::Index);
  CHECK(oci::classify(edited(good_index(), "/mediaType", nullptr).dump(),
                      std::string(oci::kDockerManifestList) + "; charset=utf-8") == K::Index);
  CHECK(oci::classify(good_manifest().dump(), "application/octet-stream") == K::Manifest);

  CHECK_THROWS_WITH(oci::classify(good_manifest().dump(), oci::kOciIndex),
                    Catch::Contains("disagrees"));
  CHECK_THROWS_WITH(
      oci::classify(R"({"schemaVersion":1,"fsLayers":[]})", oci::kDockerSchema1Signed),
      Catch::Contains("schema 1"));
  CHECK_THROWS_WITH(oci::classify(R"({"schemaVersion":2})"), Catch::Contains("neither"));
  CHECK_THROWS_WITH(oci::classify(R"({"schemaVersion":2,"manifests":[],"layers":[]})"),
                    Catch::Contains("ambiguous"));
  CHECK_THROWS_WITH(oci::classify(edited(good_index(), "/layers", json::array()).dump()),
                    Catch::Contains("index has"));
  CHECK_THROWS_WITH(oci::classify(R"({"mediaType":"text/html"})"),
                    Catch::Contains("unsupported media type"));
}

TEST_CASE("Platform::parse normalizes and refuses junk") {
  struct P {
    const char* in;
    const char* out;
  } good[] = {
      {"linux/amd64", "linux/amd64"},       {"linux/x86_64", "linux/amd64"},
      {"Linux/AMD64", "linux/amd64"},       {"linux/amd64/v1", "linux/amd64"},
      {"linux/amd64/v3", "linux/amd64/v3"}, {"linux/aarch64", "linux/arm64"},
      {"linux/arm64/v8", "linux/arm64"},    {"linux/arm64/v9.0", "linux/arm64/v9"},
      {"linux/arm", "linux/arm/v7"},        {"linux/armhf", "linux/arm/v7"},
      {"linux/armel", "linux/arm/v6"},      {"linux/arm/6", "linux/arm/v6"},
      {"linux/i386", "linux/386"},          {"linux/riscv64", "linux/riscv64"},
      {"macos/arm64", "darwin/arm64"},
  };
  for (const auto& p : good) {
    INFO(p.in);
    CHECK(oci::Platform::parse(p.in).str() == p.out);
  }
  const char* bad[] = {"",
                       "linux",
                       "/amd64",
                       "linux/",
                       "linux//v7",
                       "linux/amd64/v2/x",
                       "linux/am d64",
                       "linux/../x",
                       "linux/amd64\n",
                       "a/b/c/d"};
  for (const char* b : bad) {
    INFO(b);
    CHECK_THROWS_AS(oci::Platform::parse(b), Error);
  }
  CHECK_FALSE(oci::Platform::host().os.empty());
  CHECK(oci::Platform::parse(oci::Platform::host().str()) == oci::Platform::host());
}

TEST_CASE("select_platform follows containerd's matcher") {
  auto entry = [](const std::string& d, const std::string& plat) {
    json e = {{"mediaType", oci::kOciManifest}, {"digest", d}, {"size", 10}};
    if (!plat.empty()) {
      auto p = oci::Platform::parse(plat);
      e["platform"] = {{"os", p.os}, {"architecture", p.architecture}};
      if (!p.variant.empty()) e["platform"]["variant"] = p.variant;
    }
    return e;
  };
  auto index = [&](std::vector<std::pair<std::string, std::string>> entries) {
    json j = {{"schemaVersion", 2}, {"manifests", json::array()}};
    for (auto& [d, p] : entries) j["manifests"].push_back(entry(d, p));
    return oci::parse_index(j.dump());
  };
  auto pick = [&](const oci::Index& idx, const char* want) {
    return oci::select_platform(idx, oci::Platform::parse(want)).digest.str();
  };
  struct Case {
    std::vector<std::pair<std::string, std::string>> entries;
    const char* want;
    std::string expect;  // "" = must fail
  } cases[] = {
      {{{kA, "linux/amd64"}, {kB, "linux/arm64"}}, "linux/amd64", kA},
      {{{kA, "linux/amd64"}, {kB, "linux/arm64"}}, "linux/arm64", kB},
      {{{kA, "linux/amd64"}, {kB, "linux/arm64/v8"}}, "linux/arm64", kB},
      {{{kA, "linux/amd64"}, {kB, "linux/aarch64"}}, "linux/arm64/v8", kB},
      // arm64 falls back to arm v8, v7, v6, v5 in that order.
      {{{kA, "linux/arm/v6"}, {kB, "linux/arm/v7"}}, "linux/arm64", kB},
      {{{kA, "linux/arm/v5"}, {kB, "linux/amd64"}}, "linux/arm64", kA},
      // arm v7 → v6 → v5; never up.
      {{{kA, "linux/arm/v5"}, {kB, "linux/arm/v6"}}, "linux/arm/v7", kB},
      {{{kA, "linux/arm/v7"}}, "linux/arm/v6", ""},
      {{{kA, "linux/arm64"}}, "linux/arm/v7", ""},
      // amd64 v3 → v2 → v1 → 386.
      {{{kA, "linux/amd64"}, {kB, "linux/amd64/v2"}}, "linux/amd64/v3", kB},
      {{{kA, "linux/386"}, {kB, "linux/amd64/v2"}}, "linux/amd64", kA},
      {{{kA, "linux/amd64/v2"}}, "linux/amd64", ""},
      // Exact beats fallback regardless of order; first of equals wins.
      {{{kA, "linux/386"}, {kB, "linux/amd64"}}, "linux/amd64", kB},
      {{{kA, "linux/amd64"}, {kB, "linux/amd64"}}, "linux/amd64", kA},
      // OS must match.
      {{{kA, "windows/amd64"}}, "linux/amd64", ""},
      // No platform: usable, but ranked after every match.
      {{{kA, ""}, {kB, "linux/386"}}, "linux/amd64", kB},
      {{{kA, ""}, {kB, "linux/arm64"}}, "linux/amd64", kA},
      {{}, "linux/amd64", ""},
  };
  for (const auto& c : cases) {
    auto idx = index(c.entries);
    INFO("want " << c.want << " among " << c.entries.size());
    if (c.expect.empty()) {
      CHECK_THROWS_WITH(pick(idx, c.want), Catch::Contains("no image for platform"));
    } else {
      CHECK(pick(idx, c.want) == c.expect);
    }
  }
  // The error lists what there is.
  CHECK_THROWS_WITH(pick(index({{kA, "linux/arm/v7"}, {kB, "linux/s390x"}}), "linux/amd64"),
                    Catch::Contains("linux/arm/v7, linux/s390x"));
  // Entries that are not image manifests are never picked.
  json art = {{"schemaVersion", 2},
              {"manifests",
               {{{"mediaType", "application/vnd.in-toto+json"},
                 {"digest", kA},
                 {"size", 1},
                 {"platform", {{"os", "linux"}, {"architecture", "amd64"}}}}}}};
  CHECK_THROWS_AS(
      oci::select_platform(oci::parse_index(art.dump()), oci::Platform::parse("linux/amd64")),
      Error);
}

TEST_CASE("layer_kind maps media types") {
  using L = oci::LayerKind;
  CHECK(oci::layer_kind(oci::kOciLayer) == L::Tar);
  CHECK(oci::layer_kind(oci::kDockerLayerTar) == L::Tar);
  CHECK(oci::layer_kind(oci::kOciLayerGzip) == L::TarGzip);
  CHECK(oci::layer_kind(oci::kDockerLayerGzip) == L::TarGzip);
  CHECK(oci::layer_kind(oci::kOciLayerZstd) == L::TarZstd);
  // Non-distributable layers are accepted as the image spec requires.
  CHECK(oci::layer_kind("application/vnd.oci.image.layer.nondistributable.v1.tar") == L::Tar);
  CHECK(oci::layer_kind("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip") ==
        L::TarGzip);
  CHECK(oci::layer_kind("application/vnd.oci.image.layer.nondistributable.v1.tar+zstd") ==
        L::TarZstd);
  CHECK(oci::layer_kind("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip") == L::TarGzip);
  CHECK(oci::layer_kind("") == L::Unsupported);
  CHECK(oci::layer_kind(std::string(oci::kOciLayerGzip) + " ") == L::Unsupported);
}
