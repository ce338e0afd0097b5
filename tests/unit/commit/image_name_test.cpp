#include <catch2/catch.hpp>

#include "commit/committer.hpp"
#include "util/error.hpp"

using layer::commit::image_name;

TEST_CASE("image_name: a committed image without a registry host is localhost/, as in podman") {
  CHECK(image_name("app") == "localhost/app:latest");
  CHECK(image_name("app:1") == "localhost/app:1");
  CHECK(image_name("team/app:1") == "localhost/team/app:1");
  CHECK(image_name("docker://app:1") == "localhost/app:1");
  CHECK(image_name("localhost/app:2") == "localhost/app:2");
  CHECK(image_name("docker.io/app:1") == "docker.io/library/app:1");
  CHECK(image_name("127.0.0.1:5000/team/app:1") == "127.0.0.1:5000/team/app:1");
  CHECK_THROWS_AS(image_name("Bad Name!"), layer::Error);
  CHECK_THROWS_AS(image_name("app@sha256:" + std::string(64, 'a')), layer::Error);
}
