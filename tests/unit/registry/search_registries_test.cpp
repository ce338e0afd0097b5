#include "registry/search_registries.hpp"

#include <catch2/catch.hpp>

#include "util/error.hpp"

using layer::registry::parse_search_registries;

TEST_CASE("parse_search_registries reads registries.conf's list in order") {
  const std::string conf =
      "# comment\n"
      "unqualified-search-registries = [\"quay.io\", \"127.0.0.1:5000\"]  # why\n"
      "short-name-mode = \"permissive\"\n"
      "\n[[registry]]\nlocation = \"example.com\"\ninsecure = true\n";
  auto got = parse_search_registries(conf, "r.conf");
  CHECK(got == std::vector<std::string>{"quay.io", "127.0.0.1:5000"});
  CHECK(parse_search_registries("", "r.conf").empty());
  CHECK(parse_search_registries("[[registry]]\nlocation = \"x.io\"\n", "r.conf").empty());
}

TEST_CASE("parse_search_registries refuses what is not a list of registry hosts") {
  const char* bad[] = {
      "unqualified-search-registries = \"quay.io\"\n",
      "unqualified-search-registries = [1, 2]\n",
      "unqualified-search-registries = [\"quay.io/team\"]\n",
      "unqualified-search-registries = [\"\"]\n",
      "unqualified-search-registries = [\"bad host!\"]\n",
      "unqualified-search-registries = [\"quay.io\"\n",
      "= broken\n",
  };
  for (const char* text : bad) {
    INFO(text);
    try {
      parse_search_registries(text, "/etc/containers/registries.conf");
      FAIL("accepted");
    } catch (const layer::Error& e) {
      CHECK(std::string(e.what()).rfind("/etc/containers/registries.conf: ", 0) == 0);
    }
  }
}

TEST_CASE("SearchList::candidates puts the short name at each registry") {
  layer::registry::SearchList s{"f", {"quay.io", "docker.io"}};
  CHECK(s.candidates("team/app:v1") ==
        std::vector<std::string>{"quay.io/team/app:v1", "docker.io/team/app:v1"});
}
