// Store format 2 (docs/store-format-2.md): content objects shared across
// layers, metadata-only layer entries, gc of objects, fsck of objects, and
// the migration of a format-1 store.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "../unpack/tar_builder.hpp"
#include "fsck/fsck.hpp"
#include "store/file_list.hpp"
#include "store/layout.hpp"
#include "store/store.hpp"
#include "unpack/unpacker.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

using namespace layer;
using namespace layer::testing;
using layer::store::Layout;
using layer::store::Store;

namespace {

Digest ingest(Store& s, const std::string& tar) {
  Blob b = make_blob(tar, Filter::Gzip);
  StringSource src(b.bytes);
  unpack::Options opt;
  opt.share_content = true;
  s.ingest_layer(b.spec, src, opt);
  return b.spec.diff_id;
}

std::string xattr(const std::string& path, const char* name) {
  char buf[512];
  ssize_t n = ::lgetxattr(path.c_str(), name, buf, sizeof buf);
  return n < 0 ? std::string("<none>") : std::string(buf, static_cast<size_t>(n));
}

struct stat stat_of(const std::string& path) {
  struct stat st;
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st;
}

// The content a layer entry stands for: its object's when it redirects.
std::string content_of(const Store& s, const std::string& path) {
  std::string r = xattr(path, "trusted.overlay.redirect");
  if (r == "<none>") return sys::xread_file(AT_FDCWD, path, 64 << 20, path);
  auto d = Layout::parse_object_redirect(r);
  REQUIRE(d);
  std::string obj = s.root() + "/" + Layout::object(*d);
  return sys::xread_file(AT_FDCWD, obj, 64 << 20, obj);
}

store::ImageRecord image_of(const std::string& ref, std::vector<Digest> ids) {
  store::ImageRecord r;
  r.ref = ref;
  r.manifest = Hasher::of("m" + ref);
  r.config = Hasher::of("c" + ref);
  r.diff_ids = std::move(ids);
  return r;
}

}  // namespace

TEST_CASE("the same file in two layers is one object; entries keep their own metadata") {
  if (::geteuid() != 0) return;  // trusted.* markers need root; rootless is covered below
  TempDir t;
  Store s = Store::open(t / "store");
  const std::string lib = pseudo_random(300 << 10, 1);
  const std::string small = "tiny config\n";
  Digest a = ingest(s, TarBuilder()
                           .dir("usr/")
                           .file("usr/libx.so", lib, {.mode = 0755, .mtime = 1500000000})
                           .file("usr/small", small)
                           .finish());
  Digest b = ingest(s, TarBuilder()
                           .file("opt/copy.so", lib, {.mode = 0640, .uid = 5, .mtime = 1700000000})
                           .hardlink("opt/link.so", "opt/copy.so")
                           .finish());
  Digest lib_d = Hasher::of(lib);

  // One object, 0444, with the content; both layers list it.
  CHECK(s.objects() == std::vector<Digest>{lib_d});
  struct stat ost = stat_of(s.root() + "/" + Layout::object(lib_d));
  CHECK((ost.st_mode & 07777) == 0444);
  CHECK(s.layer_objects(a) == std::vector<Digest>{lib_d});
  CHECK(s.layer_objects(b) == std::vector<Digest>{lib_d});
  CHECK(s.layer_info(a)->format == 2);
  CHECK(s.layer_info(a)->object_bytes == lib.size());

  std::string ea = s.root() + "/" + Layout::layer_diff(a) + "/usr/libx.so";
  std::string eb = s.root() + "/" + Layout::layer_diff(b) + "/opt/copy.so";
  struct stat sa = stat_of(ea), sb = stat_of(eb);
  CHECK(sa.st_size == static_cast<off_t>(lib.size()));
  CHECK((sa.st_mode & 07777) == 0755);
  CHECK(sa.st_mtim.tv_sec == 1500000000);
  CHECK((sb.st_mode & 07777) == 0640);
  CHECK(sb.st_uid == 5);
  CHECK(sb.st_mtim.tv_sec == 1700000000);
  CHECK(sb.st_nlink == 2);  // the hard link stays one inode
  CHECK(stat_of(s.root() + "/" + Layout::layer_diff(b) + "/opt/link.so").st_ino == sb.st_ino);
  // No data blocks of its own (at most the xattr block).
  CHECK(sa.st_blocks <= 8);
  CHECK(xattr(ea, "trusted.overlay.metacopy") == "");
  CHECK(xattr(ea, "trusted.overlay.redirect") == Layout::object_redirect(lib_d));
  CHECK(content_of(s, ea) == lib);
  CHECK(content_of(s, eb) == lib);
  // Small files stay inline.
  std::string es = s.root() + "/" + Layout::layer_diff(a) + "/usr/small";
  CHECK(xattr(es, "trusted.overlay.redirect") == "<none>");
  CHECK(sys::xread_file(AT_FDCWD, es, 100, es) == small);

  // The file list describes the layer as the tar says: no store markers.
  auto fl = s.file_list(a);
  REQUIRE(fl);
  for (const auto& e : fl->entries) {
    if (e.path != "usr/libx.so") continue;
    CHECK(e.content == lib_d);
    CHECK(e.xattrs.empty());
  }
  fsck::Report rep = fsck::check(s);
  for (const auto& f : rep.findings) INFO(f.line());
  CHECK(!rep.damaged());
  CHECK(rep.objects == 1);
}

