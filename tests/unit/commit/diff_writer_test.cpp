#include "commit/diff_writer.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <vector>

#include "commit/blob_writer.hpp"
#include "tar_builder.hpp"
#include "unpack/unpacker.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

using namespace layer;
using namespace layer::testing;

namespace {

struct TarEntry {
  std::string name;
  mode_t type = 0;
  mode_t perm = 0;
  std::string data;
  std::string hardlink;
  std::string symlink;
  int64_t mtime = 0;
  std::map<std::string, std::string> xattrs;
};

std::vector<TarEntry> read_tar(const std::string& bytes) {
  std::unique_ptr<archive, int (*)(archive*)> a(archive_read_new(), &archive_read_free);
  archive_read_support_format_tar(a.get());
  archive_read_support_filter_all(a.get());
  REQUIRE(archive_read_open_memory(a.get(), bytes.data(), bytes.size()) == ARCHIVE_OK);
  std::vector<TarEntry> out;
  archive_entry* e;
  while (archive_read_next_header(a.get(), &e) == ARCHIVE_OK) {
    TarEntry t;
    t.name = archive_entry_pathname(e);
    t.type = archive_entry_filetype(e);
    t.perm = archive_entry_perm(e);
    t.mtime = archive_entry_mtime(e);
    if (archive_entry_hardlink(e)) t.hardlink = archive_entry_hardlink(e);
    if (archive_entry_symlink(e)) t.symlink = archive_entry_symlink(e);
    const char* n;
    const void* v;
    size_t len;
    archive_entry_xattr_reset(e);
    while (archive_entry_xattr_next(e, &n, &v, &len) == ARCHIVE_OK)
      t.xattrs[n] = std::string(static_cast<const char*>(v), len);
    char buf[65536];
    la_ssize_t r;
    while ((r = archive_read_data(a.get(), buf, sizeof buf)) > 0)
      t.data.append(buf, static_cast<size_t>(r));
    out.push_back(std::move(t));
  }
  return out;
}

std::string write_tar(int top, std::vector<commit::LowerDir> lowers = {},
                      commit::DiffOptions opt = {}, commit::DiffStats* stats = nullptr) {
  std::string out;
  commit::DiffWriter w(
      top, std::move(lowers), opt,
      [&](const void* p, size_t n) { out.append(static_cast<const char*>(p), n); }, "test");
  auto s = w.write();
  if (stats) *stats = s;
  return out;
}

void put(const TempDir& t, const std::string& rel, const std::string& data, mode_t mode = 0644) {
  auto fd = sys::xopen_at(t.fd.get(), rel, O_WRONLY | O_CREAT | O_TRUNC, mode, rel);
  REQUIRE(sys::write_all(fd.get(), data.data(), data.size()));
  ::fchmod(fd.get(), mode);
}

void mkdir_at(const TempDir& t, const std::string& rel) {
  REQUIRE(::mkdirat(t.fd.get(), rel.c_str(), 0755) == 0);
}

void setx(const TempDir& t, const std::string& rel, const std::string& name, const std::string& v) {
  std::string p = t / rel;
  REQUIRE(::lsetxattr(p.c_str(), name.c_str(), v.data(), v.size(), 0) == 0);
}

std::vector<std::string> names(const std::vector<TarEntry>& es) {
  std::vector<std::string> out;
  for (const auto& e : es) out.push_back(e.name);
  return out;
}

const TarEntry& find(const std::vector<TarEntry>& es, const std::string& name) {
  for (const auto& e : es)
    if (e.name == name) return e;
  FAIL("no entry " << name);
  throw 0;
}

bool root() {
  return ::geteuid() == 0;
}

}  // namespace

