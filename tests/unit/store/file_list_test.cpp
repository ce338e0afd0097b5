#include "store/file_list.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>

#include "../unpack/tar_builder.hpp"
#include "store/layout.hpp"
#include "store/store.hpp"
#include "util/error.hpp"

using namespace layer;
using namespace layer::testing;
using layer::store::FileList;
using layer::store::FileType;
using layer::store::Layout;
using layer::store::Store;

namespace {

std::string tree_tar() {
  TarBuilder tb;
  EntryOpts owned;
  owned.uid = 1000;
  owned.gid = 100;
  owned.mode = 0640;
  EntryOpts xa;
  xa.xattrs = {{"user.note", std::string("bin\0ary", 7)}};
  tb.dir("etc/");
  tb.file("etc/hello", "hello\n", owned);
  tb.file("etc/replaced", "first version, longer than the second");
  tb.file("etc/replaced", "second");
  tb.file("etc/tagged", "with an xattr", xa);
  tb.file("empty", "");
  tb.symlink("etc/link", "hello");
  tb.hardlink("etc/hello-again", "etc/hello");
  // A link keeps the old content when its target's name gets a new file.
  tb.file("etc/orig", "old content");
  tb.hardlink("etc/keep", "etc/orig");
  tb.file("etc/orig", "new");
  tb.sparse("sparse", 3 << 20, {{1 << 20, std::string(5000, 'x')}, {(2 << 20) + 7, "tail"}});
  tb.fifo("pipe");
  if (::geteuid() == 0) tb.device("null", true, 1, 3);
  tb.file("etc/.wh.gone", "");
  tb.file(".wh..wh..opq", "");  // the root becomes opaque: an xattr on the root
  return tb.finish();
}

Digest ingest(Store& s, const std::string& tar, unpack::Options opt = {}) {
  Blob b = make_blob(tar, Filter::Gzip);
  StringSource src(b.bytes);
  s.ingest_layer(b.spec, src, opt);
  return b.spec.diff_id;
}

const store::FileEntry* find(const FileList& l, const std::string& path) {
  for (const auto& e : l.entries)
    if (e.path == path) return &e;
  return nullptr;
}

}  // namespace

TEST_CASE("the unpacker's file list matches a full scan of the tree it wrote") {
  TempDir t;
  Store s = Store::open(t / "store");
  Digest id = ingest(s, tree_tar());
  auto recorded = s.file_list(id);
  REQUIRE(recorded);
  UniqueFd diff =
      sys::xopen_at(s.root_fd(), Layout::layer_diff(id), O_RDONLY | O_DIRECTORY, 0, "diff");
  uint64_t hashed = 0;
  FileList scanned = FileList::scan(diff.get(), {}, &hashed);
  CHECK(hashed > 0);
  auto diffs = FileList::compare(*recorded, scanned);
  for (const auto& d : diffs) INFO(d.path + ": " + d.what);
  CHECK(diffs.empty());

  const auto* hello = find(*recorded, "etc/hello");
  REQUIRE(hello);
  CHECK(hello->type == FileType::Regular);
  CHECK(hello->content == Hasher::of("hello\n"));
  CHECK(hello->mode == 0640);
  CHECK(hello->nlink == 2);
  if (::geteuid() == 0) {
    CHECK(hello->uid == 1000);
    CHECK(hello->gid == 100);
  }
  CHECK(find(*recorded, "etc/hello-again")->content == hello->content);
  CHECK(find(*recorded, "etc/replaced")->content == Hasher::of("second"));
  CHECK(find(*recorded, "etc/orig")->content == Hasher::of("new"));
  CHECK(find(*recorded, "etc/keep")->content == Hasher::of("old content"));
  CHECK(find(*recorded, "etc/link")->target == "hello");
  CHECK(find(*recorded, "etc/tagged")->xattrs.at("user.note") == std::string("bin\0ary", 7));
  std::string sparse(3 << 20, '\0');
  sparse.replace(1 << 20, 5000, std::string(5000, 'x'));
  sparse.replace((2 << 20) + 7, 4, "tail");
  CHECK(find(*recorded, "sparse")->content == Hasher::of(sparse));
  CHECK(find(*recorded, "pipe")->type == FileType::Fifo);
  CHECK(find(*recorded, ".")->type == FileType::Directory);
  const char* opaque = ::geteuid() == 0 ? "trusted.overlay.opaque" : "user.overlay.opaque";
  CHECK(find(*recorded, ".")->xattrs.count(opaque) == 1);
  if (::geteuid() == 0) {
    const auto* null = find(*recorded, "null");
    REQUIRE(null);
    CHECK(null->type == FileType::CharDevice);
    CHECK(null->rdev_major == 1);
    CHECK(null->rdev_minor == 3);
    CHECK(find(*recorded, "etc/gone")->type == FileType::CharDevice);  // the whiteout
  }
}

