// The should-fail corpus of issue 2 §5, generated here with libarchive's
// writer (patched byte-wise where a writer refuses to produce the damage).
// Every case goes through Store::ingest_layer and must fail with one Error
// naming the image, the layer and (for entry errors) the entry, leave nothing
// under layers/ or tmp/, and change nothing in a sentinel directory outside.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <functional>
#include <map>
#include <string>

#include "pull/puller.hpp"
#include "store/layout.hpp"
#include "store/store.hpp"
#include "tar_builder.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

using namespace layer;
using namespace layer::testing;
using layer::store::Store;

namespace {

// Snapshot of a directory tree: path → type, mode, size, content.
std::map<std::string, std::string> snapshot(const std::string& root) {
  std::map<std::string, std::string> out;
  std::function<void(const std::string&)> walk = [&](const std::string& rel) {
    std::string p = rel.empty() ? root : root + "/" + rel;
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) return;
    std::string v = std::to_string(st.st_mode) + ":" + std::to_string(st.st_size) + ":" +
                    std::to_string(st.st_uid) + ":" + std::to_string(st.st_mtim.tv_sec) + ":" +
                    std::to_string(st.st_nlink);
    if (S_ISREG(st.st_mode)) v += ":" + sys::xread_file(AT_FDCWD, p, 1 << 20, p);
    out[rel] = v;
    if (!S_ISDIR(st.st_mode)) return;
    DIR* d = ::opendir(p.c_str());
    if (!d) return;
    while (auto* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n == "." || n == "..") continue;
      walk(rel.empty() ? n : rel + "/" + n);
    }
    ::closedir(d);
  };
  walk("");
  return out;
}

size_t count_entries(int dirfd, const std::string& rel) {
  auto fd = sys::xopen_at(dirfd, rel, O_RDONLY | O_DIRECTORY, 0, rel);
  DIR* d = ::fdopendir(fd.release());
  size_t n = 0;
  while (auto* e = ::readdir(d))
    if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") ++n;
  ::closedir(d);
  return n;
}

// A store and a sentinel dir beside it that no layer may touch.
struct Fixture {
  TempDir t;
  std::string sentinel = t / "sentinel";
  std::map<std::string, std::string> before;
  Fixture() {
    sys::xmkdir_p(sentinel + "/dir");
    auto fd = sys::xopen_dir(sentinel);
    sys::xwrite_file_atomic(fd.get(), "t", fd.get(), "file", "precious\n", 0644);
    sys::xwrite_file_atomic(fd.get(), "t", fd.get(), "dir/inner", "also precious\n", 0600);
    before = snapshot(sentinel);
  }
  // Ingests `b` and returns the error line; FAILs if it succeeds.
  std::string fail_ingest(const Blob& b, unpack::Options opt = {}) {
    Store s = Store::open(t / "store");
    StringSource src(b.bytes, 100000);
    std::string msg;
    try {
      s.ingest_layer(b.spec, src, opt);
      FAIL("ingest succeeded");
    } catch (const Error& e) {
      msg = e.line();
    }
    INFO(msg);
    CHECK(msg.find(b.spec.image) != std::string::npos);
    CHECK(msg.find(b.spec.digest.str()) != std::string::npos);
    CHECK_FALSE(s.has_layer(b.spec.diff_id));
    CHECK(count_entries(s.root_fd(), "layers/sha256") == 0);
    CHECK(count_entries(s.root_fd(), "tmp") == 0);
    CHECK(snapshot(sentinel) == before);
    return msg;
  }
};

// Sets the typeflag of the header block whose name field starts with `name`
// and fixes the header checksum.
void patch_typeflag(std::string& tar, const std::string& name, char flag) {
  for (size_t off = 0; off + 512 <= tar.size(); off += 512) {
    if (tar.compare(off, name.size(), name) != 0 || tar[off + name.size()] != '\0') continue;
    tar[off + 156] = flag;
    unsigned sum = 0;
    for (size_t i = 0; i < 512; ++i)
      sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(tar[off + i]);
    char buf[8];
    std::snprintf(buf, sizeof buf, "%06o", sum);
    std::memcpy(&tar[off + 148], buf, 6);
    tar[off + 154] = '\0';
    tar[off + 155] = ' ';
    return;
  }
  FAIL("header not found: " << name);
}

