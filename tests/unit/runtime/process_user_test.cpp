#include "runtime/process_user.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>

#include "util/error.hpp"
#include "util/sys.hpp"

using layer::Error;
using layer::runtime::ProcessUser;
namespace sys = layer::sys;

namespace {

const char* kPasswd =
    "root:x:0:0:root:/root:/bin/sh\n"
    "# a comment\n"
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "broken:x:notanumber:1::/:/bin/sh\n"
    "short:x:5\n"
    "app:x:1000:1000:App,,,:/home/app:/bin/sh\n"
    "big:x:4294967294:4294967294::/big:/bin/sh\n"
    "toobig:x:4294967295:1::/:/bin/sh\n";
const char* kGroup =
    "root:x:0:\n"
    "daemon:x:1:\n"
    "audio:x:29:app,other\n"
    "video:x:44:other,app\n"
    "app:x:1000:\n"
    "staff:x:50:\n"
    "bad:x:x:app\n";

struct TempDir {
  std::string path;
  TempDir() {
    char t[] = "/tmp/layerfs-user-XXXXXX";
    path = ::mkdtemp(t);
  }
  ~TempDir() {
    auto fd = sys::xopen_dir("/tmp");
    sys::xremove_tree(fd.get(), path.substr(5));
  }
};

void write(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  ::close(fd);
}

}  // namespace

TEST_CASE("process user: the forms of User, table") {
  struct Row {
    const char* user;
    uint32_t uid, gid;
    std::vector<uint32_t> extra;
    const char* home;
  };
  const Row rows[] = {
      {"", 0, 0, {}, "/root"},
      {"root", 0, 0, {}, "/root"},
      {"0", 0, 0, {}, "/root"},
      {"app", 1000, 1000, {29, 44}, "/home/app"},
      {"1000", 1000, 1000, {29, 44}, "/home/app"},
      {"app:staff", 1000, 50, {29, 44}, "/home/app"},
      {"app:29", 1000, 29, {44}, "/home/app"},
      {"daemon:7", 1, 7, {}, "/usr/sbin"},
      {"1234", 1234, 0, {}, ""},  // no passwd entry: gid 0, as docker
      {"1234:5678", 1234, 5678, {}, ""},
      {"1234:audio", 1234, 29, {}, ""},
      {"big", 4294967294u, 4294967294u, {}, "/big"},
  };
  for (const auto& r : rows) {
    INFO("User=" << r.user);
    ProcessUser u = ProcessUser::resolve(r.user, kPasswd, kGroup);
    CHECK(u.uid == r.uid);
    CHECK(u.gid == r.gid);
    CHECK(u.additional_gids == r.extra);
    CHECK(u.home == r.home);
  }
}

TEST_CASE("process user: must-fail rows") {
  const char* rows[] = {
      "nobody",       // not in passwd
      "broken",       // its line is malformed, so unknown
      "toobig",       // uid out of range: line skipped
      "4294967295",   // (uid_t)-1 is not a uid: a name, and unknown
      "app:nogroup",  // group not in /etc/group
      "app:",         // empty group
      ":0",           // empty user
      "-1",           // not a number, not a user
      "99999999999",  // too many digits
  };
  for (const char* r : rows) {
    INFO("User=" << r);
    CHECK_THROWS_AS(ProcessUser::resolve(r, kPasswd, kGroup), Error);
  }
}

TEST_CASE("process user: numeric ids need no files") {
  ProcessUser u = ProcessUser::resolve("10:20", "", "");
  CHECK(u.uid == 10);
  CHECK(u.gid == 20);
  CHECK(u.additional_gids.empty());
  CHECK_THROWS_AS(ProcessUser::resolve("app", "", ""), Error);
}

TEST_CASE("process user: reads the rootfs's files beneath it") {
  TempDir t;
  REQUIRE(::mkdir((t.path + "/etc").c_str(), 0755) == 0);
  write(t.path + "/etc/passwd", kPasswd);
  write(t.path + "/etc/group", kGroup);
  auto root = sys::xopen_dir(t.path);
  ProcessUser u = ProcessUser::resolve(root.get(), "app:staff");
  CHECK(u.uid == 1000);
  CHECK(u.gid == 50);
  CHECK(u.additional_gids == std::vector<uint32_t>{29, 44});
}

TEST_CASE("process user: a symlink out of the rootfs is refused, not followed") {
  TempDir outside, t;
  // The host's file would resolve "app"; the rootfs's own must be used or nothing.
  write(outside.path + "/passwd", kPasswd);
  REQUIRE(::mkdir((t.path + "/etc").c_str(), 0755) == 0);
  REQUIRE(::symlink((outside.path + "/passwd").c_str(), (t.path + "/etc/passwd").c_str()) == 0);
  REQUIRE(::symlink("../../../../../../../../../../..//etc/group",
                    (t.path + "/etc/group").c_str()) == 0);
  auto root = sys::xopen_dir(t.path);
  CHECK_THROWS_AS(ProcessUser::resolve(root.get(), "app"), Error);
  CHECK_THROWS_AS(ProcessUser::resolve(root.get(), "0"), Error);
}

TEST_CASE("process user: a relative symlink inside the rootfs is followed") {
  TempDir t;
  REQUIRE(::mkdir((t.path + "/etc").c_str(), 0755) == 0);
  REQUIRE(::mkdir((t.path + "/lib").c_str(), 0755) == 0);
  write(t.path + "/lib/passwd", kPasswd);
  write(t.path + "/etc/group", kGroup);
  REQUIRE(::symlink("../lib/passwd", (t.path + "/etc/passwd").c_str()) == 0);
  auto root = sys::xopen_dir(t.path);
  CHECK(ProcessUser::resolve(root.get(), "app").uid == 1000);
}

TEST_CASE("process user: missing files only matter for names") {
  TempDir t;
  auto root = sys::xopen_dir(t.path);
  CHECK(ProcessUser::resolve(root.get(), "").uid == 0);
  CHECK(ProcessUser::resolve(root.get(), "7:8").gid == 8);
  CHECK_THROWS_AS(ProcessUser::resolve(root.get(), "root"), Error);
}

TEST_CASE("process user: a directory or fifo as /etc/passwd is refused") {
  TempDir t;
  REQUIRE(::mkdir((t.path + "/etc").c_str(), 0755) == 0);
  REQUIRE(::mkdir((t.path + "/etc/passwd").c_str(), 0755) == 0);
  REQUIRE(::mkfifo((t.path + "/etc/group").c_str(), 0644) == 0);
  auto root = sys::xopen_dir(t.path);
  CHECK_THROWS_AS(ProcessUser::resolve(root.get(), "1"), Error);
}
