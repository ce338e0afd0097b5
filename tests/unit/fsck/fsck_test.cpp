#include "fsck/fsck.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "../unpack/tar_builder.hpp"
#include "store/layout.hpp"
#include "store/store.hpp"
#include "util/error.hpp"

using namespace layer;
using namespace layer::testing;
using layer::store::Layout;
using layer::store::LockMode;
using layer::store::Store;

namespace {

Digest add_layer(Store& s, const std::string& dir, const std::string& content) {
  TarBuilder tb;
  tb.dir(dir + "/");
  tb.file(dir + "/file", content);
  tb.file(dir + "/other", "other " + content);
  Blob b = make_blob(tb.finish(), Filter::Gzip);
  StringSource src(b.bytes);
  s.ingest_layer(b.spec, src, unpack::Options{});
  return b.spec.diff_id;
}

// An image whose config really lists its layers.
store::ImageRecord put_image(Store& s, const std::string& ref, std::vector<Digest> ids) {
  nlohmann::json cfg{{"architecture", "amd64"},
                     {"os", "linux"},
                     {"rootfs", {{"type", "layers"}, {"diff_ids", nlohmann::json::array()}}}};
  for (const auto& d : ids) cfg["rootfs"]["diff_ids"].push_back(d.str());
  std::string c = cfg.dump(), m = "manifest of " + ref;
  store::ImageRecord r;
  r.ref = ref;
  r.manifest = Hasher::of(m);
  r.config = Hasher::of(c);
  s.put_blob(r.manifest, m);
  s.put_blob(r.config, c);
  r.diff_ids = std::move(ids);
  s.put_image(r);
  return r;
}

void write_file(int dirfd, const std::string& path, const std::string& data) {
  UniqueFd f = sys::xopen_at(dirfd, path, O_WRONLY | O_TRUNC | O_CREAT, 0644, path);
  REQUIRE(sys::write_all(f.get(), data.data(), data.size()));
}

std::vector<std::string> damage_lines(const fsck::Report& r) {
  std::vector<std::string> out;
  for (const auto& f : r.findings)
    if (f.severity == fsck::Severity::Damage) out.push_back(f.line());
  return out;
}

bool has_line(const std::vector<std::string>& lines, const std::string& a, const std::string& b) {
  for (const auto& l : lines)
    if (l.find(a) != std::string::npos && l.find(b) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("fsck: a clean store has no findings") {
  TempDir t;
  Store s = Store::open(t / "store");
  Digest base = add_layer(s, "base", "b");
  Digest top = add_layer(s, "top", "t");
  put_image(s, "img", {base, top});
  auto r = fsck::check(s);
  CHECK(r.findings.empty());
  CHECK_FALSE(r.damaged());
  CHECK(r.layers == 2);
  CHECK(r.images == 1);
  CHECK(r.blobs == 2);
  CHECK(r.files >= 6);
}

TEST_CASE("fsck: finds each kind of damage and names the layer and the path") {
  TempDir t;
  Store s = Store::open(t / "store");
  Digest base = add_layer(s, "base", "b");
  Digest top = add_layer(s, "top", "t");
  auto img = put_image(s, "img", {base, top});
  int root = s.root_fd();
  std::string bdiff = Layout::layer_diff(base);
  write_file(root, bdiff + "/base/file", "B");                               // content
  REQUIRE(::fchmodat(root, (bdiff + "/base/other").c_str(), 0600, 0) == 0);  // mode
  REQUIRE(::unlinkat(root, (Layout::layer_diff(top) + "/top/other").c_str(), 0) == 0);
  write_file(root, Layout::layer_diff(top) + "/top/intruder", "x");  // added
  write_file(root, Layout::blob(img.manifest), "tampered");          // blob
  store::ContainerRecord c;
  c.id = std::string(64, 'e');
  c.image = "no-such-image";
  c.diff_ids = {base};
  s.put_container(c);

  auto r = fsck::check(s);
  auto lines = damage_lines(r);
  for (const auto& l : lines) INFO(l);
  CHECK(r.damaged());
  CHECK(has_line(lines, "layer " + base.str(), "'base/file': content changed"));
  CHECK(has_line(lines, "layer " + base.str(), "'base/other': mode 0644 -> 0600"));
  CHECK(has_line(lines, "layer " + top.str(), "'top/other': missing"));
  CHECK(has_line(lines, "layer " + top.str(), "'top/intruder': added"));
  CHECK(has_line(lines, "blob " + img.manifest.str(), "content has digest"));
  CHECK(has_line(lines, "image img", "uses damaged layer"));
  CHECK(has_line(lines, "container eeeeeeeeeeee", "image 'no-such-image' is not in the store"));
  CHECK(has_line(lines, "container eeeeeeeeeeee", "upper directory is missing"));
  CHECK(r.damaged_layers == std::set<Digest>{base, top});
  CHECK(r.damaged_blobs == std::set<Digest>{img.manifest});
}

TEST_CASE("fsck: missing layers and layers without a file list") {
  TempDir t;
  Store s = Store::open(t / "store");
  Digest base = add_layer(s, "base", "b");
  Digest top = add_layer(s, "top", "t");
  put_image(s, "img", {base, top});
  int root = s.root_fd();
  REQUIRE(::unlinkat(root, Layout::layer_files(base).c_str(), 0) == 0);
  sys::xremove_tree(root, Layout::layer_dir(top));
  auto r = fsck::check(s);
  bool noted = false;
  for (const auto& f : r.findings)
    if (f.severity == fsck::Severity::Note && f.name == base.str() &&
        f.what.find("no manifest") != std::string::npos)
      noted = true;
  CHECK(noted);
  CHECK(has_line(damage_lines(r), "image img", "layer " + top.str() + " is not in the store"));
  CHECK(r.missing_layers == std::set<Digest>{top});
}

TEST_CASE("fsck repair: quarantines, then marks broken what it cannot re-pull") {
  TempDir t;
  std::string root_path = t / "store";
  Digest base, top;
  {
    Store s = Store::open(root_path);
    base = add_layer(s, "base", "b");
    top = add_layer(s, "top", "t");
    put_image(s, "img", {base, top});
    put_image(s, "only-top", {top});
    write_file(s.root_fd(), Layout::layer_diff(base) + "/base/file", "corrupt");
  }
  Store s = Store::open(root_path, LockMode::Exclusive);
  auto r = fsck::check(s);
  REQUIRE(r.damaged());
  int asked = 0;
  auto sources = [&](const std::string& ref) -> std::unique_ptr<oci::ImageSource> {
    ++asked;
    throw Error("'" + ref + "': no source in this test");
  };
  auto actions = fsck::repair(s, r, sources);
  CHECK(asked == 1);  // only the image that used the damaged layer
  CHECK_FALSE(s.has_layer(base));
  CHECK(s.has_layer(top));
  // The damaged tree is kept, whole, under quarantine/.
  std::string q;
  for (const auto& a : actions)
    if (a.name == "layer " + base.str()) q = a.what.substr(a.what.find("quarantine/"));
  REQUIRE_FALSE(q.empty());
  std::string kept = sys::xread_file(s.root_fd(), q + "/diff/base/file", 100, "kept");
  CHECK(kept == "corrupt");
  auto img = s.find_image("img");
  REQUIRE(img);
  CHECK(img->broken.find(base.str()) != std::string::npos);
  CHECK(s.find_image("only-top")->broken.empty());
  // Afterwards the store checks clean except for the broken image.
  auto after = fsck::check(s);
  auto lines = damage_lines(after);
  for (const auto& l : lines) CHECK(l.find("image img:") == 0);
}
