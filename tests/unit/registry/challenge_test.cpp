#include "registry/challenge.hpp"

#include <catch2/catch.hpp>

using layer::registry::Challenge;

TEST_CASE("Challenge::parse reads Docker Hub's Bearer challenge") {
  auto cs = Challenge::parse(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull")");
  REQUIRE(cs.size() == 1);
  CHECK(cs[0].scheme == "bearer");
  CHECK(cs[0].param("realm") == "https://auth.docker.io/token");
  CHECK(cs[0].param("service") == "registry.docker.io");
  CHECK(cs[0].param("scope") == "repository:library/debian:pull");
  CHECK(cs[0].param("error").empty());
}

TEST_CASE("Challenge::parse: schemes, spacing, quoting, several challenges") {
  struct Row {
    std::string header;
    std::vector<std::pair<std::string, std::map<std::string, std::string>>> want;
  };
  const Row rows[] = {
      {R"(Basic realm="Registry Realm")", {{"basic", {{"realm", "Registry Realm"}}}}},
      {R"(basic REALM=registry)", {{"basic", {{"realm", "registry"}}}}},
      {R"(  Bearer   realm = "https://a/t" ,  service = "s" )",
       {{"bearer", {{"realm", "https://a/t"}, {"service", "s"}}}}},
      {R"(Bearer realm="https://a/t",error="insufficient_scope",scope="repository:x:pull,push")",
       {{"bearer",
         {{"realm", "https://a/t"},
          {"error", "insufficient_scope"},
          {"scope", "repository:x:pull,push"}}}}},
      {R"(Bearer realm="a \"quoted\" \\ realm")",
       {{"bearer", {{"realm", R"(a "quoted" \ realm)"}}}}},
      {R"(Basic realm="r1", Bearer realm="https://t",service="s")",
       {{"basic", {{"realm", "r1"}}}, {"bearer", {{"realm", "https://t"}, {"service", "s"}}}}},
      {R"(Negotiate, Basic realm="x")", {{"negotiate", {}}, {"basic", {{"realm", "x"}}}}},
      {R"(Negotiate abc123==)", {{"negotiate", {{"", "abc123=="}}}}},
      {"", {}},
      {"   ", {}},
  };
  for (const auto& r : rows) {
    INFO(r.header);
    auto cs = Challenge::parse(r.header);
    REQUIRE(cs.size() == r.want.size());
    for (size_t i = 0; i < cs.size(); ++i) {
      CHECK(cs[i].scheme == r.want[i].first);
      CHECK(cs[i].params == r.want[i].second);
    }
  }
}

TEST_CASE("Challenge::parse keeps what it understood before malformed input") {
  // Unterminated quoted string: the parameters before it survive, nothing crashes.
  auto cs = Challenge::parse(R"(Bearer service="s",realm="https://unterminated)");
  REQUIRE(cs.size() == 1);
  CHECK(cs[0].param("service") == "s");
  CHECK(cs[0].param("realm").empty());
  for (const char* junk : {"=", ",,,", "\"", "Bearer =", "Bearer realm=", "Bearer ,realm=\"x\"",
                           "Bearer realm=\"x\" junk junk", "\x01\x02"}) {
    INFO(junk);
    CHECK_NOTHROW(Challenge::parse(junk));
  }
}