Blob blob_of(TarBuilder& tb, Filter f = Filter::Gzip) {
  return make_blob(tb.finish(), f, "evil.example/img:1");
}

}  // namespace

TEST_CASE("hostile names") {
  Fixture fx;
  struct Case {
    const char* name;
    const char* want;
  };
  for (auto [name, want] : {Case{"../escape", "'..'"}, Case{"a/../../escape", "'..'"},
                            Case{"/abs", "absolute"}, Case{"/", "absolute"}}) {
    INFO(name);
    TarBuilder tb;
    tb.file("ok", "fine");
    tb.file(name, "pwned");
    auto msg = fx.fail_ingest(blob_of(tb));
    CHECK_THAT(msg, Catch::Contains(want) && Catch::Contains(std::string("'") + name + "'"));
  }
  SECTION("the root as a symlink or a file") {
    TarBuilder a;
    a.symlink(".", fx.sentinel);
    CHECK_THAT(fx.fail_ingest(blob_of(a)), Catch::Contains("layer root"));
    TarBuilder b;
    b.file(".", "x");
    CHECK_THAT(fx.fail_ingest(blob_of(b)), Catch::Contains("layer root"));
  }
}

TEST_CASE("symlinks cannot be written through") {
  Fixture fx;
  SECTION("absolute symlink to outside, then a file through it") {
    TarBuilder tb;
    tb.symlink("evil", fx.sentinel);
    tb.file("evil/file", "pwned");
    CHECK_THAT(fx.fail_ingest(blob_of(tb)),
               Catch::Contains("evil/file") && Catch::Contains("symlink"));
  }
  SECTION("relative symlink climbing out, then a directory through it") {
    TarBuilder tb;
    tb.symlink("up", "../../../../../../../../../../../../.." + fx.sentinel);
    tb.dir("up/dir/newdir/");
    CHECK_THAT(fx.fail_ingest(blob_of(tb)), Catch::Contains("symlink"));
  }
  SECTION("symlink inside the tree, used as a parent") {
    TarBuilder tb;
    tb.dir("real/");
    tb.symlink("alias", "real");
    tb.file("alias/file", "x");
    CHECK_THAT(fx.fail_ingest(blob_of(tb)), Catch::Contains("alias/file"));
  }
  SECTION("a directory replaced by a symlink mid-layer, then written through") {
    TarBuilder tb;
    tb.dir("d/");
    tb.file("d/a", "a");
    tb.symlink("d", fx.sentinel + "/dir");
    tb.file("d/inner", "pwned");
    CHECK_THAT(fx.fail_ingest(blob_of(tb)), Catch::Contains("d/inner"));
  }
  SECTION("chmod through a symlink: a directory entry over a symlink") {
    TarBuilder tb;
    tb.symlink("l", fx.sentinel + "/dir");
    tb.dir("l/", {.mode = 0777});
    CHECK_THAT(fx.fail_ingest(blob_of(tb)), Catch::Contains("over a symlink"));
  }
  SECTION("a file, hardlink or device over a symlink of the same layer") {
    for (int kind = 0; kind < 3; ++kind) {
      TarBuilder tb;
      tb.file("real", "x");
      tb.symlink("l", fx.sentinel + "/file");
      if (kind == 0) tb.file("l", "pwned");
      if (kind == 1) tb.hardlink("l", "real");
      if (kind == 2) tb.fifo("l");
      CHECK_THAT(fx.fail_ingest(blob_of(tb)),
                 Catch::Contains("entry 'l'") && Catch::Contains("over a symlink"));
    }
  }
}

