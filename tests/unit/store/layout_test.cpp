#include "store/layout.hpp"

#include <catch2/catch.hpp>

#include "util/error.hpp"

using namespace layer;
using layer::store::Layout;

TEST_CASE("layout builds the version-1 paths") {
  Digest d = Digest::parse("sha256:" + std::string(64, 'a'));
  CHECK(Layout::blob(d) == "blobs/sha256/" + d.hex);
  CHECK(Layout::layer_dir(d) == "layers/sha256/" + d.hex);
  CHECK(Layout::layer_diff(d) == "layers/sha256/" + d.hex + "/diff");
  CHECK(Layout::layer_json(d) == "layers/sha256/" + d.hex + "/layer.json");
  CHECK(Layout::layer_lock(d) == "tmp/sha256-" + d.hex + ".lock");
  CHECK(Layout::container_upper("abc") == "containers/abc/upper");
  CHECK(Layout::container_work("abc") == "containers/abc/work");
  CHECK(Layout::container_json("abc") == "containers/abc/container.json");
  CHECK(Layout::store_json() == "store.json");
}

TEST_CASE("image refs escape to one safe, reversible path component") {
  const char* refs[] = {
      "docker.io/library/debian:bookworm",
      "oci:/tmp/x:tag",
      "localhost:5000/a/b@sha256:"
      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
      ".",
      "..",
      "../../etc/passwd",
      "a%2Fb",
      "sp ace\nnl",
      "%",
      "",
  };
  for (const char* r : refs) {
    std::string e = Layout::escape_ref(r);
    INFO(r << " -> " << e);
    CHECK(e.find('/') == std::string::npos);
    CHECK(e != ".");
    CHECK(e != "..");
    CHECK((e.empty() || e[0] != '.'));
    CHECK(Layout::unescape_ref(e) == r);
    CHECK(Layout::image_json(r) == "images/" + e + ".json");
  }
  CHECK(Layout::escape_ref("a/b") != Layout::escape_ref("a%2Fb"));
  CHECK_THROWS_AS(Layout::unescape_ref("bad%2"), Error);
  CHECK_THROWS_AS(Layout::unescape_ref("bad%zz"), Error);
}
