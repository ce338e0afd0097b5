#include "util/sys.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>

#include "util/error.hpp"

using namespace layer;

namespace {
struct TempDir {
  std::string path;
  TempDir() {
    char t[] = "/tmp/layerfs-test-XXXXXX";
    path = ::mkdtemp(t);
  }
  ~TempDir() {
    auto fd = sys::xopen_dir("/tmp");
    sys::xremove_tree(fd.get(), path.substr(5));
  }
};
}  // namespace

TEST_CASE("open_beneath refuses to leave the directory") {
  TempDir t;
  auto dir = sys::xopen_dir(t.path);
  REQUIRE(::symlinkat("/etc", dir.get(), "out") == 0);
  REQUIRE(::symlinkat("../../../../etc/passwd", dir.get(), "rel") == 0);
  CHECK_FALSE(sys::open_beneath(dir.get(), "out/passwd", O_RDONLY).ok());
  CHECK_FALSE(sys::open_beneath(dir.get(), "rel", O_RDONLY).ok());
  CHECK_FALSE(sys::open_beneath(dir.get(), "../etc/passwd", O_RDONLY).ok());
  CHECK_FALSE(sys::open_beneath(dir.get(), "/etc/passwd", O_RDONLY).ok());
  auto f = sys::open_beneath(dir.get(), "new", O_WRONLY | O_CREAT, 0600);
  CHECK(f.ok());
}

TEST_CASE("xwrite_file_atomic publishes whole files and cleans up on failure") {
  TempDir t;
  auto dir = sys::xopen_dir(t.path);
  sys::xwrite_file_atomic(dir.get(), "tmp1", dir.get(), "final", "hello");
  CHECK(sys::xread_file(dir.get(), "final", 100, "final") == "hello");
  CHECK(::faccessat(dir.get(), "tmp1", F_OK, 0) != 0);
  CHECK_THROWS_AS(sys::xread_file(dir.get(), "final", 3, "final"), Error);
  // Destination directory missing: the temporary is removed, the error thrown.
  CHECK_THROWS_AS(sys::xwrite_file_atomic(dir.get(), "tmp2", dir.get(), "nodir/x", "y"), Error);
  CHECK(::faccessat(dir.get(), "tmp2", F_OK, 0) != 0);
}

TEST_CASE("xremove_tree removes nested trees without following symlinks") {
  TempDir t;
  TempDir victim;
  auto v = sys::xopen_dir(victim.path);
  sys::xwrite_file_atomic(v.get(), "t", v.get(), "keep", "x");
  auto dir = sys::xopen_dir(t.path);
  REQUIRE(::mkdirat(dir.get(), "a", 0755) == 0);
  REQUIRE(::mkdirat(dir.get(), "a/b", 0755) == 0);
  REQUIRE(::symlinkat(victim.path.c_str(), dir.get(), "a/b/link") == 0);
  sys::xremove_tree(dir.get(), "a");
  CHECK(::faccessat(dir.get(), "a", F_OK, AT_SYMLINK_NOFOLLOW) != 0);
  CHECK(::faccessat(v.get(), "keep", F_OK, 0) == 0);
  sys::xremove_tree(dir.get(), "missing");
}