TEST_CASE("hostile hardlinks") {
  Fixture fx;
  struct Case {
    std::string target;
    const char* want;
  };
  for (const auto& c : {Case{"../../../../../../../.." + fx.sentinel + "/file", "'..'"},
                        Case{fx.sentinel + "/file", "absolute"}, Case{"missing", "does not exist"},
                        Case{"link", "symlink"}, Case{"dir", "directory"},
                        Case{"viadir/file", "symlink"}, Case{".", "layer root"}}) {
    INFO(c.target);
    TarBuilder tb;
    tb.symlink("link", fx.sentinel + "/file");
    tb.dir("dir/");
    tb.symlink("viadir", fx.sentinel);
    tb.hardlink("h", c.target, {.mode = 0777, .uid = 1234});
    CHECK_THAT(fx.fail_ingest(blob_of(tb)), Catch::Contains(c.want) && Catch::Contains("'h'"));
  }
}

TEST_CASE("device numbers Linux cannot represent are refused, not truncated") {
  Fixture fx;
  struct Case {
    uint64_t maj, min;
  };
  // mknod(2) encodes 12 bits of major and 20 of minor: 2^33:1 became 0:1,
  // and 1:(2^32+5) became 1:5.
  for (auto [maj, min] :
       {Case{1ULL << 33, 1}, Case{1, (1ULL << 32) + 5}, Case{4096, 0}, Case{8, 1ULL << 20}}) {
    INFO(maj << ":" << min);
    TarBuilder tb;
    tb.dir("dev/");
    tb.device("dev/odd", false, maj, min);
    std::string msg = fx.fail_ingest(blob_of(tb));
    CHECK_THAT(msg, Catch::Contains("entry 'dev/odd'") &&
                        Catch::Contains(std::to_string(maj) + ":" + std::to_string(min)) &&
                        Catch::Contains("cannot be represented"));
  }
}

TEST_CASE("fuse-overlayfs owner/mode records in a tar are refused") {
  Fixture fx;
  // "uid:gid:mode" as xattr_permissions=1|2 reads it: root-owned setuid.
  for (const char* name :
       {"user.fuseoverlayfs.override_stat", "security.fuseoverlayfs.override_stat"}) {
    INFO(name);
    for (bool dir : {false, true}) {
      TarBuilder tb;
      if (dir)
        tb.dir("d/", {.xattrs = {{name, "0:0:04755"}}});
      else
        tb.file("bin/sh", "#!", {.xattrs = {{name, "0:0:04755"}}});
      std::string msg = fx.fail_ingest(blob_of(tb));
      CHECK_THAT(msg, Catch::Contains(name) && Catch::Contains("xattr_permissions") &&
                          Catch::Contains(dir ? "entry 'd" : "entry 'bin/sh'"));
    }
  }
}

TEST_CASE("hostile whiteouts and fake whiteout devices") {
  Fixture fx;
  struct Case {
    const char* name;
    const char* want;
  };
  for (auto [name, want] : {Case{".wh.", "not a valid name"}, Case{"a/.wh..", "not a valid name"},
                            Case{".wh...", "'..'"}, Case{".wh..wh.x", "whiteout"},
                            Case{".wh.d/x", "whiteout name used as a directory"},
                            Case{"s/.wh.file", "symlink"}, Case{"s/.wh..wh..opq", "symlink"}}) {
    INFO(name);
    TarBuilder tb;
    tb.dir("a/");
    tb.symlink("s", fx.sentinel);
    tb.file(name, "");
    CHECK_THAT(fx.fail_ingest(blob_of(tb)), Catch::Contains(want));
  }
  SECTION("char 0:0 under an ordinary name") {
    TarBuilder tb;
    tb.device("etc/passwd", true, 0, 0);
    CHECK_THAT(fx.fail_ingest(blob_of(tb)),
               Catch::Contains("0:0") && Catch::Contains("etc/passwd"));
  }
}

