// The main of the overlay unit tests: Catch2's, except that a run of only
// the tests tagged [root] (meson's unit/overlay-root) reports itself skipped
// (exit 77) when not run as root, instead of failing or passing untested.
#define CATCH_CONFIG_RUNNER
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <string_view>

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "[root]" && ::geteuid() != 0) {
      std::puts("SKIP: the [root] tests need root (device whiteouts, trusted.* xattrs, chown)");
      return 77;
    }
  }
  return Catch::Session().run(argc, argv);
}
