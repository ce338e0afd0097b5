#include "registry/reference.hpp"

#include <catch2/catch.hpp>

#include "util/error.hpp"

using layer::registry::Reference;

namespace {
const std::string kHex(64, 'a');
const std::string kDigest = "sha256:" + kHex;
}  // namespace

TEST_CASE("Reference::parse normalizes references as people write them") {
  struct Row {
    std::string in, domain, path, tag, digest, str, endpoint;
  };
  const Row rows[] = {
      {"debian", "docker.io", "library/debian", "latest", "", "docker.io/library/debian:latest",
       "registry-1.docker.io"},
      {"debian:bookworm", "docker.io", "library/debian", "bookworm", "",
       "docker.io/library/debian:bookworm", "registry-1.docker.io"},
      {"docker://debian:bookworm", "docker.io", "library/debian", "bookworm", "",
       "docker.io/library/debian:bookworm", "registry-1.docker.io"},
      {"library/debian", "docker.io", "library/debian", "latest", "",
       "docker.io/library/debian:latest", "registry-1.docker.io"},
      {"docker.io/debian", "docker.io", "library/debian", "latest", "",
       "docker.io/library/debian:latest", "registry-1.docker.io"},
      {"index.docker.io/library/debian", "docker.io", "library/debian", "latest", "",
       "docker.io/library/debian:latest", "registry-1.docker.io"},
      {"bitnami/redis:7.2", "docker.io", "bitnami/redis", "7.2", "", "docker.io/bitnami/redis:7.2",
       "registry-1.docker.io"},
      {"docker.io/library/debian@" + kDigest, "docker.io", "library/debian", "", kDigest,
       "docker.io/library/debian@" + kDigest, "registry-1.docker.io"},
      {"debian:12@" + kDigest, "docker.io", "library/debian", "12", kDigest,
       "docker.io/library/debian:12@" + kDigest, "registry-1.docker.io"},
      {"127.0.0.1:5000/team/app:v1", "127.0.0.1:5000", "team/app", "v1", "",
       "127.0.0.1:5000/team/app:v1", "127.0.0.1:5000"},
      {"localhost/app", "localhost", "app", "latest", "", "localhost/app:latest", "localhost"},
      {"localhost:5000/a/b/c", "localhost:5000", "a/b/c", "latest", "",
       "localhost:5000/a/b/c:latest", "localhost:5000"},
      {"quay.io/podman/stable:v4", "quay.io", "podman/stable", "v4", "", "quay.io/podman/stable:v4",
       "quay.io"},
      {"Registry.Example/x", "Registry.Example", "x", "latest", "", "Registry.Example/x:latest",
       "Registry.Example"},
      {"[::1]:5000/x:y", "[::1]:5000", "x", "y", "", "[::1]:5000/x:y", "[::1]:5000"},
      {"ghcr.io/a-b/c_d.e__f---g:T_1.0-rc", "ghcr.io", "a-b/c_d.e__f---g", "T_1.0-rc", "",
       "ghcr.io/a-b/c_d.e__f---g:T_1.0-rc", "ghcr.io"},
      {"debian:" + std::string(128, 'x'), "docker.io", "library/debian", std::string(128, 'x'), "",
       "docker.io/library/debian:" + std::string(128, 'x'), "registry-1.docker.io"},
  };
  for (const auto& r : rows) {
    INFO(r.in);
    Reference ref = Reference::parse(r.in);
    CHECK(ref.domain == r.domain);
    CHECK(ref.path == r.path);
    CHECK(ref.tag == r.tag);
    CHECK((ref.digest ? ref.digest->str() : "") == r.digest);
    CHECK(ref.str() == r.str);
    CHECK(ref.endpoint() == r.endpoint);
    // Normalizing twice changes nothing.
    CHECK(Reference::parse(ref.str()).str() == ref.str());
  }
}

TEST_CASE("Reference::parse refuses malformed references") {
  const std::string bad[] = {
      "",
      "docker://",
      "Debian",                    // uppercase repository
      "docker.io/Library/debian",  // uppercase path component
      "debian:",                   // empty tag
      ":tag",                      // no name
      "debian@",                   // empty digest
      "debian@sha256:abc",         // short digest
      "debian@md5:d41d8cd98f00b204e9800998ecf8427e",
      "debian@sha256:" + std::string(64, 'A'),
      "a//b",
      "/debian",
      "debian/",
      "-debian",
      "debian-",
      "deb..ian",
      "deb_-ian",
      "deb___ian",
      "debian:-tag",  // tag starts with '-'
      "debian:.tag",
      "debian:ta g",
      "debian:tag/x",
      "debian:" + std::string(129, 'x'),
      "localhost:abc/x",  // port is not a number
      "localhost:/x",
      "host-.example/x",  // domain component ends with '-'
      "host..example/x",
      "[::1/x",
      "127.0.0.1:5000/",
      "a/" + std::string(260, 'b'),  // name over 255 characters
      std::string("deb\0ian", 7),
      "debian\n",
      "http://registry.example/x",
  };
  for (const auto& b : bad) {
    INFO(b);
    CHECK_THROWS_AS(Reference::parse(b), layer::Error);
  }
}

TEST_CASE("Reference names the reference in its errors") {
  try {
    Reference::parse("Debian:bookworm");
    FAIL("no error");
  } catch (const layer::Error& e) {
    CHECK(std::string(e.what()).find("'Debian:bookworm'") != std::string::npos);
    CHECK(std::string(e.what()).find("lowercase") != std::string::npos);
  }
}

TEST_CASE("Reference::is_loopback: plain HTTP is allowed only there") {
  CHECK(Reference::parse("127.0.0.1:5000/x").is_loopback());
  CHECK(Reference::parse("127.1.2.3/x").is_loopback());
  CHECK(Reference::parse("localhost:5000/x").is_loopback());
  CHECK(Reference::parse("[::1]:5000/x").is_loopback());
  CHECK_FALSE(Reference::parse("127.0.0.1.example.com/x").is_loopback());
  CHECK_FALSE(Reference::parse("10.0.0.1:5000/x").is_loopback());
  CHECK_FALSE(Reference::parse("debian").is_loopback());
  CHECK(Reference::parse("[::1]:5000/x").host() == "::1");
  CHECK(Reference::parse("127.0.0.1:5000/x").host() == "127.0.0.1");
}

TEST_CASE("Reference::names_registry tells fully qualified names from short ones") {
  struct Row {
    std::string in;
    bool qualified;
  };
  const Row rows[] = {
      {"debian", false},          {"debian:12", false},       {"team/app:v1", false},
      {"library/debian", false},  {"docker://debian", false}, {"quay.io/team/app", true},
      {"localhost/app:1", true},  {"127.0.0.1:5000/x", true}, {"[::1]:5000/x", true},
      {"docker.io/debian", true}, {"Host/app", true},         {"a.b/c/d:e", true},
  };
  for (const auto& r : rows) {
    INFO(r.in);
    CHECK(Reference::names_registry(r.in) == r.qualified);
  }
}

TEST_CASE("Reference::str of every form stays the same after the append rewrite") {
  CHECK(Reference::parse("a.io/x:1@" + kDigest).str() == "a.io/x:1@" + kDigest);
  CHECK(Reference::parse("a.io/x@" + kDigest).str() == "a.io/x@" + kDigest);
  CHECK(Reference::parse("a.io/x").str() == "a.io/x:latest");
}