TEST_CASE("damaged tar streams") {
  Fixture fx;
  SECTION("bad header checksum") {
    TarBuilder tb;
    tb.file("a", "x");
    tb.file("b", "y");
    std::string tar = tb.finish();
    tar[512 * 2 + 1] ^= 1;  // inside b's header name (a: header + data)
    auto msg = fx.fail_ingest(make_blob(tar, Filter::None, "evil.example/img:1"));
    CHECK_THAT(msg, Catch::Contains("tar"));
  }
  SECTION("unknown entry type") {
    TarBuilder tb(ARCHIVE_FORMAT_TAR_USTAR);
    tb.file("weird", "x");
    std::string tar = tb.finish();
    patch_typeflag(tar, "weird", 'Z');
    CHECK_THAT(fx.fail_ingest(make_blob(tar, Filter::Gzip, "evil.example/img:1")),
               Catch::Contains("type") && Catch::Contains("weird"));
  }
  SECTION("pax header over 1 MiB") {
    TarBuilder tb;
    tb.file("big-xattr", "x", {.xattrs = {{"user.big", std::string((1 << 20) + 100, 'x')}}});
    CHECK_THAT(fx.fail_ingest(blob_of(tb)), Catch::Contains("too large"));
  }
  SECTION("truncated plain, gzip and zstd streams") {
    std::string data(300000, 'q');
    TarBuilder tb;
    tb.file("a", data);
    std::string tar = tb.finish();
    for (auto f : {Filter::None, Filter::Gzip, Filter::Zstd}) {
      Blob b = make_blob(tar, f, "evil.example/img:1");
      b.bytes.resize(b.bytes.size() / 2);
      b.spec.digest = Hasher::of(b.bytes);
      b.spec.size = static_cast<int64_t>(b.bytes.size());
      CHECK_THAT(fx.fail_ingest(b), Catch::Contains("runcated"));
    }
  }
  SECTION("corrupt gzip and zstd") {
    TarBuilder tb;
    for (int i = 0; i < 50; ++i) tb.file("f" + std::to_string(i), std::string(10000, 'a' + i % 26));
    std::string tar = tb.finish();
    for (auto f : {Filter::Gzip, Filter::Zstd}) {
      Blob b = make_blob(tar, f, "evil.example/img:1");
      for (size_t i = b.bytes.size() / 3; i < b.bytes.size() / 3 + 16; ++i) b.bytes[i] ^= 0x5a;
      b.spec.digest = Hasher::of(b.bytes);
      CHECK_THAT(fx.fail_ingest(b), Catch::Contains("corrupt") || Catch::Contains("mismatch"));
    }
  }
  SECTION("compression that disagrees with the media type") {
    TarBuilder tb;
    tb.file("a", "x");
    std::string tar = tb.finish();
    Blob b = make_blob(tar, Filter::Gzip, "evil.example/img:1");
    b.spec.media_type = media_type(Filter::Zstd);
    CHECK_THAT(fx.fail_ingest(b), Catch::Contains("zstd") && Catch::Contains("gzip"));
    b = make_blob(tar, Filter::Zstd, "evil.example/img:1");
    b.spec.media_type = media_type(Filter::None);
    CHECK_THAT(fx.fail_ingest(b), Catch::Contains("zstd"));
    b = make_blob(tar, Filter::None, "evil.example/img:1");
    b.spec.media_type = media_type(Filter::Gzip);
    CHECK_THAT(fx.fail_ingest(b), Catch::Contains("not compressed"));
  }
}

