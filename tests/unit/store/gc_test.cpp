#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <set>
#include <string>

#include "../unpack/tar_builder.hpp"
#include "store/disk_usage.hpp"
#include "store/layout.hpp"
#include "store/store.hpp"
#include "store/store_usage.hpp"
#include "unpack/unpacker.hpp"
#include "util/error.hpp"

using namespace layer;
using namespace layer::testing;
using layer::store::DiskUsage;
using layer::store::GcItem;
using layer::store::Layout;
using layer::store::LockMode;
using layer::store::Store;

namespace {

bool exists(int dirfd, const std::string& rel) {
  struct stat st;
  return ::fstatat(dirfd, rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

uint64_t blocks_of(int dirfd, const std::string& rel);

Digest add_layer(Store& s, const std::string& name, size_t bytes) {
  TarBuilder tb;
  tb.file(name, std::string(bytes, name[0]));
  Blob b = make_blob(tb.finish(), Filter::Gzip);
  StringSource src(b.bytes);
  unpack::Options opt;
  opt.share_content = true;  // store format 2: files over 4 KiB become objects
  s.ingest_layer(b.spec, src, opt);
  return b.spec.diff_id;
}

// The disk bytes of the object add_layer made for a file of `bytes` x `c`.
uint64_t object_bytes(const Store& s, char c, size_t bytes) {
  return blocks_of(s.root_fd(), Layout::object(Hasher::of(std::string(bytes, c))));
}

store::ImageRecord put_image(Store& s, const std::string& ref, std::vector<Digest> ids) {
  store::ImageRecord r;
  r.ref = ref;
  std::string m = "manifest of " + ref, c = "config of " + ref;
  r.manifest = Hasher::of(m);
  r.config = Hasher::of(c);
  s.put_blob(r.manifest, m);
  s.put_blob(r.config, c);
  r.diff_ids = std::move(ids);
  s.put_image(r);
  return r;
}

uint64_t blocks_of(int dirfd, const std::string& rel) {
  struct stat st;
  REQUIRE(::fstatat(dirfd, rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0);
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

}  // namespace

TEST_CASE("DiskUsage counts blocks, each inode once") {
  TempDir t;
  sys::xmkdir_p(t / "d/sub");
  {
    UniqueFd f = sys::xopen_at(t.fd.get(), "d/sub/f", O_WRONLY | O_CREAT, 0644, "f");
    std::string data(100000, 'a');
    REQUIRE(sys::write_all(f.get(), data.data(), data.size()));
  }
  REQUIRE(::linkat(t.fd.get(), "d/sub/f", t.fd.get(), "d/link", 0) == 0);
  uint64_t expect = blocks_of(t.fd.get(), "d") + blocks_of(t.fd.get(), "d/sub") +
                    blocks_of(t.fd.get(), "d/sub/f");
  DiskUsage du;
  CHECK(du.add(t.fd.get(), "d") == expect);
  CHECK(du.add(t.fd.get(), "d") == 0);  // everything already counted
  CHECK(DiskUsage().add(t.fd.get(), "missing") == 0);
}

TEST_CASE("gc removes exactly what nothing references") {
  TempDir t;
  std::string root = t / "store";
  Digest base, only_a, only_b, orphan, for_container;
  {
    Store s = Store::open(root);
    base = add_layer(s, "base", 50000);
    only_a = add_layer(s, "a", 1000);
    only_b = add_layer(s, "b", 1000);
    orphan = add_layer(s, "orphan", 20000);
    for_container = add_layer(s, "container-only", 1000);
    put_image(s, "img/a", {base, only_a});
    put_image(s, "img/b", {base, only_b});
    s.put_blob(Hasher::of("stray"), "stray");
    store::ContainerRecord c;
    c.id = std::string(64, 'c');
    c.image = "gone";
    c.diff_ids = {for_container};
    s.put_container(c);
  }
  Store s = Store::open(root, LockMode::Exclusive, false);
  // A crashed pull's leftover: an unlocked staging dir.
  sys::xmkdir_p(root + "/tmp/layer-deadbeef/diff");
  uint64_t orphan_bytes = DiskUsage().add(s.root_fd(), Layout::layer_dir(orphan));

  store::GcReport dry = s.gc(true);
  CHECK(exists(s.root_fd(), Layout::layer_dir(orphan)));
  CHECK(exists(s.root_fd(), "tmp/layer-deadbeef"));

  store::GcReport rep = s.gc(false);
  REQUIRE(rep.items.size() == dry.items.size());
  CHECK(rep.bytes == dry.bytes);
  std::set<std::string> names;
  for (const auto& i : rep.items) names.insert(i.name);
  // The orphan layer's file was its object's only name: it goes too.
  CHECK(names == std::set<std::string>{orphan.str(), Hasher::of(std::string(20000, 'o')).str(),
                                       Hasher::of("stray").str(), "layer-deadbeef"});
  for (const auto& i : rep.items)
    if (i.name == orphan.str()) CHECK(i.bytes == orphan_bytes);
  CHECK_FALSE(exists(s.root_fd(), Layout::layer_dir(orphan)));
  CHECK_FALSE(exists(s.root_fd(), "tmp/layer-deadbeef"));
  for (const auto& d : {base, only_a, only_b, for_container}) CHECK(s.has_layer(d));
  CHECK(s.gc(false).items.empty());

  s.remove_image("img/a");
  CHECK_FALSE(s.has_layer(only_a));
  CHECK(s.has_layer(base));  // still used by img/b
}

TEST_CASE("gc needs the exclusive lock") {
  TempDir t;
  Store s = Store::open(t / "store");
  CHECK_THROWS_AS(s.gc(true), Error);
}

TEST_CASE("StoreUsage: shared and own bytes per image and container") {
  TempDir t;
  Store s = Store::open(t / "store");
  Digest base = add_layer(s, "base", 200000);
  Digest a = add_layer(s, "a", 30000);
  Digest b = add_layer(s, "b", 10000);
  put_image(s, "img/a", {base, a});
  put_image(s, "img/b", {base, b});
  store::ContainerRecord c;
  c.id = std::string(64, 'd');
  c.image = "img/a";
  c.diff_ids = {base, a};
  s.put_container(c);
  sys::xmkdir_p(s.root() + "/" + Layout::container_upper(c.id));

  auto u = store::StoreUsage::measure(s);
  auto bytes = [&](const Digest& d) { return DiskUsage().add(s.root_fd(), Layout::layer_dir(d)); };
  REQUIRE(u.images.size() == 2);
  // Layers and their objects alike (every file here is over 4 KiB).
  uint64_t ob = object_bytes(s, 'b', 200000), oa = object_bytes(s, 'a', 30000),
           obb = object_bytes(s, 'b', 10000);
  CHECK(u.images[0].ref == "img/a");
  CHECK(u.images[0].shared == bytes(base) + ob);
  CHECK(u.images[0].own == bytes(a) + oa);
  CHECK(u.images[1].own == bytes(b) + obb);
  CHECK(u.unshared == 2 * (bytes(base) + ob) + bytes(a) + oa + bytes(b) + obb);
  CHECK(u.saved == bytes(base) + ob);
  CHECK(u.object_bytes == DiskUsage().add(s.root_fd(), Layout::objects_dir()));
  CHECK(u.object_entry_bytes == 240000);
  REQUIRE(u.containers.size() == 1);
  CHECK(u.containers[0].shared == bytes(base) + bytes(a));
  CHECK(u.containers[0].own == DiskUsage().add(s.root_fd(), Layout::container_dir(c.id)));
  CHECK(u.total == DiskUsage().add(s.root_fd(), "."));
  CHECK(u.layer_bytes == bytes(base) + bytes(a) + bytes(b));
}