TEST_CASE("upper to layer: whiteouts, opaque dirs, links, xattrs, order") {
  if (!root()) {
    WARN("needs root (device whiteouts, trusted.* xattrs)");
    return;
  }
  TempDir up;
  mkdir_at(up, "etc");
  put(up, "etc/hosts", "127.0.0.1 x\n");
  REQUIRE(::mknodat(up.fd.get(), "etc/gone", S_IFCHR | 0, makedev(0, 0)) == 0);
  put(up, "etc/zz-xgone", "", 0);  // the xattr form of a whiteout
  setx(up, "etc/zz-xgone", "user.overlay.whiteout", "y");
  mkdir_at(up, "etc/a-dir");  // a sibling directory: after the whiteouts
  mkdir_at(up, "opq");
  setx(up, "opq", "trusted.overlay.opaque", "y");
  put(up, "opq/new", "n");
  put(up, "f1", "linked data");
  REQUIRE(::linkat(up.fd.get(), "f1", up.fd.get(), "f2", 0) == 0);
  REQUIRE(::symlinkat("etc/hosts", up.fd.get(), "lnk") == 0);
  setx(up, "f1", "user.keep", "v1");
  setx(up, "f1", "trusted.overlay.overlay.nested", "esc");       // an image's own overlay xattr
  setx(up, "f1", "trusted.overlay.layerfs.origin", "12345678");  // ours: never written
  setx(up, "f1", "trusted.overlay.impure", "y");
  ::fchmodat(up.fd.get(), "f1", 04750, 0);

  commit::DiffStats st;
  auto es = read_tar(write_tar(up.fd.get(), {}, {}, &st));
  std::vector<std::string> want = {
      "etc/", "etc/.wh.gone", "etc/.wh.zz-xgone", "etc/a-dir/", "etc/hosts", "f1", "f2",
      "lnk",  "opq/",         "opq/.wh..wh..opq", "opq/new"};
  CHECK(names(es) == want);
  CHECK(st.whiteouts == 2);
  CHECK(st.opaque == 1);
  CHECK(find(es, "f1").data == "linked data");
  CHECK(find(es, "f1").perm == 04750);
  CHECK(find(es, "f2").hardlink == "f1");
  CHECK(find(es, "lnk").symlink == "etc/hosts");
  CHECK(find(es, "lnk").type == AE_IFLNK);
  auto x = find(es, "f1").xattrs;
  CHECK(x.size() == 2);
  CHECK(x["user.keep"] == "v1");
  CHECK(x["trusted.overlay.nested"] == "esc");
  CHECK(find(es, "opq/").xattrs.empty());
  CHECK(find(es, "etc/.wh.gone").type == AE_IFREG);

  SECTION("the layer unpacks to the same tree") {
    TempDir out;
    std::string blob;
    {
      TempDir bd;
      UniqueFd fd = sys::xopen_at(bd.fd.get(), "b", O_RDWR | O_CREAT, 0600, "b");
      commit::BlobWriter bw(fd.get(), oci::Compression::Zstd, -1, "t");
      write_tar(up.fd.get(), {}, {});
      std::string tar = write_tar(up.fd.get());
      bw.write(tar.data(), tar.size());
      bw.finish();
      CHECK(bw.diff_id() == Hasher::of(tar));
      blob = sys::xread_file(bd.fd.get(), "b", 1 << 20, "b");
      CHECK(bw.digest() == Hasher::of(blob));
      CHECK(bw.size() == blob.size());
      unpack::LayerSpec spec;
      spec.media_type = std::string(commit::layer_media_type(oci::Compression::Zstd));
      spec.digest = bw.digest();
      spec.size = static_cast<int64_t>(blob.size());
      spec.diff_id = bw.diff_id();
      spec.image = "t";
      StringSource src(blob, 4096);
      unpack::unpack_layer(out.fd.get(), spec, src, {});  // checks digest and diff_id
    }
    struct stat s;
    REQUIRE(::fstatat(out.fd.get(), "etc/gone", &s, AT_SYMLINK_NOFOLLOW) == 0);
    CHECK(S_ISCHR(s.st_mode));
    CHECK(s.st_rdev == makedev(0, 0));
    REQUIRE(::fstatat(out.fd.get(), "etc/zz-xgone", &s, AT_SYMLINK_NOFOLLOW) == 0);
    CHECK(S_ISCHR(s.st_mode));
    struct stat a, b;
    REQUIRE(::fstatat(out.fd.get(), "f1", &a, 0) == 0);
    REQUIRE(::fstatat(out.fd.get(), "f2", &b, 0) == 0);
    CHECK(a.st_ino == b.st_ino);
    CHECK((a.st_mode & 07777) == 04750);
    char v[16];
    std::string op = out / "opq";
    CHECK(::getxattr(op.c_str(), "trusted.overlay.opaque", v, sizeof v) == 1);
    std::string f1 = out / "f1";
    CHECK(::getxattr(f1.c_str(), "trusted.overlay.overlay.nested", v, sizeof v) == 3);
    CHECK(::getxattr(f1.c_str(), "trusted.overlay.layerfs.origin", v, sizeof v) < 0);
  }
}