TEST_CASE("decompression bombs hit the caps") {
  Fixture fx;
  SECTION("expanded bytes") {
    TarBuilder tb;
    tb.file("zeros", std::string(8 << 20, '\0'));
    Blob b = blob_of(tb, Filter::Zstd);
    CHECK(b.bytes.size() < 100000);
    unpack::Options opt;
    opt.limits.max_bytes = 4 << 20;
    CHECK_THAT(fx.fail_ingest(b, opt), Catch::Contains("limit"));
  }
  SECTION("entry count") {
    TarBuilder tb;
    for (int i = 0; i < 200; ++i) tb.file("f" + std::to_string(i), "");
    unpack::Options opt;
    opt.limits.max_entries = 100;
    CHECK_THAT(fx.fail_ingest(blob_of(tb), opt), Catch::Contains("entries"));
  }
  SECTION("name length") {
    TarBuilder tb;
    tb.file(std::string(200, 'n') + "/" + std::string(200, 'm'), "");
    unpack::Options opt;
    opt.limits.max_name = 300;
    CHECK_THAT(fx.fail_ingest(blob_of(tb), opt), Catch::Contains("longer"));
  }
  SECTION("xattr size") {
    TarBuilder tb;
    tb.file("x", "", {.xattrs = {{"user.big", std::string(2000, 'v')}}});
    unpack::Options opt;
    opt.limits.max_xattr = 1000;
    CHECK_THAT(fx.fail_ingest(blob_of(tb), opt), Catch::Contains("xattr"));
  }
}

TEST_CASE("digests and sizes must match the descriptor") {
  Fixture fx;
  TarBuilder tb;
  tb.file("a", std::string(100000, 'a'));
  std::string tar = tb.finish();
  for (auto f : {Filter::None, Filter::Gzip, Filter::Zstd}) {
    Blob good = make_blob(tar, f, "evil.example/img:1");
    Blob b = good;
    b.spec.digest = Hasher::of("other");
    CHECK_THAT(fx.fail_ingest(b), Catch::Contains("digest mismatch"));
    b = good;
    b.spec.diff_id = Hasher::of("other");
    CHECK_THAT(fx.fail_ingest(b), Catch::Contains("diff_id mismatch"));
    b = good;
    b.spec.size -= 1;
    CHECK_THAT(fx.fail_ingest(b), Catch::Contains("larger than the descriptor"));
    b = good;
    b.spec.size += 1;
    CHECK_THAT(fx.fail_ingest(b), Catch::Contains("the descriptor says"));
  }
}

