#include "unpack/unpacker.hpp"

#include <locale.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <tuple>
#include <vector>

#include "tar_builder.hpp"
#include "unpack/layer_stream.hpp"
#include "util/error.hpp"

using namespace layer;
using namespace layer::testing;

namespace {

unpack::Stats unpack_blob(const Blob& b, int dir, unpack::Options opt = {}) {
  StringSource src(b.bytes, 65536);
  return unpack::unpack_layer(dir, b.spec, src, opt);
}

struct stat lstat_at(const TempDir& t, const std::string& rel) {
  struct stat st {};
  if (::fstatat(t.fd.get(), rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) FAIL("missing: " << rel);
  return st;
}

bool exists(const TempDir& t, const std::string& rel) {
  struct stat st;
  return ::fstatat(t.fd.get(), rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

std::string read_at(const TempDir& t, const std::string& rel) {
  return sys::xread_file(t.fd.get(), rel, 1 << 30, rel);
}

std::string xattr_of(const std::string& path, const std::string& name) {
  char buf[4096];
  ssize_t n = ::lgetxattr(path.c_str(), name.c_str(), buf, sizeof buf);
  if (n < 0) return "<none>";
  return std::string(buf, static_cast<size_t>(n));
}

std::string big_data(size_t n) {
  std::string s(n, '\0');
  uint32_t x = 12345;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1103515245 + 12345;
    s[i] = static_cast<char>((x >> 16) % 64 + 32);
  }
  return s;
}

}  // namespace

TEST_CASE("media types choose the decompressor") {
  using unpack::Compression;
  CHECK(unpack::compression_of("application/vnd.oci.image.layer.v1.tar") == Compression::None);
  CHECK(unpack::compression_of("application/vnd.oci.image.layer.v1.tar+gzip") == Compression::Gzip);
  CHECK(unpack::compression_of("application/vnd.docker.image.rootfs.diff.tar.gzip") ==
        Compression::Gzip);
  CHECK(unpack::compression_of("application/vnd.oci.image.layer.v1.tar+zstd") == Compression::Zstd);
  CHECK_THROWS_AS(unpack::compression_of("application/vnd.oci.image.layer.v1.tar+bzip2"), Error);
  CHECK_THROWS_AS(unpack::compression_of(""), Error);
}

TEST_CASE("unpacks every entry type with its metadata, for tar, gzip and zstd") {
  auto filter = GENERATE(Filter::None, Filter::Gzip, Filter::Zstd);
  std::string big = big_data(5 << 20);                // crosses the stream's buffers
  TarBuilder tb(ARCHIVE_FORMAT_TAR_PAX_INTERCHANGE);  // keeps sub-second mtimes
  tb.dir("./", {.mode = 0751, .mtime = 1500000000});
  tb.dir("etc/", {.mode = 0755, .uid = 0, .gid = 0, .mtime = 1500000001});
  tb.file("etc/passwd", "root:x:0:0\n",
          {.mode = 0644, .mtime = 1500000002, .mtime_nsec = 123456789});
  tb.file("etc/shadow", "secret\n", {.mode = 0640, .uid = 0, .gid = 42});
  tb.dir("usr/bin/", {.mode = 0755});
  tb.file("usr/bin/su", "ELF", {.mode = 04755, .uid = 0, .gid = 0});
  tb.file("usr/bin/wall", "ELF", {.mode = 02755, .uid = 0, .gid = 5});
  tb.dir("tmp/", {.mode = 01777, .mtime = 1500000003});
  tb.file("home/user/big", big, {.mode = 0600, .uid = 1000, .gid = 1000});
  tb.symlink("etc/localtime", "/usr/share/zoneinfo/UTC",
             {.uid = 1000, .gid = 1000, .mtime = 1500000004});
  tb.hardlink("usr/bin/su2", "usr/bin/su");
  tb.device("dev/null", true, 1, 3, {.mode = 0666});
  tb.device("dev/sda", false, 8, 0, {.mode = 0660, .gid = 6});
  tb.fifo("run/fifo", {.mode = 0620});
  tb.file(
      "cap", "x",
      {.xattrs = {
           {"user.comment", "hello"},
           {"security.capability",
            std::string(
                "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
                20)}}});
  tb.file("empty", "");
  Blob b = make_blob(tb.finish(), filter);

  TempDir t;
  auto stats = unpack_blob(b, t.fd.get());
  CHECK(stats.entries == 16);
  CHECK(stats.compressed_bytes == b.bytes.size());
  CHECK(stats.file_bytes == big.size() + 11 + 7 + 3 + 3 + 1);

  CHECK(read_at(t, "etc/passwd") == "root:x:0:0\n");
  CHECK(read_at(t, "home/user/big") == big);
  auto st = lstat_at(t, "etc/passwd");
  CHECK((st.st_mode & 07777) == 0644);
  CHECK(st.st_mtim.tv_sec == 1500000002);
  CHECK(st.st_mtim.tv_nsec == 123456789);
  st = lstat_at(t, "etc/shadow");
  CHECK((st.st_mode & 07777) == 0640);
  CHECK(st.st_gid == 42);
  CHECK((lstat_at(t, "usr/bin/su").st_mode & 07777) == 04755);
  CHECK((lstat_at(t, "usr/bin/wall").st_mode & 07777) == 02755);
  CHECK(lstat_at(t, "usr/bin/wall").st_gid == 5);
  st = lstat_at(t, "tmp");
  CHECK((st.st_mode & 07777) == 01777);
  CHECK(st.st_mtim.tv_sec == 1500000003);
  st = lstat_at(t, "etc");
  CHECK(st.st_mtim.tv_sec == 1500000001);  // set after its children were written
  st = lstat_at(t, ".");
  CHECK((st.st_mode & 07777) == 0751);
  CHECK(st.st_mtim.tv_sec == 1500000000);
  st = lstat_at(t, "home/user/big");
  CHECK(st.st_uid == 1000);
  CHECK(st.st_gid == 1000);
  CHECK((lstat_at(t, "home/user").st_mode & 07777) == 0755);  // implicit parent

  char target[256] = {};
  REQUIRE(::readlinkat(t.fd.get(), "etc/localtime", target, sizeof target - 1) > 0);
  CHECK(std::string(target) == "/usr/share/zoneinfo/UTC");
  st = lstat_at(t, "etc/localtime");
  CHECK(S_ISLNK(st.st_mode));
  CHECK(st.st_uid == 1000);
  CHECK(st.st_mtim.tv_sec == 1500000004);

  CHECK(lstat_at(t, "usr/bin/su2").st_ino == lstat_at(t, "usr/bin/su").st_ino);
  CHECK(lstat_at(t, "usr/bin/su").st_nlink == 2);

  st = lstat_at(t, "dev/null");
  CHECK(S_ISCHR(st.st_mode));
  CHECK(st.st_rdev == makedev(1, 3));
  CHECK((st.st_mode & 07777) == 0666);
  st = lstat_at(t, "dev/sda");
  CHECK(S_ISBLK(st.st_mode));
  CHECK(st.st_rdev == makedev(8, 0));
  CHECK(st.st_gid == 6);
  st = lstat_at(t, "run/fifo");
  CHECK(S_ISFIFO(st.st_mode));
  CHECK((st.st_mode & 07777) == 0620);

  CHECK(xattr_of(t / "cap", "user.comment") == "hello");
  CHECK(xattr_of(t / "cap", "security.capability").size() == 20);
  CHECK(lstat_at(t, "empty").st_size == 0);
}

TEST_CASE("modes and groups come out right whatever the umask and the parents' groups") {
  // The writer skips fchown/fchmod when creation already gives the right
  // owner and mode; this covers the cases where it must not.
  TarBuilder tb(ARCHIVE_FORMAT_TAR_PAX_INTERCHANGE);
  tb.dir("./", {.mode = 0755});
  tb.dir("var/", {.mode = 0755});
  tb.dir("var/mail/", {.mode = 02775, .gid = 8});
  tb.file("var/mail/root", "x", {.mode = 0644});  // root:root in a setgid gid-8 dir
  tb.file("var/mail/m8", "x", {.mode = 0660, .gid = 8});
  tb.file("var/plain", "y", {.mode = 0664});
  tb.file("var/ro", "z", {.mode = 0444});
  tb.file("var/none", "z", {.mode = 0});
  tb.file("a/b/implicit", "w", {.mode = 0775});  // parents made implicitly
  tb.file("var/after", "v", {.mode = 0666});
  Blob b = make_blob(tb.finish(), Filter::None);
  for (mode_t mask : {mode_t{022}, mode_t{077}, mode_t{0}}) {
    CAPTURE(mask);
    TempDir t;
    mode_t old = ::umask(mask);
    unpack_blob(b, t.fd.get());
    ::umask(old);
    auto check = [&](const char* rel, mode_t mode, gid_t gid) {
      CAPTURE(rel);
      auto st = lstat_at(t, rel);
      CHECK((st.st_mode & 07777) == mode);
      if (::geteuid() == 0) {
        CHECK(st.st_uid == 0);
        CHECK(st.st_gid == gid);
      }
    };
    check("var/mail", 02775, 8);
    check("var/mail/root", 0644, 0);
    check("var/mail/m8", 0660, 8);
    check("var/plain", 0664, 0);
    check("var/ro", 0444, 0);
    check("var/none", 0, 0);
    check("a/b/implicit", 0775, 0);
    check("var/after", 0666, 0);
  }
}

TEST_CASE("sparse files keep their holes") {
  std::string a(4096, 'a'), z(8192, 'z');
  TarBuilder tb;
  tb.sparse("sparse", 64 << 20, {{0, a}, {32 << 20, z}});
  Blob b = make_blob(tb.finish(), Filter::Gzip);
  TempDir t;
  unpack_blob(b, t.fd.get());
  auto st = lstat_at(t, "sparse");
  CHECK(st.st_size == (64 << 20));
  CHECK(st.st_blocks * 512 < (1 << 20));  // holes stay holes
  std::string data = read_at(t, "sparse");
  CHECK(data.substr(0, 4096) == a);
  CHECK(data.substr(32 << 20, 8192) == z);
  CHECK(data[4096] == '\0');
  CHECK(data[(64 << 20) - 1] == '\0');
}

TEST_CASE("trailing bytes after the tar end count toward the diff_id") {
  TarBuilder tb;
  tb.file("a", "x");
  std::string tar = tb.finish() + std::string(4096, '\0');
  Blob b = make_blob(tar, Filter::Zstd);
  TempDir t;
  auto stats = unpack_blob(b, t.fd.get());
  CHECK(stats.tar_bytes == tar.size());

  // The diff_id of the tar without the padding is wrong for this blob.
  TarBuilder tb2;
  tb2.file("a", "x");
  b.spec.diff_id = Hasher::of(tb2.finish());
  TempDir t2;
  CHECK_THROWS_WITH(unpack_blob(b, t2.fd.get()), Catch::Contains("diff_id mismatch"));
}

TEST_CASE("progress reports compressed bytes") {
  TarBuilder tb;
  tb.file("a", big_data(3 << 20));
  Blob b = make_blob(tb.finish(), Filter::Gzip);
  TempDir t;
  StringSource src(b.bytes);
  uint64_t last = 0;
  int calls = 0;
  unpack::unpack_layer(t.fd.get(), b.spec, src, {}, [&](uint64_t n) {
    CHECK(n >= last);
    last = n;
    ++calls;
  });
  CHECK(calls > 0);
  CHECK(last == b.bytes.size());
}

TEST_CASE("OCI whiteouts become overlay whiteouts; same-layer entries survive") {
  bool rootless = GENERATE(false, true);
  INFO("rootless " << rootless);
  TarBuilder tb;
  tb.dir("a/");
  tb.file("a/.wh.gone", "");  // lower a/gone hidden
  tb.file("a/.wh.kept", "");  // whiteout before the same-layer entry
  tb.file("a/kept", "mine");
  tb.file("a/also", "mine too");
  tb.file("a/.wh.also", "");  // whiteout after the same-layer entry
  tb.dir("o/");
  tb.file("o/new", "n");
  tb.file("o/.wh..wh..opq", "");  // after its siblings: still only hides lower
  tb.file("p/.wh..wh..opq", "");  // parent without an entry of its own
  tb.file(".wh.d", "");
  tb.dir("d/");  // a dir replacing a whited-out one
  tb.file("d/x", "x");
  Blob b = make_blob(tb.finish(), Filter::Gzip);
  TempDir t;
  unpack::Options opt;
  opt.rootless = rootless;
  unpack_blob(b, t.fd.get(), opt);

  auto st = lstat_at(t, "a/gone");
  if (!rootless) {
    CHECK(S_ISCHR(st.st_mode));
    CHECK(st.st_rdev == makedev(0, 0));
  } else {
    CHECK(S_ISREG(st.st_mode));
    CHECK(st.st_size == 0);
    CHECK(xattr_of(t / "a/gone", "user.overlay.whiteout") == "y");
  }
  CHECK(read_at(t, "a/kept") == "mine");
  CHECK(read_at(t, "a/also") == "mine too");
  CHECK(read_at(t, "o/new") == "n");
  std::string opaque = rootless ? "user.overlay.opaque" : "trusted.overlay.opaque";
  CHECK(xattr_of(t / "o", opaque) == "y");
  CHECK(xattr_of(t / "p", opaque) == "y");
  CHECK(xattr_of(t / "d", opaque) == "y");
  // A directory holding xattr whiteouts is marked for them ("x": not opaque).
  CHECK(xattr_of(t / "a", opaque) == (rootless ? "x" : "<none>"));
  CHECK(read_at(t, "d/x") == "x");
  for (const char* n :
       {"a/.wh.gone", "a/.wh.kept", "a/.wh.also", "o/.wh..wh..opq", "p/.wh..wh..opq", ".wh.d"})
    CHECK_FALSE(exists(t, n));
}

TEST_CASE("POSIX ACLs from pax records become system.posix_acl_* xattrs") {
  // GNU tar --acls writes SCHILY.acl.access / SCHILY.acl.default records;
  // libarchive's pax writer does the same from an entry's ACL.
  TarBuilder tb(ARCHIVE_FORMAT_TAR_PAX_INTERCHANGE);
  EntryOpts fo;
  fo.mode = 0640;
  auto f = TarBuilder::entry("f", AE_IFREG, fo);
  archive_entry_set_size(f.get(), 2);
  archive_entry_acl_add_entry(f.get(), ARCHIVE_ENTRY_ACL_TYPE_ACCESS,
                              ARCHIVE_ENTRY_ACL_READ | ARCHIVE_ENTRY_ACL_WRITE,
                              ARCHIVE_ENTRY_ACL_USER, 1234, "u1234");
  archive_entry_acl_add_entry(f.get(), ARCHIVE_ENTRY_ACL_TYPE_ACCESS,
                              ARCHIVE_ENTRY_ACL_READ | ARCHIVE_ENTRY_ACL_WRITE,
                              ARCHIVE_ENTRY_ACL_MASK, -1, nullptr);
  tb.raw(f.get(), "hi");
  EntryOpts dopt;
  dopt.mode = 0755;
  auto d = TarBuilder::entry("d", AE_IFDIR, dopt);
  for (auto [tag, perm, id] :
       {std::tuple{ARCHIVE_ENTRY_ACL_USER_OBJ, 7, -1},
        std::tuple{ARCHIVE_ENTRY_ACL_GROUP_OBJ, 5, -1}, std::tuple{ARCHIVE_ENTRY_ACL_OTHER, 5, -1},
        std::tuple{ARCHIVE_ENTRY_ACL_GROUP, 7, 4321}, std::tuple{ARCHIVE_ENTRY_ACL_MASK, 7, -1}}) {
    int ps = ((perm & 4) ? ARCHIVE_ENTRY_ACL_READ : 0) |
             ((perm & 2) ? ARCHIVE_ENTRY_ACL_WRITE : 0) |
             ((perm & 1) ? ARCHIVE_ENTRY_ACL_EXECUTE : 0);
    archive_entry_acl_add_entry(d.get(), ARCHIVE_ENTRY_ACL_TYPE_DEFAULT, ps, tag, id,
                                tag == ARCHIVE_ENTRY_ACL_GROUP ? "g4321" : nullptr);
  }
  tb.raw(d.get());
  tb.file("plain", "p");
  std::string tar = tb.finish();
  REQUIRE(tar.find("SCHILY.acl.access") != std::string::npos);
  REQUIRE(tar.find("SCHILY.acl.default") != std::string::npos);
  TempDir t;
  unpack_blob(make_blob(tar, Filter::Gzip), t.fd.get(), {});
  // Decoded: (tag, perm, id) triples after the 4-byte version header.
  auto acl = [&](const std::string& rel, const char* name) {
    std::string v = xattr_of(t / rel, name);
    std::vector<std::tuple<int, int, long>> out;
    if (v == "<none>") return out;
    REQUIRE(v.size() >= 4);
    REQUIRE(v.substr(0, 4) == std::string("\x02\0\0\0", 4));
    REQUIRE((v.size() - 4) % 8 == 0);
    auto u = [&](size_t at, int n) {
      long x = 0;
      for (int i = n - 1; i >= 0; --i) x = x * 256 + static_cast<unsigned char>(v[at + i]);
      return x;
    };
    for (size_t at = 4; at < v.size(); at += 8)
      out.emplace_back(static_cast<int>(u(at, 2)), static_cast<int>(u(at + 2, 2)), u(at + 4, 4));
    return out;
  };
  using T = std::vector<std::tuple<int, int, long>>;
  const long none = 0xFFFFFFFFL;
  CHECK(acl("f", "system.posix_acl_access") ==
        T{{0x01, 6, none}, {0x02, 6, 1234}, {0x04, 4, none}, {0x10, 6, none}, {0x20, 0, none}});
  CHECK(read_at(t, "f") == "hi");
  CHECK((lstat_at(t, "f").st_mode & 0777) == 0660);  // the group bits show the mask
  CHECK(acl("d", "system.posix_acl_default") ==
        T{{0x01, 7, none}, {0x04, 5, none}, {0x08, 7, 4321}, {0x10, 7, none}, {0x20, 5, none}});
  CHECK(acl("d", "system.posix_acl_access").empty());
  CHECK(acl("plain", "system.posix_acl_access").empty());
}

TEST_CASE("overlay xattrs inside a tar are escaped") {
  TarBuilder tb;
  tb.dir("d/", {.xattrs = {{"trusted.overlay.opaque", "y"}, {"user.overlay.redirect", "/etc"}}});
  tb.file("f", "", {.xattrs = {{"trusted.overlay.overlay.x", "1"}, {"user.other", "2"}}});
  Blob b = make_blob(tb.finish(), Filter::None);
  TempDir t;
  unpack_blob(b, t.fd.get());
  CHECK(xattr_of(t / "d", "trusted.overlay.opaque") == "<none>");
  CHECK(xattr_of(t / "d", "trusted.overlay.overlay.opaque") == "y");
  CHECK(xattr_of(t / "d", "user.overlay.redirect") == "<none>");
  CHECK(xattr_of(t / "d", "user.overlay.overlay.redirect") == "/etc");
  CHECK(xattr_of(t / "f", "trusted.overlay.overlay.overlay.x") == "1");
  CHECK(xattr_of(t / "f", "user.other") == "2");
}

TEST_CASE("non-ASCII names from PAX headers unpack whatever the process locale") {
  // Real images have them (Debian's ca-certificates). The tar is written under
  // a UTF-8 locale so its PAX path record is UTF-8, as GNU tar writes it; the
  // unpack runs in this process's "C" locale.
  const std::string name = "F\xc5\x91tan\xc3\xbas\xc3\xadtv\xc3\xa1ny.pem";
  std::string tar;
  {
    locale_t utf8 = ::newlocale(LC_CTYPE_MASK, "C.UTF-8", static_cast<locale_t>(0));
    REQUIRE(utf8 != static_cast<locale_t>(0));
    locale_t old = ::uselocale(utf8);
    TarBuilder tb;
    tb.dir("certs/");
    tb.file("certs/" + name, "cert");
    tar = tb.finish();
    ::uselocale(old);
    ::freelocale(utf8);
  }
  REQUIRE(tar.find("path=certs/" + name) != std::string::npos);
  Blob b = make_blob(tar, Filter::Gzip);
  TempDir t;
  unpack_blob(b, t.fd.get());
  CHECK(read_at(t, "certs/" + name) == "cert");
}

// Not run by default: `unit_unpack '[.bench]'` with LAYERFS_BENCH_BLOB,
// _MEDIA_TYPE, _DIGEST, _DIFF_ID and _OUT (an empty dir) set times one unpack
// of a real blob (compare with `tar -xf` on the same blob).
TEST_CASE("unpack a real blob", "[.bench]") {
  auto env = [](const char* k) {
    const char* v = std::getenv(k);
    if (!v) FAIL("set " << k);
    return std::string(v);
  };
  unpack::LayerSpec spec;
  spec.media_type = env("LAYERFS_BENCH_MEDIA_TYPE");
  spec.digest = Digest::parse(env("LAYERFS_BENCH_DIGEST"));
  spec.diff_id = Digest::parse(env("LAYERFS_BENCH_DIFF_ID"));
  spec.image = "bench";
  auto out = sys::xopen_dir(env("LAYERFS_BENCH_OUT"));
  auto t0 = std::chrono::steady_clock::now();
  FdSource src(sys::xopen_at(AT_FDCWD, env("LAYERFS_BENCH_BLOB"), O_RDONLY, 0, "blob"), "blob");
  auto stats = unpack::unpack_layer(out.get(), spec, src, {});
  std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
  WARN("unpacked " << stats.entries << " entries, " << stats.tar_bytes << " tar bytes in "
                   << dt.count() << " s");
}