TEST_CASE("record_digests off: no file list, and the layer still unpacks") {
  TempDir t;
  Store s = Store::open(t / "store");
  unpack::Options opt;
  opt.record_digests = false;
  Digest id = ingest(s, tree_tar(), opt);
  CHECK(s.has_layer(id));
  CHECK_FALSE(s.file_list(id));
}

TEST_CASE("serialize and parse round-trip, and corruption is refused") {
  FileList l;
  store::FileEntry a;
  a.path = ".";
  a.type = FileType::Directory;
  a.mode = 0755;
  a.nlink = 0;  // not recorded for directories
  store::FileEntry b;
  b.path = std::string("odd-\x80");
  b.size = 3;
  b.content = Hasher::of("abc");
  b.xattrs[std::string("user.\xfe")] = std::string("\0\1\2", 3);
  b.mtime_sec = -5;
  b.mtime_nsec = 999999999;
  store::FileEntry c;
  c.path = "l";
  c.type = FileType::Symlink;
  c.target = std::string("t\xc3");
  l.entries = {a, b, c};
  std::string data = l.serialize();
  FileList back = FileList::parse(data, "test");
  REQUIRE(back.entries.size() == 3);
  CHECK(back.entries[0] == a);
  CHECK(back.entries[1] == c);  // sorted by path: "l" < "odd-\x80"
  CHECK(back.entries[2] == b);

  std::string flipped = data;
  flipped[flipped.size() / 2] ^= 0x20;
  CHECK_THROWS_AS(FileList::parse(flipped, "test"), Error);
  CHECK_THROWS_AS(FileList::parse(data.substr(0, data.size() - 3), "test"), Error);
  CHECK_THROWS_AS(FileList::parse("not zstd at all", "test"), Error);
}

TEST_CASE("compare names every difference by path") {
  auto entry = [](const std::string& p, const std::string& content) {
    store::FileEntry e;
    e.path = p;
    e.mode = 0644;
    e.size = content.size();
    e.content = Hasher::of(content);
    return e;
  };
  FileList want;
  want.entries = {entry("a", "x"), entry("b", "y"), entry("c", "z"), entry("d", "w")};
  FileList got = want;
  got.entries[0].content = Hasher::of("X");    // a: content
  got.entries[1].mode = 0600;                  // b: mode
  got.entries.erase(got.entries.begin() + 2);  // c: missing
  got.entries.push_back(entry("e", "new"));    // e: added
  got.entries[2].xattrs["user.x"] = "1";       // d: xattr added
  auto diffs = FileList::compare(want, got);
  struct Row {
    const char* path;
    const char* needle;
  };
  // Must-find rows; nothing else may be reported.
  std::vector<Row> rows = {{"a", "content changed"},
                           {"b", "mode 0644 -> 0600"},
                           {"c", "missing"},
                           {"d", "xattr 'user.x' added"},
                           {"e", "added"}};
  REQUIRE(diffs.size() == rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    CHECK(diffs[i].path == rows[i].path);
    CHECK(diffs[i].what.find(rows[i].needle) != std::string::npos);
  }
  CHECK(FileList::compare(want, want).empty());
}

TEST_CASE("the file list takes content digests from the unpacker and reads no file again") {
  TempDir t;
  sys::xmkdir_p(t / "tree");
  UniqueFd dir = sys::xopen_dir(t / "tree");
  Blob b = make_blob(tree_tar(), Filter::Gzip);
  StringSource src(b.bytes);
  unpack::Stats stats = unpack::unpack_layer(dir.get(), b.spec, src, unpack::Options{});
  CHECK(stats.content_digests.size() >= 5);
  uint64_t hashed = 0;
  FileList with = FileList::scan(dir.get(), stats.content_digests, &hashed);
  CHECK(hashed == 0);
  uint64_t reread = 0;
  FileList without = FileList::scan(dir.get(), {}, &reread);
  CHECK(reread > 0);
  CHECK(FileList::compare(with, without).empty());
}