TEST_CASE("an image's own overlay xattrs cannot forge a redirect") {
  if (::geteuid() != 0) return;
  TempDir t;
  Store s = Store::open(t / "store");
  Digest a = ingest(s, TarBuilder()
                           .file("evil", std::string(10000, 'e'),
                                 {.xattrs = {{"trusted.overlay.redirect", "/etc/shadow"},
                                             {"trusted.overlay.metacopy", ""}}})
                           .finish());
  std::string e = s.root() + "/" + Layout::layer_diff(a) + "/evil";
  CHECK(xattr(e, "trusted.overlay.overlay.redirect") == "/etc/shadow");
  CHECK(xattr(e, "trusted.overlay.redirect") == Layout::object_redirect(Hasher::of(std::string(10000, 'e'))));
}

TEST_CASE("gc removes an object only when no layer names it") {
  if (::geteuid() != 0) return;
  TempDir t;
  std::string root = t / "store";
  const std::string lib = pseudo_random(64 << 10, 2);
  Digest a, b;
  {
    Store s = Store::open(root);
    a = ingest(s, TarBuilder().file("a.so", lib).finish());
    b = ingest(s, TarBuilder().file("b.so", lib, {.mtime = 1}).finish());
    s.put_image(image_of("x/a:1", {a}));
    s.put_image(image_of("x/b:1", {b}));
  }
  Digest o = Hasher::of(lib);
  {
    Store s = Store::open(root, store::LockMode::Exclusive);
    s.remove_image("x/a:1");
    CHECK(!s.has_layer(a));
    CHECK(s.has_object(o));  // b still names it
    s.remove_image("x/b:1");
    CHECK(!s.has_layer(b));
    CHECK(!s.has_object(o));
  }
}

TEST_CASE("fsck finds a damaged object and the layers that name it") {
  if (::geteuid() != 0) return;
  TempDir t;
  Store s = Store::open(t / "store");
  const std::string lib = pseudo_random(40000, 3);
  Digest a = ingest(s, TarBuilder().file("lib.so", lib).finish());
  Digest o = Hasher::of(lib);
  std::string obj = s.root() + "/" + Layout::object(o);
  REQUIRE(::chmod(obj.c_str(), 0644) == 0);
  {
    UniqueFd fd = sys::xopen_at(AT_FDCWD, obj, O_WRONLY, 0, obj);
    REQUIRE(::pwrite(fd.get(), "X", 1, 100) == 1);
  }
  fsck::Report rep = fsck::check(s);
  CHECK(rep.damaged_objects.count(o) == 1);
  CHECK(rep.damaged_layers.count(a) == 1);
  // A missing object is named too.
  REQUIRE(::unlink(obj.c_str()) == 0);
  rep = fsck::check(s);
  CHECK(rep.damaged_layers.count(a) == 1);
  bool named = false;
  for (const auto& f : rep.findings) named = named || f.what.find("not in the store") != std::string::npos;
  CHECK(named);
}