TEST_CASE("deterministic, and --timestamp clamps mtimes") {
  TempDir up;
  mkdir_at(up, "d");
  put(up, "d/b", "b");
  put(up, "d/a", "a");
  put(up, "c", "c");
  struct timespec ts[2] = {{0, UTIME_OMIT}, {2'000'000'000, 5}};
  REQUIRE(::utimensat(up.fd.get(), "c", ts, AT_SYMLINK_NOFOLLOW) == 0);
  ts[1] = {1000, 0};
  REQUIRE(::utimensat(up.fd.get(), "d/a", ts, AT_SYMLINK_NOFOLLOW) == 0);
  CHECK(write_tar(up.fd.get()) == write_tar(up.fd.get()));
  commit::DiffOptions o;
  o.clamp_mtime = 1'500'000'000;
  auto es = read_tar(write_tar(up.fd.get(), {}, o));
  CHECK(names(es) == std::vector<std::string>{"c", "d/", "d/a", "d/b"});
  CHECK(find(es, "c").mtime == 1'500'000'000);
  CHECK(find(es, "d/a").mtime == 1000);  // earlier times stay
  for (const auto& e : es) CHECK(e.mtime <= 1'500'000'000);
}

TEST_CASE("a redirected directory is written whole, opaque") {
  if (!root()) {
    WARN("needs root (device whiteouts, trusted.* xattrs)");
    return;
  }
  TempDir low, up;
  mkdir_at(low, "old");
  put(low, "old/a", "lower a");
  put(low, "old/hidden", "x");
  mkdir_at(low, "old/sub");
  put(low, "old/sub/b", "lower b");
  mkdir_at(up, "new");
  setx(up, "new", "trusted.overlay.redirect", "/old");
  put(up, "new/c", "upper c");
  put(up, "new/a", "upper a");
  REQUIRE(::mknodat(up.fd.get(), "new/hidden", S_IFCHR | 0, makedev(0, 0)) == 0);
  REQUIRE(::mknodat(up.fd.get(), "old", S_IFCHR | 0, makedev(0, 0)) == 0);
  auto es = read_tar(write_tar(up.fd.get(), {{low.fd.get(), low.path}}));
  CHECK(names(es) == std::vector<std::string>{".wh.old", "new/", "new/.wh..wh..opq", "new/a",
                                              "new/c", "new/sub/", "new/sub/b"});
  CHECK(find(es, "new/a").data == "upper a");
  CHECK(find(es, "new/sub/b").data == "lower b");
  CHECK(find(es, "new/").xattrs.empty());  // the redirect itself is ours
}

TEST_CASE("data still below: lib/overlay partial files, kernel metacopy") {
  if (!root()) {
    WARN("needs root (device whiteouts, trusted.* xattrs)");
    return;
  }
  TempDir low, up;
  mkdir_at(low, "d");
  std::string data(3 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>('a' + i % 23);
  put(low, "d/big", data);
  put(low, "meta", "metacopy data");
  mkdir_at(up, "d");
  {
    // A partial copy-up: the lower's size, one block written by the container.
    UniqueFd fd = sys::xopen_at(up.fd.get(), "d/big", O_RDWR | O_CREAT, 0644, "big");
    REQUIRE(::ftruncate(fd.get(), static_cast<off_t>(data.size())) == 0);
    std::string block(4096, 'Z');
    REQUIRE(::pwrite(fd.get(), block.data(), block.size(), 1 << 20) == 4096);
    std::string marker = std::to_string(data.size()) + '\0' + low.path + '\0' + "d/big";
    REQUIRE(::fsetxattr(fd.get(), "trusted.overlay.layerfs.partial", marker.data(), marker.size(),
                        0) == 0);
  }
  put(up, "meta", "");
  REQUIRE(::truncate((up / "meta").c_str(), 13) == 0);
  setx(up, "meta", "trusted.overlay.metacopy", "");
  commit::DiffStats st;
  auto es = read_tar(write_tar(up.fd.get(), {{low.fd.get(), low.path}}, {}, &st));
  std::string want = data;
  std::fill(want.begin() + (1 << 20), want.begin() + (1 << 20) + 4096, 'Z');
  CHECK(find(es, "d/big").data == want);
  CHECK(find(es, "d/big").xattrs.empty());
  CHECK(find(es, "meta").data == "metacopy data");
  CHECK(st.from_lower == 2);

  SECTION("a partial file whose lower is not one of ours is an error") {
    TempDir other;
    REQUIRE_THROWS_AS(write_tar(up.fd.get(), {{other.fd.get(), other.path}}), Error);
  }
}

TEST_CASE("names a layer cannot hold are refused") {
  TempDir up;
  put(up, ".wh.sneaky", "x");
  REQUIRE_THROWS_WITH(write_tar(up.fd.get()), Catch::Contains("'.wh.'"));
}

TEST_CASE("compression names") {
  CHECK(commit::parse_compression("gzip") == oci::Compression::Gzip);
  CHECK(commit::parse_compression("zstd") == oci::Compression::Zstd);
  CHECK(commit::parse_compression("none") == oci::Compression::None);
  CHECK_THROWS_AS(commit::parse_compression("xz"), Error);
  CHECK(commit::layer_media_type(oci::Compression::Gzip) ==
        "application/vnd.oci.image.layer.v1.tar+gzip");
}

TEST_CASE("lower names of a copied-up multi-link file become links to the copy") {
  if (!root()) {
    WARN("needs root (trusted.* xattrs)");
    return;
  }
  TempDir low, up;
  mkdir_at(low, "bin");
  mkdir_at(low, "lib");
  put(low, "bin/perl", "old perl");
  REQUIRE(::linkat(low.fd.get(), "bin/perl", low.fd.get(), "bin/perl5", 0) == 0);
  REQUIRE(::linkat(low.fd.get(), "bin/perl", low.fd.get(), "bin/perl6", 0) == 0);
  REQUIRE(::linkat(low.fd.get(), "bin/perl", low.fd.get(), "lib/perl", 0) == 0);
  mkdir_at(up, "bin");
  put(up, "bin/perl", "new perl");
  setx(up, "bin/perl", "trusted.overlay.layerfs.origin", "12345678");
  REQUIRE(::mknodat(up.fd.get(), "bin/perl6", S_IFCHR | 0, makedev(0, 0)) == 0);
  auto es = read_tar(write_tar(up.fd.get(), {{low.fd.get(), low.path}}));
  // perl6 was removed; lib/ is not in the upper, so lib/perl cannot be linked
  // without writing a lower directory into the layer (it stays the old file).
  CHECK(names(es) == std::vector<std::string>{"bin/", "bin/.wh.perl6", "bin/perl", "bin/perl5"});
  CHECK(find(es, "bin/perl5").hardlink == "bin/perl");
  CHECK(find(es, "bin/perl").data == "new perl");

  SECTION("the link entry carries its target's mode and mtime, as GNU tar writes it") {
    REQUIRE(::fchmodat(up.fd.get(), "bin/perl", 0600, 0) == 0);
    struct timespec ts[2] = {{0, UTIME_OMIT}, {1'600'000'000, 0}};
    REQUIRE(::utimensat(up.fd.get(), "bin/perl", ts, AT_SYMLINK_NOFOLLOW) == 0);
    auto es3 = read_tar(write_tar(up.fd.get(), {{low.fd.get(), low.path}}));
    const auto& link = find(es3, "bin/perl5");
    CHECK(link.hardlink == "bin/perl");
    CHECK(link.perm == 0600);  // was 0: podman and Docker made the file mode 0000
    CHECK(link.mtime == 1'600'000'000);  // was 0: dated 1970
  }

  SECTION("a file without the origin marker is not a copy: no links") {
    REQUIRE(::lremovexattr((up / "bin/perl").c_str(), "trusted.overlay.layerfs.origin") == 0);
    auto es2 = read_tar(write_tar(up.fd.get(), {{low.fd.get(), low.path}}));
    CHECK(names(es2) == std::vector<std::string>{"bin/", "bin/.wh.perl6", "bin/perl"});
  }
}