TEST_CASE("a symlink from an earlier layer cannot be followed by a later one") {
  // Each layer unpacks into its own empty directory, so the later layer's
  // "evil/file" creates a real directory there instead of following layer
  // 1's symlink; nothing outside changes. The layer records that it made
  // "evil" without an entry for it, and the image-level check
  // (pull::check_write_through, run before such a layer is published)
  // refuses the image.
  Fixture fx;
  Store s = Store::open(fx.t / "store");
  TarBuilder l0;
  l0.dir("etc/");
  Blob b0 = blob_of(l0);
  StringSource s0(b0.bytes);
  s.ingest_layer(b0.spec, s0, {});
  TarBuilder l1;
  l1.symlink("evil", fx.sentinel);
  l1.symlink("etc/alias", "/etc");
  Blob b1 = blob_of(l1);
  StringSource s1(b1.bytes);
  s.ingest_layer(b1.spec, s1, {});
  std::vector<Digest> ids{b0.spec.diff_id, b1.spec.diff_id};
  auto ingest_top = [&](TarBuilder& tb) {
    Blob b = blob_of(tb);
    StringSource src(b.bytes);
    ids.resize(2);
    ids.push_back(b.spec.diff_id);
    std::string err;
    try {
      s.ingest_layer(b.spec, src, {}, {}, [&](const store::LayerInfo& info, int fd) {
        pull::check_write_through(s, ids, 2, info, fd, "evil.example/img:1");
      });
    } catch (const Error& e) {
      err = e.what();
    }
    CHECK(s.has_layer(b.spec.diff_id) == err.empty());
    return err;
  };
  SECTION("a file below the symlink's name") {
    TarBuilder l2;
    l2.file("evil/file", "pwned");
    std::string err = ingest_top(l2);
    CHECK_THAT(err,
               Catch::Contains("image evil.example/img:1") &&
                   Catch::Contains("entry 'evil/file' is written through the symlink 'evil'") &&
                   Catch::Contains("of layer " + b1.spec.diff_id.str()));
    // The layer on its own, with nothing below it, is fine.
    Blob b2 = blob_of(l2);
    StringSource s2(b2.bytes);
    s.ingest_layer(b2.spec, s2, {});
    struct stat st;
    std::string p = fx.t / "store/" + store::Layout::layer_diff(b2.spec.diff_id) + "/evil";
    REQUIRE(::lstat(p.c_str(), &st) == 0);
    CHECK(S_ISDIR(st.st_mode));
    auto info = s.layer_info(b2.spec.diff_id);
    REQUIRE(info);
    CHECK(info->implicit_dirs == std::map<std::string, std::string>{{"evil", "evil/file"}});
  }
  SECTION("deeper, through a symlink in a merged directory") {
    TarBuilder l2;
    l2.file("etc/alias/sub/passwd", "pwned");
    CHECK_THAT(ingest_top(l2),
               Catch::Contains("entry 'etc/alias/sub/passwd'") && Catch::Contains("'etc/alias'"));
  }
  SECTION("legitimate: the symlink replaced by a directory entry first") {
    TarBuilder l2;
    l2.dir("evil/");
    l2.file("evil/file", "x");
    CHECK(ingest_top(l2).empty());
  }
  SECTION("legitimate: the symlink's parent replaced by an opaque directory") {
    TarBuilder l2;
    l2.dir("etc/");
    l2.file("etc/.wh..wh..opq", "");
    l2.file("etc/alias/x", "x");
    CHECK(ingest_top(l2).empty());
  }
  SECTION("legitimate: the symlink whited out in between") {
    TarBuilder l2;
    l2.file(".wh.evil", "");
    Blob b2 = blob_of(l2);
    StringSource s2(b2.bytes);
    s.ingest_layer(b2.spec, s2, {});
    TarBuilder l3;
    l3.file("evil/file", "x");
    Blob b3 = blob_of(l3);
    StringSource s3(b3.bytes);
    s.ingest_layer(b3.spec, s3, {});
    ids.push_back(b2.spec.diff_id);
    ids.push_back(b3.spec.diff_id);
    auto info = s.layer_info(b3.spec.diff_id);
    REQUIRE(info);
    UniqueFd fd = sys::xopen_at(s.root_fd(), store::Layout::layer_diff(b3.spec.diff_id),
                                O_PATH | O_DIRECTORY, 0, "diff");
    CHECK_NOTHROW(pull::check_write_through(s, ids, 3, *info, fd.get(), "img"));
    // Without the whiteout layer in the stack, the same layer is refused.
    std::vector<Digest> direct{ids[0], ids[1], b3.spec.diff_id};
    CHECK_THROWS_WITH(pull::check_write_through(s, direct, 2, *info, fd.get(), "img"),
                      Catch::Contains("written through the symlink 'evil'"));
  }
  CHECK(snapshot(fx.sentinel) == fx.before);
}

TEST_CASE("NUL bytes inside names") {
  Fixture fx;
  // A pax path record is the only place a tar can carry a NUL inside a name;
  // the ustar name field just ends at one. Patch the record's bytes.
  TarBuilder tb(ARCHIVE_FORMAT_TAR_PAX_INTERCHANGE);
  tb.file("nul-XX-name-" + std::string(120, 'n'), "x");
  std::string tar = tb.finish();
  auto at = tar.find("path=nul-XX-name");
  REQUIRE(at != std::string::npos);
  tar[at + 9] = '\0';
  std::string msg = fx.fail_ingest(make_blob(tar, Filter::Gzip, "evil.example/img:1"));
  CHECK_THAT(msg, Catch::Contains("NUL") || Catch::Contains("pax"));
}