TEST_CASE("a format-1 store is refused with how to convert it, and migrate converts it") {
  TempDir t;
  std::string root = t / "store";
  const std::string lib = pseudo_random(200 << 10, 4);
  const std::string tar = TarBuilder()
                              .dir("usr/", {.mode = 0750, .mtime = 1234567890})
                              .file("usr/lib.so", lib, {.mode = 0755, .mtime = 1300000000})
                              .hardlink("usr/lib2.so", "usr/lib.so")
                              .file("usr/small", "s")
                              .symlink("usr/l", "lib.so")
                              .finish();
  Blob blob = make_blob(tar, Filter::Gzip);
  Digest id = blob.spec.diff_id;
  store::FileList recorded;
  {
    // A format-1 layer: what ingest wrote before content objects.
    Store s = Store::open(root);
    std::string dir = Layout::layer_dir(id);
    sys::xmkdir_p(root + "/" + dir + "/diff", 0755);
    UniqueFd diff = sys::xopen_dir(root + "/" + dir + "/diff");
    StringSource src(blob.bytes);
    unpack::Stats st = unpack::unpack_layer(diff.get(), blob.spec, src, unpack::Options{});
    recorded = store::FileList::scan(diff.get(), st.content_digests);
    std::string list = recorded.serialize();
    UniqueFd rd = sys::xopen_dir(root + "/" + dir);
    sys::xwrite_file_atomic(rd.get(), "f.tmp", rd.get(), "files.json.zst", list);
    nlohmann::json lj{{"diff_id", id.str()}, {"compressed", {blob.spec.digest.str()}},
                      {"size", lib.size()}, {"entries", 5}};
    sys::xwrite_file_atomic(rd.get(), "l.tmp", rd.get(), "layer.json", lj.dump());
    s.put_image(image_of("x/old:1", {id}));
    UniqueFd r = sys::xopen_dir(root);
    sys::xwrite_file_atomic(r.get(), "s.tmp", r.get(), "store.json", R"({"version": 1})");
  }
  CHECK_THROWS_WITH(Store::open(root), Catch::Contains("format version 1") &&
                                           Catch::Contains("layerctl --root " + root + " migrate"));
  {
    Store s = Store::open_for_migration(root);
    CHECK(s.migrate() == 1);
    CHECK(s.migrate() == 0);  // resumable: nothing left to do
  }
  Store s = Store::open(root);
  auto j = nlohmann::json::parse(sys::xread_file(AT_FDCWD, root + "/store.json", 100, "x"));
  CHECK(j["version"] == 2);
  CHECK(s.layer_info(id)->format == 2);
  Digest o = Hasher::of(lib);
  CHECK(s.layer_objects(id) == std::vector<Digest>{o});
  CHECK(s.has_object(o));
  // The tree is what the file list says (markers aside), links and all.
  UniqueFd diff = sys::xopen_dir(root + "/" + Layout::layer_diff(id));
  auto diffs = store::FileList::compare(recorded, store::FileList::scan(diff.get()));
  for (const auto& d : diffs) INFO(d.path << ": " << d.what);
  CHECK(diffs.empty());
  std::string p = root + "/" + Layout::layer_diff(id) + "/usr/";
  CHECK(stat_of(p + "lib.so").st_ino == stat_of(p + "lib2.so").st_ino);
  CHECK(stat_of(p + "lib.so").st_blocks <= 8);
  CHECK(content_of(s, p + "lib.so") == lib);
  fsck::Report rep = fsck::check(s);
  for (const auto& f : rep.findings) INFO(f.line());
  CHECK(rep.damaged_layers.empty());  // its image has no blobs here: only layers count
  CHECK(rep.damaged_objects.empty());
}
