#include "store/store.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "../unpack/tar_builder.hpp"
#include "store/layout.hpp"
#include "unpack/unpacker.hpp"
#include "util/error.hpp"

using namespace layer;
using namespace layer::testing;
using layer::store::Ingest;
using layer::store::Layout;
using layer::store::LockMode;
using layer::store::Store;

namespace {

bool exists(int dirfd, const std::string& rel) {
  struct stat st;
  return ::fstatat(dirfd, rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

std::vector<std::string> tmp_entries(const Store& s) {
  std::vector<std::string> out;
  DIR* d = ::opendir((s.root() + "/tmp").c_str());
  REQUIRE(d);
  while (auto* e = ::readdir(d))
    if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") out.push_back(e->d_name);
  ::closedir(d);
  return out;
}

Blob layer_blob(const std::string& name, const std::string& content) {
  TarBuilder tb;
  tb.dir("etc/");
  tb.file("etc/" + name, content);
  return make_blob(tb.finish(), Filter::Gzip);
}

Ingest ingest(Store& s, const Blob& b) {
  StringSource src(b.bytes);
  return s.ingest_layer(b.spec, src, unpack::Options{});
}

store::ImageRecord image_of(const std::string& ref, std::vector<Digest> diff_ids,
                            const std::string& config_seed) {
  store::ImageRecord r;
  r.ref = ref;
  r.manifest = Hasher::of("manifest " + config_seed);
  r.config = Hasher::of("config " + config_seed);
  r.diff_ids = std::move(diff_ids);
  r.platform = "linux/amd64";
  return r;
}

}  // namespace

TEST_CASE("open creates a version-2 store and refuses newer versions") {
  TempDir t;
  std::string root = t / "store";
  {
    Store s = Store::open(root);
    CHECK(s.root() == root);
  }
  auto j = nlohmann::json::parse(sys::xread_file(t.fd.get(), "store/store.json", 100, "x"));
  CHECK(j["version"] == 2);
  for (const char* d :
       {"blobs/sha256", "layers/sha256", "objects/sha256", "images", "containers", "tmp", "lock"})
    CHECK(exists(t.fd.get(), std::string("store/") + d));
  Store::open(root);  // reopens fine

  auto fd = sys::xopen_dir(root);
  sys::xwrite_file_atomic(fd.get(), "x.tmp", fd.get(), "store.json", R"({"version": 3})");
  CHECK_THROWS_WITH(Store::open(root), Catch::Contains("version 3") && Catch::Contains(root));
  sys::xwrite_file_atomic(fd.get(), "x.tmp", fd.get(), "store.json", "not json");
  CHECK_THROWS_AS(Store::open(root), Error);
}

TEST_CASE("open sweeps tmp/ but never a live staging dir") {
  TempDir t;
  std::string root = t / "store";
  Store s = Store::open(root);
  // Garbage of a crashed pull: a dir tree and a stray file.
  REQUIRE(::mkdirat(s.tmp_fd(), "layer-dead", 0700) == 0);
  REQUIRE(::mkdirat(s.tmp_fd(), "layer-dead/diff", 0700) == 0);
  REQUIRE(::mkdirat(s.tmp_fd(), "layer-dead/diff/ro", 0500) == 0);
  sys::xwrite_file_atomic(s.tmp_fd(), "f.tmp", s.tmp_fd(), "stray", "x");
  Store::Staging live = s.make_staging("layer-");
  sys::xwrite_file_atomic(live.fd.get(), "a.tmp", live.fd.get(), "inside", "x");

  // Another process opens the store meanwhile.
  pid_t pid = ::fork();
  if (pid == 0) {
    try {
      Store::open(root);
      ::_exit(0);
    } catch (...) {
      ::_exit(1);
    }
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  auto left = tmp_entries(s);
  CHECK(left == std::vector<std::string>{live.name});
  CHECK(exists(live.fd.get(), "inside"));

  // Once its owner lets go, the next open sweeps it.
  live.fd.reset();
  Store::open(root);
  CHECK(tmp_entries(s).empty());
}

TEST_CASE("blobs are verified and published whole") {
  TempDir t;
  Store s = Store::open(t / "store");
  std::string data = R"({"schemaVersion":2})";
  Digest d = Hasher::of(data);
  CHECK_FALSE(s.has_blob(d));
  CHECK_FALSE(s.read_blob(d, 100));
  CHECK_THROWS_WITH(s.put_blob(d, data + " "), Catch::Contains(d.str()));
  CHECK_FALSE(s.has_blob(d));
  s.put_blob(d, data);
  CHECK(s.has_blob(d));
  CHECK(s.read_blob(d, 100) == data);
  CHECK_THROWS_AS(s.read_blob(d, 5), Error);
  s.put_blob(d, data);  // idempotent
  CHECK(tmp_entries(s).empty());
  // A blob corrupted on disk is not served.
  auto fd = sys::xopen_dir(t / "store");
  sys::xwrite_file_atomic(fd.get(), "c.tmp", fd.get(), Layout::blob(d), "tampered");
  CHECK_THROWS_WITH(s.read_blob(d, 100), Catch::Contains("corrupt"));
}

TEST_CASE("ingest_layer publishes a layer once and records it") {
  TempDir t;
  Store s = Store::open(t / "store");
  Blob b = layer_blob("hostname", "box\n");
  CHECK_FALSE(s.has_layer(b.spec.diff_id));
  CHECK(ingest(s, b) == Ingest::Unpacked);
  CHECK(s.has_layer(b.spec.diff_id));
  CHECK(sys::xread_file(s.root_fd(), Layout::layer_diff(b.spec.diff_id) + "/etc/hostname", 100,
                        "f") == "box\n");
  auto info = s.layer_info(b.spec.diff_id);
  REQUIRE(info);
  CHECK(info->diff_id == b.spec.diff_id);
  CHECK(info->compressed == std::vector<Digest>{b.spec.digest});
  CHECK(info->size == 4);
  CHECK(info->entries == 2);
  CHECK_FALSE(info->unpacked_at.empty());

  // Present: not read again, so a new compressed form of it is not recorded
  // (nothing verified it); the verified size of the first one is.
  CHECK(info->compressed_sizes.at(b.spec.digest) == b.spec.size);
  StringSource untouched(b.bytes);
  CHECK(s.ingest_layer(b.spec, untouched, {}) == Ingest::AlreadyPresent);
  CHECK(untouched.consumed() == 0);
  Blob z = make_blob(TarBuilder().dir("etc/").file("etc/hostname", "box\n").finish(), Filter::Zstd);
  REQUIRE(z.spec.diff_id == b.spec.diff_id);
  CHECK(ingest(s, z) == Ingest::AlreadyPresent);
  CHECK(s.layer_info(b.spec.diff_id)->compressed == std::vector<Digest>{b.spec.digest});
  CHECK(s.layers().size() == 1);
  CHECK(tmp_entries(s).empty());
}

TEST_CASE("a failed ingest leaves nothing behind") {
  TempDir t;
  Store s = Store::open(t / "store");
  Blob b = layer_blob("hostname", "box\n");
  b.spec.diff_id = Hasher::of("something else");
  CHECK_THROWS_WITH(ingest(s, b), Catch::Contains("diff_id"));
  CHECK_FALSE(s.has_layer(b.spec.diff_id));
  CHECK(s.layers().empty());
  CHECK(tmp_entries(s).empty());
  CHECK_FALSE(exists(s.root_fd(), Layout::layer_dir(b.spec.diff_id)));
}

TEST_CASE("images: put, list, find, remove with unreferenced layers") {
  TempDir t;
  std::string root = t / "store";
  Blob base = layer_blob("base", "b");
  Blob app1 = layer_blob("app1", "1");
  Blob app2 = layer_blob("app2", "2");
  {
    Store s = Store::open(root);
    for (auto* b : {&base, &app1, &app2}) ingest(s, *b);
    auto i1 = image_of("docker.io/library/one:latest", {base.spec.diff_id, app1.spec.diff_id}, "1");
    auto i2 = image_of("oci:/x:two", {base.spec.diff_id, app2.spec.diff_id}, "2");
    CHECK_THROWS_AS(s.put_image(image_of("bad", {Hasher::of("missing")}, "3")), Error);
    s.put_image(i1);
    s.put_image(i2);
    s.put_blob(Hasher::of(std::string("x")), "x");  // an unreferenced blob
    CHECK(s.images().size() == 2);
    CHECK(s.find_image("docker.io/library/one:latest")->ref == i1.ref);
    CHECK(s.find_image("one")->ref == i1.ref);
    CHECK(s.find_image("one:latest")->ref == i1.ref);
    CHECK(s.find_image(i2.config.str())->ref == i2.ref);
    CHECK(s.find_image(i2.config.hex.substr(0, 12))->ref == i2.ref);
    CHECK_FALSE(s.find_image(i2.config.hex.substr(0, 11)));
    CHECK_FALSE(s.find_image("three"));
    auto got = s.find_image("oci:/x:two");
    REQUIRE(got);
    CHECK(got->diff_ids == i2.diff_ids);
    CHECK(got->manifest == i2.manifest);
    CHECK(got->platform == "linux/amd64");
    CHECK_THROWS_WITH(s.remove_image("one"), Catch::Contains("exclusive"));
  }
  {
    Store s = Store::open(root, LockMode::Exclusive);
    // A container holds image two.
    store::ContainerRecord c;
    c.id = std::string(64, 'c');
    c.name = "web";
    c.image = "oci:/x:two";
    c.diff_ids = {base.spec.diff_id, app2.spec.diff_id};
    c.mountpoint = "/mnt/x";
    s.put_container(c);
    CHECK(s.find_container("web")->id == c.id);
    CHECK(s.find_container(c.id.substr(0, 12))->name == "web");
    CHECK(s.containers().size() == 1);
    CHECK_THROWS_WITH(s.remove_image("oci:/x:two"), Catch::Contains("container"));

    auto removed = s.remove_image("one");
    CHECK(removed == std::vector<Digest>{app1.spec.diff_id});
    CHECK(s.has_layer(base.spec.diff_id));
    CHECK(s.has_layer(app2.spec.diff_id));
    CHECK_FALSE(s.has_layer(app1.spec.diff_id));
    CHECK_FALSE(s.has_blob(Hasher::of(std::string("x"))));
    CHECK(s.images().size() == 1);
    CHECK_THROWS_AS(s.remove_image("one"), Error);

    s.remove_container(c.id);
    CHECK(s.containers().empty());
    CHECK_FALSE(exists(s.root_fd(), Layout::container_dir(c.id)));
    removed = s.remove_image("oci:/x:two");
    CHECK(removed.size() == 2);
    CHECK(s.layers().empty());
    CHECK(tmp_entries(s).empty());
    CHECK_THROWS_AS(s.put_container(store::ContainerRecord{.id = "../x"}), Error);
  }
}

TEST_CASE("the exclusive lock waits for shared holders") {
  TempDir t;
  std::string root = t / "store";
  Store shared = Store::open(root);
  pid_t pid = ::fork();
  if (pid == 0) {
    // Drop the inherited descriptors: one of them holds the shared lock.
    ::close_range(3, ~0U, 0);
    Store::open(root, LockMode::Exclusive);
    ::_exit(0);
  }
  ::usleep(200000);
  int status = 0;
  CHECK(::waitpid(pid, &status, WNOHANG) == 0);  // still waiting
  { Store moved = std::move(shared); }
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
}
