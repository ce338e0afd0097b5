#include "util/digest.hpp"

#include <catch2/catch.hpp>

#include "util/error.hpp"

using layer::Digest;
using layer::Hasher;

TEST_CASE("Digest::parse accepts well-formed digests and refuses the rest") {
  const std::string ok = "sha256:" + std::string(64, 'a');
  CHECK(Digest::parse(ok).hex == std::string(64, 'a'));
  CHECK(Digest::parse(ok).str() == ok);
  CHECK(Digest::valid("sha512:" + std::string(128, '0')));

  const char* bad[] = {
      "",
      "sha256:",
      "sha256",
      ":abc",
      "md5:d41d8cd98f00b204e9800998ecf8427e",
  };
  for (const char* b : bad) CHECK_THROWS_AS(Digest::parse(b), layer::Error);
  CHECK_FALSE(Digest::valid("sha256:" + std::string(63, 'a')));          // short
  CHECK_FALSE(Digest::valid("sha256:" + std::string(65, 'a')));          // long
  CHECK_FALSE(Digest::valid("sha256:" + std::string(64, 'A')));          // uppercase
  CHECK_FALSE(Digest::valid("sha256:../" + std::string(61, 'a')));       // path
  CHECK_FALSE(Digest::valid("sha256:" + std::string(63, 'a') + "/"));    // slash
  CHECK_FALSE(Digest::valid(std::string("sha256:") + std::string(63, 'a') + '\0'));
}

TEST_CASE("Hasher computes sha256 incrementally") {
  // sha256("abc") from FIPS 180-2.
  const std::string want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
  CHECK(Hasher::of("abc").hex == want);
  Hasher h;
  h.update("a");
  h.update("bc");
  CHECK(h.finish().hex == want);
  CHECK(Hasher::of("").hex == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK_THROWS_AS(Hasher("md5"), layer::Error);
}
