#include "overlay/overlay.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <string>

#include "format/overlay_format.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

using namespace layer;
using namespace layer::overlay;

namespace {

// Two lower layers, an upper and a work dir under one temporary directory.
struct Layers {
  std::string root;
  Layers() {
    char t[] = "/tmp/layerfs-ovl-XXXXXX";
    root = ::mkdtemp(t);
    for (const char* d : {"l1", "l2", "u", "w"}) mkdir(d);
  }
  ~Layers() {
    auto fd = sys::xopen_dir("/tmp");
    sys::xremove_tree(fd.get(), root.substr(5));
  }
  std::string p(const std::string& rel) const { return root + "/" + rel; }
  void mkdir(const std::string& rel, mode_t m = 0755) const {
    REQUIRE(::mkdir(p(rel).c_str(), m) == 0);
  }
  void write(const std::string& rel, const std::string& data) const {
    std::ofstream f(p(rel), std::ios::binary | std::ios::trunc);
    f << data;
    REQUIRE(f.good());
  }
  std::string read(const std::string& rel) const {
    std::ifstream f(p(rel), std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }
  void whiteout(const std::string& rel) const {
    REQUIRE(::mknod(p(rel).c_str(), S_IFCHR, makedev(0, 0)) == 0);
  }
  void xattr(const std::string& rel, const char* name, const std::string& v) const {
    REQUIRE(::lsetxattr(p(rel).c_str(), name, v.data(), v.size(), 0) == 0);
  }
  bool exists(const std::string& rel) const {
    struct stat st;
    return ::lstat(p(rel).c_str(), &st) == 0;
  }
  std::unique_ptr<Overlay> mount(bool writable = true, bool redirect_dir = false) const {
    Config o;
    o.lowerdirs = {p("l1"), p("l2")};
    o.redirect_dir = redirect_dir;
    if (writable) {
      o.upperdir = p("u");
      o.workdir = p("w");
    }
    return Overlay::open(o);
  }
};

// Looks a path up from the root, one component at a time; returns the node
// (referenced) or the errno.
Result<Node*> walk(Overlay& ov, const std::string& path) {
  Node* cur = ov.root();
  ov.ref(cur);
  size_t pos = 0;
  while (pos < path.size()) {
    size_t slash = path.find('/', pos);
    std::string comp =
        path.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos);
    pos = slash == std::string::npos ? path.size() : slash + 1;
    struct stat st;
    auto r = ov.lookup(cur, comp, &st);
    ov.unref(cur);
    if (!r) return r;
    cur = r.value();
  }
  return cur;
}

struct Held {
  Overlay& ov;
  Node* n;
  Held(Overlay& o, const std::string& path) : ov(o), n(nullptr) {
    auto r = walk(o, path);
    REQUIRE(r.ok());
    n = r.value();
  }
  ~Held() { ov.unref(n); }
  // Truncates the file and writes `data` through the overlay (a copy-up).
  void overwrite(const std::string& data) {
    auto f = ov.open_real(n, O_WRONLY | O_TRUNC);
    REQUIRE(f.ok());
    REQUIRE(::write(f->fd.get(), data.data(), data.size()) == static_cast<ssize_t>(data.size()));
  }
};

int lookup_errno(Overlay& ov, const std::string& path) {
  auto r = walk(ov, path);
  if (r) {
    ov.unref(r.value());
    return 0;
  }
  return r.error();
}

// n bytes cycling through 26 letters from `first`: every offset recognisable.
std::string letters(size_t n, char first) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(first + i % 26);
  return s;
}

// chmod 0600 (a metadata change: a metadata-only copy-up), then the data
// copy-up an open for writing makes, which copies a big lower file lazily.
bool chmod_600(Overlay& ov, Node* n, struct stat* st) {
  SetAttr a;
  a.valid = SetAttr::kMode;
  a.mode = 0600;
  Caller c;
  return ov.setattr(n, -1, a, c, st).ok() && ov.copy_up(n, CopyData::kAll).ok();
}

// A big lower file copied up lazily by chmod_600: its partial state.
std::shared_ptr<Partial> lazy_copy_up(Overlay& ov, Node* n) {
  struct stat st;
  REQUIRE(chmod_600(ov, n, &st));
  auto p = ov.lazy().partial_of(n);
  REQUIRE(p);
  return p;
}

std::set<std::string> names(Overlay& ov, const std::string& dir) {
  Held h(ov, dir);
  auto l = ov.list(h.n);
  REQUIRE(l.ok());
  std::set<std::string> out;
  for (const auto& e : l.value()->entries) {
    CHECK(out.insert(e.name).second);  // no duplicates
  }
  return out;
}

}  // namespace

TEST_CASE("lookup: top to bottom, whiteouts and opaque directories", "[root]") {
  // [root]: whiteouts are character devices, which needs CAP_MKNOD.
  Layers L;
  L.mkdir("l2/d");
  L.write("l2/d/low", "low");
  L.write("l2/d/both", "from l2");
  L.write("l2/d/gone", "x");
  L.write("l2/d/oci-gone", "x");
  L.write("l2/d/xgone", "x");
  L.mkdir("l2/d/opq");
  L.write("l2/d/opq/hidden", "h");
  L.mkdir("l2/d/ociopq");
  L.write("l2/d/ociopq/hidden", "h");
  L.mkdir("l1/d");
  L.write("l1/d/both", "from l1");
  L.whiteout("l1/d/gone");
  L.write("l1/d/.wh.oci-gone", "");
  L.write("l1/d/xgone", "");
  L.xattr("l1/d/xgone", "trusted.overlay.whiteout", "");
  L.xattr("l1/d", "trusted.overlay.opaque", "x");  // may hold xattr whiteouts
  // Unmarked: the kernel's readdir lists an empty file with the xattr, its
  // lookup finds nothing; so do we.
  L.mkdir("l2/e");
  L.mkdir("l1/e");
  L.write("l2/e/xkept", "x");
  L.write("l1/e/xkept", "");
  L.xattr("l1/e/xkept", "trusted.overlay.whiteout", "");
  L.mkdir("l1/d/opq");
  L.xattr("l1/d/opq", "trusted.overlay.opaque", "y");
  L.write("l1/d/opq/seen", "s");
  L.mkdir("l1/d/ociopq");
  L.write("l1/d/ociopq/.wh..wh..opq", "");
  auto ov = L.mount();

  // Table: what each name resolves to.
  CHECK(lookup_errno(*ov, "d/low") == 0);
  CHECK(lookup_errno(*ov, "d/both") == 0);
  CHECK(lookup_errno(*ov, "d/gone") == ENOENT);      // char 0:0 whiteout
  CHECK(lookup_errno(*ov, "d/oci-gone") == ENOENT);  // OCI .wh. file
  CHECK(lookup_errno(*ov, "d/xgone") == ENOENT);     // xattr whiteout
  CHECK(lookup_errno(*ov, "e/xkept") == ENOENT);
  CHECK(lookup_errno(*ov, "d/.wh.oci-gone") == ENOENT);
  CHECK(lookup_errno(*ov, "d/opq/hidden") == ENOENT);
  CHECK(lookup_errno(*ov, "d/opq/seen") == 0);
  CHECK(lookup_errno(*ov, "d/ociopq/hidden") == ENOENT);
  CHECK(lookup_errno(*ov, "d/ociopq/.wh..wh..opq") == ENOENT);
  CHECK(lookup_errno(*ov, "d/low/x") == ENOTDIR);
  CHECK(lookup_errno(*ov, "d/..") == ENOENT);

  CHECK(names(*ov, "d") == std::set<std::string>{"low", "both", "opq", "ociopq"});
  CHECK(names(*ov, "d/opq") == std::set<std::string>{"seen"});
  CHECK(names(*ov, "d/ociopq").empty());
  CHECK(names(*ov, "e") == std::set<std::string>{"xkept"});

  Held both(*ov, "d/both");
  auto f = ov->open_real(both.n, O_RDONLY);
  REQUIRE(f.ok());
  char buf[16] = {};
  REQUIRE(::read(f->fd.get(), buf, sizeof(buf)) == 7);
  CHECK(std::string(buf) == "from l1");
  CHECK(f->lower);
}

TEST_CASE("readdir: d_ino equals st_ino, merged link counts are real") {
  Layers L;
  L.mkdir("l2/d");
  L.mkdir("l2/d/a");
  L.mkdir("l1/d");
  L.mkdir("l1/d/b");
  L.write("l1/d/f", "f");
  auto ov = L.mount();
  Held d(*ov, "d");
  auto l = ov->list(d.n);
  REQUIRE(l.ok());
  REQUIRE(l.value()->entries.size() == 3);
  for (const auto& e : l.value()->entries) {
    struct stat st;
    auto r = ov->lookup(d.n, e.name, &st);
    REQUIRE(r.ok());
    CHECK(st.st_ino == e.ino);
    CHECK(r.value()->ino == e.ino);
    ov->unref(r.value());
  }
  struct stat st;
  REQUIRE(ov->getattr(d.n, -1, &st).ok());
  CHECK(st.st_nlink == 4);  // ".", "..", a, b
}

TEST_CASE("copy-up keeps data, holes, mode, owner, times, xattrs and st_ino", "[root]") {
  Layers L;
  L.mkdir("l1/d", 0750);
  L.write("l1/d/f", "");
  {
    auto fd = sys::open_at(AT_FDCWD, L.p("l1/d/f").c_str(), O_WRONLY);
    REQUIRE(fd.ok());
    REQUIRE(::pwrite(fd.value().get(), "head", 4, 0) == 4);
    REQUIRE(::pwrite(fd.value().get(), "tail", 4, 8 << 20) == 4);
  }
  REQUIRE(::chown(L.p("l1/d/f").c_str(), 1234, 5678) == 0);
  REQUIRE(::chmod(L.p("l1/d/f").c_str(), 0640) == 0);
  REQUIRE(::chown(L.p("l1/d").c_str(), 42, 43) == 0);
  L.xattr("l1/d/f", "user.keep", "me");
  L.xattr("l1/d/f", "trusted.overlay.overlay.esc", "e");
  struct timespec ts[2] = {{1000000000, 5}, {1100000000, 7}};
  REQUIRE(::utimensat(AT_FDCWD, L.p("l1/d/f").c_str(), ts, 0) == 0);
  struct stat lower_before;
  REQUIRE(::stat(L.p("l1/d/f").c_str(), &lower_before) == 0);

  auto ov = L.mount();
  Held f(*ov, "d/f");
  struct stat before;
  REQUIRE(ov->getattr(f.n, -1, &before).ok());
  auto of = ov->open_real(f.n, O_RDWR);
  REQUIRE(of.ok());
  CHECK_FALSE(of->lower);
  {
    auto p = ov->lazy().partial_of(f.n);  // 8 MiB: copied up lazily
    REQUIRE(p);
    auto lock = ov->lazy().begin_write(*p, 1, 1);
    REQUIRE(lock.ok());
    REQUIRE(::pwrite(of->fd.get(), "X", 1, 1) == 1);
  }
  of->fd.reset();
  if (auto p = ov->lazy().partial_of(f.n)) REQUIRE(ov->lazy().complete(*p).ok());
  CHECK_FALSE(ov->lazy().partial_of(f.n));

  struct stat up, dir;
  REQUIRE(::stat(L.p("u/d/f").c_str(), &up) == 0);
  REQUIRE(::stat(L.p("u/d").c_str(), &dir) == 0);
  CHECK(up.st_mode == (S_IFREG | 0640));
  CHECK(up.st_uid == 1234);
  CHECK(up.st_gid == 5678);
  CHECK(up.st_size == (8 << 20) + 4);
  CHECK(up.st_blocks < 1024);              // the 8 MiB hole stayed a hole
  CHECK(up.st_mtim.tv_sec != 1100000000);  // written after the copy-up
  CHECK(dir.st_uid == 42);
  CHECK((dir.st_mode & 07777) == 0750);
  CHECK(L.read("u/d/f").substr(0, 4) == "hXad");

  struct stat after;
  REQUIRE(ov->getattr(f.n, -1, &after).ok());
  CHECK(after.st_ino == before.st_ino);

  // xattrs: copied, the escaped one shown unescaped, the overlay's own hidden.
  char list[1024];
  auto n = ov->listxattr(f.n, list, sizeof(list));
  REQUIRE(n.ok());
  std::set<std::string> xs;
  for (size_t off = 0; off < n.value(); off += std::strlen(list + off) + 1) xs.insert(list + off);
  CHECK(xs == std::set<std::string>{"user.keep", "trusted.overlay.esc"});
  char v[8] = {};
  auto g = ov->getxattr(f.n, "trusted.overlay.esc", v, sizeof(v));
  REQUIRE(g.ok());
  CHECK(std::string(v, g.value()) == "e");
  CHECK(ov->getxattr(f.n, "trusted.overlay.layerfs.origin", v, sizeof(v)).error() == ENODATA);
  CHECK(ov->setxattr(f.n, "user.overlay.opaque", "y", 1, 0).error() == EPERM);
  CHECK(ov->setxattr(f.n, "trusted.overlay.mine", "m", 1, 0).error() == EPERM);
  CHECK(ov->removexattr(f.n, "trusted.overlay.esc").error() == EPERM);
  // The overlay's own are invisible, so absent, as the kernel says.
  CHECK(ov->removexattr(f.n, "trusted.overlay.mine").error() == ENODATA);
  CHECK(ov->removexattr(f.n, "user.overlay.opaque").error() == ENODATA);

  // A metadata change copies up with the times as they were.
  L.write("l1/d/g", "g");
  REQUIRE(::utimensat(AT_FDCWD, L.p("l1/d/g").c_str(), ts, 0) == 0);
  {
    Held g(*ov, "d/g");
    SetAttr a;
    a.valid = SetAttr::kUid;
    a.uid = 77;
    Caller c;
    struct stat gst;
    REQUIRE(ov->setattr(g.n, -1, a, c, &gst).ok());
    CHECK(gst.st_uid == 77);
    CHECK(gst.st_mtim.tv_sec == 1100000000);
    CHECK(gst.st_mtim.tv_nsec == 7);
    CHECK(gst.st_atim.tv_sec == 1000000000);
  }

  // The lower layer did not change.
  struct stat lower_after;
  REQUIRE(::stat(L.p("l1/d/f").c_str(), &lower_after) == 0);
  CHECK(lower_after.st_mtim.tv_nsec == lower_before.st_mtim.tv_nsec);
  CHECK(L.read("l1/d/f").substr(0, 4) == "head");
}

TEST_CASE("unlink and rmdir leave kernel whiteouts; rmdir checks the merged view", "[root]") {
  Layers L;
  L.mkdir("l2/d");
  L.write("l2/d/f", "f");
  L.mkdir("l2/e");
  L.write("l2/e/x", "x");
  auto ov = L.mount();
  Node* root = ov->root();
  CHECK(ov->rmdir(root, "e").error() == ENOTEMPTY);
  CHECK(ov->unlink(root, "d").error() == EISDIR);
  CHECK(ov->unlink(root, "nope").error() == ENOENT);
  {
    Held e(*ov, "e");
    REQUIRE(ov->unlink(e.n, "x").ok());
  }
  REQUIRE(ov->rmdir(root, "e").ok());
  struct stat st;
  REQUIRE(::lstat(L.p("u/e").c_str(), &st) == 0);
  CHECK(S_ISCHR(st.st_mode));
  CHECK(st.st_rdev == makedev(0, 0));
  CHECK(lookup_errno(*ov, "e") == ENOENT);

  // A directory made where a whiteout is becomes opaque.
  Caller c;
  REQUIRE(ov->mkdir(root, "e", 0755, c, &st).ok());
  ov->unref(walk(*ov, "e").value());
  ov->unref(walk(*ov, "e").value());
  char v[2] = {};
  CHECK(::getxattr(L.p("u/e").c_str(), "trusted.overlay.opaque", v, sizeof(v)) == 1);
  CHECK(names(*ov, "e").empty());
  CHECK(names(*ov, "") == std::set<std::string>{"d", "e"});
}

TEST_CASE("renaming a lower directory writes a redirect", "[root]") {
  Layers L;
  L.mkdir("l2/a");
  L.mkdir("l2/a/sub");
  L.write("l2/a/sub/f", "data");
  L.write("l2/a/g", "g");
  ::symlink("/etc/passwd", L.p("l2/a/abs").c_str());
  auto ov = L.mount(true, /*redirect_dir=*/true);
  uint64_t ino_before;
  {
    Held f(*ov, "a/sub/f");
    ino_before = f.n->ino;
  }
  Node* root = ov->root();
  REQUIRE(ov->rename(root, "a", root, "b", 0).ok());
  CHECK(lookup_errno(*ov, "a") == ENOENT);
  CHECK(names(*ov, "b") == std::set<std::string>{"sub", "g", "abs"});
  Held f(*ov, "b/sub/f");
  CHECK(f.n->ino == ino_before);
  // Only the directory itself is in the upper, pointing at its old name.
  struct stat st;
  CHECK(::lstat(L.p("u/b/sub").c_str(), &st) != 0);
  char v[16];
  ssize_t len = ::getxattr(L.p("u/b").c_str(), "trusted.overlay.redirect", v, sizeof(v));
  CHECK(std::string(v, len > 0 ? static_cast<size_t>(len) : 0) == "a");
  REQUIRE(::lstat(L.p("u/a").c_str(), &st) == 0);
  CHECK(S_ISCHR(st.st_mode));
  // NOREPLACE / EXCHANGE
  Caller c;
  auto x = ov->mkdir(root, "x", 0755, c, &st);
  REQUIRE(x.ok());
  ov->unref(x.value());
  CHECK(ov->rename(root, "b", root, "x", RENAME_NOREPLACE).error() == EEXIST);
  REQUIRE(ov->rename(root, "b", root, "x", RENAME_EXCHANGE).ok());
  CHECK(names(*ov, "x") == std::set<std::string>{"sub", "g", "abs"});
  CHECK(names(*ov, "b").empty());
}

TEST_CASE("a copied-up hard link keeps its other names", "[root]") {
  Layers L;
  L.write("l1/one", "same");
  REQUIRE(::link(L.p("l1/one").c_str(), L.p("l1/two").c_str()) == 0);
  auto ov = L.mount();
  {
    Held one(*ov, "one");
    one.overwrite("new!");
  }
  Held two(*ov, "two");
  auto f = ov->open_real(two.n, O_RDONLY);
  REQUIRE(f.ok());
  char buf[8] = {};
  REQUIRE(::read(f->fd.get(), buf, sizeof(buf)) == 4);
  CHECK(std::string(buf) == "new!");
  struct stat a, b;
  Held one(*ov, "one");
  REQUIRE(ov->getattr(one.n, -1, &a).ok());
  REQUIRE(ov->getattr(two.n, -1, &b).ok());
  CHECK(a.st_ino == b.st_ino);
  CHECK(a.st_nlink == 2);
  CHECK(b.st_nlink == 2);
  CHECK(L.read("l1/two") == "same");
}

TEST_CASE("the hard-link index is the kernel's: workdir/index/<hex origin handle>", "[root]") {
  Layers L;
  L.write("l1/one", "same");
  REQUIRE(::link(L.p("l1/one").c_str(), L.p("l1/two").c_str()) == 0);
  REQUIRE(::link(L.p("l1/one").c_str(), L.p("l1/three").c_str()) == 0);
  auto handle = format::origin_handle(AT_FDCWD, L.p("l1/one").c_str());
  REQUIRE(handle.ok());
  const std::string& h = handle.value();
  REQUIRE(h.size() > 21);
  CHECK(h[0] == 0);                                       // version
  CHECK(static_cast<unsigned char>(h[1]) == 0xfb);        // magic
  CHECK(static_cast<unsigned char>(h[2]) == h.size());    // length
  CHECK(h[3] == (__BYTE_ORDER == __BIG_ENDIAN ? 1 : 0));  // flags
  std::string entry = "w/index/" + format::index_name(h);
  CHECK(format::index_name(std::string("\x00\xfb\x1d", 3)) == "00fb1d");
  auto ov = L.mount();
  {
    Held one(*ov, "one");
    one.overwrite("new!");
  }
  struct stat u, e;
  REQUIRE(::lstat(L.p("u/one").c_str(), &u) == 0);
  REQUIRE(::lstat(L.p(entry).c_str(), &e) == 0);
  CHECK(u.st_ino == e.st_ino);  // the entry is a link to the copy
  CHECK(u.st_nlink == 2);
  char buf[64];
  ssize_t n = ::lgetxattr(L.p("u/one").c_str(), "trusted.overlay.origin", buf, sizeof(buf));
  CHECK(std::string(buf, n > 0 ? static_cast<size_t>(n) : 0) == h);
  n = ::lgetxattr(L.p("u/one").c_str(), "trusted.overlay.nlink", buf, sizeof(buf));
  CHECK(std::string(buf, n > 0 ? static_cast<size_t>(n) : 0) == "U+1");  // 3 names, 2 links
  {
    UniqueFd l1(::open(L.p("l1").c_str(), O_RDONLY | O_CLOEXEC));
    auto o = format::open_origin(h, l1.get());
    REQUIRE(o.ok());
    struct stat lst, ost;
    REQUIRE(::lstat(L.p("l1/one").c_str(), &lst) == 0);
    REQUIRE(::fstat(o.value().get(), &ost) == 0);
    CHECK(lst.st_ino == ost.st_ino);
  }
  // Removing a lower name links it up first, then counts one name less.
  Held two_h(*ov, "two");
  REQUIRE(ov->unlink(ov->root(), "three").ok());
  struct stat two;
  REQUIRE(ov->getattr(two_h.n, -1, &two).ok());
  CHECK(two.st_nlink == 2);
  REQUIRE(::lstat(L.p("u/one").c_str(), &u) == 0);
  n = ::lgetxattr(L.p("u/one").c_str(), "trusted.overlay.nlink", buf, sizeof(buf));
  CHECK(std::string(buf, n > 0 ? static_cast<size_t>(n) : 0) == "U+0");
}

TEST_CASE("the kernel's nlink xattr values") {
  auto v = format::parse_nlink("U+1");
  REQUIRE(v.has_value());
  CHECK((!v->lower && v->diff == 1));
  v = format::parse_nlink("L-2");
  REQUIRE(v.has_value());
  CHECK((v->lower && v->diff == -2));
  for (const char* bad : {"", "U", "U+", "X+1", "U1", "U+1x", "U+99999999999"})
    CHECK_FALSE(format::parse_nlink(bad).has_value());
  CHECK(format::nlink_value(-1) == "U-1");
  CHECK(format::nlink_value(0) == "U+0");
}

// What a program can observe of a directory in the upper layer: its names
// and its change times.
std::string upper_state(const Layers& L, const std::string& rel) {
  struct stat st;
  REQUIRE(::lstat(L.p(rel).c_str(), &st) == 0);
  std::string out = std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) +
                    " " + std::to_string(st.st_ctim.tv_sec) + "." +
                    std::to_string(st.st_ctim.tv_nsec) + ":";
  std::set<std::string> names;
  DIR* d = ::opendir(L.p(rel).c_str());
  REQUIRE(d != nullptr);
  while (struct dirent* e = ::readdir(d)) names.insert(e->d_name);
  ::closedir(d);
  for (const auto& n : names) out += " " + n;
  return out;
}

TEST_CASE("reading another name of a copied-up hard link writes nothing to the upper", "[root]") {
  Layers L;
  L.mkdir("l1/d");
  L.mkdir("l1/e");
  L.write("l1/d/one", "same");
  REQUIRE(::link(L.p("l1/d/one").c_str(), L.p("l1/d/two").c_str()) == 0);
  REQUIRE(::link(L.p("l1/d/one").c_str(), L.p("l1/e/three").c_str()) == 0);
  {
    auto ov = L.mount();
    Held one(*ov, "d/one");
    one.overwrite("new!");
    REQUIRE(ov->setxattr(one.n, "user.k", "v", 1, 0).ok());
  }
  L.mkdir("u/e");  // as a copy-up of e would leave it, with e's times
  struct stat est;
  REQUIRE(::lstat(L.p("l1/e").c_str(), &est) == 0);
  struct timespec ts[2] = {est.st_atim, est.st_mtim};
  REQUIRE(::utimensat(AT_FDCWD, L.p("u/e").c_str(), ts, 0) == 0);
  // Each round on a fresh mount (the lookups find no node yet) and again on
  // the same one (the nodes are known).
  for (int round = 0; round < 2; ++round) {
    auto ov = L.mount();
    for (int again = 0; again < 2; ++again) {
      std::string before =
          upper_state(L, "u") + "|" + upper_state(L, "u/d") + "|" + upper_state(L, "u/e");
      for (const char* name : {"d/two", "e/three"}) {
        INFO(name);
        Held h(*ov, name);
        struct stat st;
        REQUIRE(ov->getattr(h.n, -1, &st).ok());
        CHECK(st.st_nlink == 3);
        CHECK(st.st_size == 4);
        auto f = ov->open_real(h.n, O_RDONLY);
        REQUIRE(f.ok());
        char buf[8] = {};
        REQUIRE(::read(f->fd.get(), buf, sizeof(buf)) == 4);
        CHECK(std::string(buf) == "new!");
        struct stat fst;
        REQUIRE(ov->getattr(h.n, f->fd.get(), &fst).ok());
        CHECK(fst.st_nlink == 3);
        CHECK(fst.st_ino == st.st_ino);
        char v[4] = {};
        auto g = ov->getxattr(h.n, "user.k", v, sizeof(v));
        REQUIRE(g.ok());
        CHECK(std::string(v, g.value()) == "v");
        REQUIRE(ov->listxattr(h.n, nullptr, 0).ok());
        auto l = ov->list(ov->root());
        REQUIRE(l.ok());
      }
      CHECK(upper_state(L, "u") + "|" + upper_state(L, "u/d") + "|" + upper_state(L, "u/e") ==
            before);
      CHECK_FALSE(L.exists("u/d/two"));
      CHECK_FALSE(L.exists("u/e/three"));
    }
  }
  // A change does link the name to the copy.
  auto ov = L.mount();
  {
    Held three(*ov, "e/three");
    auto f = ov->open_real(three.n, O_WRONLY | O_APPEND);
    REQUIRE(f.ok());
    REQUIRE(::write(f->fd.get(), "+", 1) == 1);
  }
  struct stat a, b;
  REQUIRE(::lstat(L.p("u/d/one").c_str(), &a) == 0);
  REQUIRE(::lstat(L.p("u/e/three").c_str(), &b) == 0);
  CHECK(a.st_ino == b.st_ino);
  CHECK(L.read("u/d/one") == "new!+");
  Held two(*ov, "d/two");
  struct stat st;
  REQUIRE(ov->getattr(two.n, -1, &st).ok());
  CHECK(st.st_nlink == 3);
  CHECK(st.st_size == 5);
  CHECK(L.read("l1/d/two") == "same");
}

TEST_CASE("xattr_permissions: owners and modes kept in the override_stat xattr", "[root]") {
  for (int level : {1, 2}) {
    const char* xname =
        level == 1 ? "security.fuseoverlayfs.override_stat" : "user.fuseoverlayfs.override_stat";
    DYNAMIC_SECTION("xattr_permissions=" << level) {
      Layers L;
      L.mkdir("l1/d");
      L.write("l1/d/f", "lower");
      L.write("l1/d/marked", "m");
      L.xattr("l1/d/marked", xname, "4:5:4750");
      Config o;
      o.lowerdirs = {L.p("l1")};
      o.upperdir = L.p("u");
      o.workdir = L.p("w");
      o.xattr_permissions = level == 1 ? XattrPermissions::kSecurity : XattrPermissions::kUser;
      auto ov = Overlay::open(o);
      auto real = [&](const std::string& rel) {
        struct stat st;
        REQUIRE(::lstat(L.p(rel).c_str(), &st) == 0);
        return st;
      };
      auto xattr = [&](const std::string& rel) {
        char buf[64];
        ssize_t n = ::lgetxattr(L.p(rel).c_str(), xname, buf, sizeof buf);
        return n < 0 ? std::string("none") : std::string(buf, static_cast<size_t>(n));
      };
      struct stat st;
      // A lower file's override is read.
      {
        Held m(*ov, "d/marked");
        REQUIRE(ov->getattr(m.n, -1, &st).ok());
        CHECK(st.st_uid == 4);
        CHECK(st.st_gid == 5);
        CHECK((st.st_mode & 07777) == 04750);
        CHECK(S_ISREG(st.st_mode));
        // Hidden from the programs on the mount, and not settable by them.
        char buf[64];
        CHECK(ov->getxattr(m.n, xname, buf, sizeof buf).error() == ENODATA);
        CHECK(ov->setxattr(m.n, xname, "0:0:7777", 8, 0).error() == EPERM);
      }
      // chown and chmod write the xattr; the real inode keeps root's owner
      // and its own mode.
      Held f(*ov, "d/f");
      SetAttr a;
      a.valid = SetAttr::kUid | SetAttr::kGid;
      a.uid = 1234;
      a.gid = 5678;
      Caller c;
      REQUIRE(ov->setattr(f.n, -1, a, c, &st).ok());
      CHECK(st.st_uid == 1234);
      CHECK(st.st_gid == 5678);
      CHECK((st.st_mode & 07777) == (real("l1/d/f").st_mode & 07777));
      CHECK(real("u/d/f").st_uid == 0);
      CHECK(xattr("u/d/f") == "1234:5678:" + [&] {
        char m[8];
        std::snprintf(m, sizeof m, "%o", real("l1/d/f").st_mode & 07777);
        return std::string(m);
      }());
      a.valid = SetAttr::kMode;
      a.mode = 04711;
      REQUIRE(ov->setattr(f.n, -1, a, c, &st).ok());
      CHECK((st.st_mode & 07777) == 04711);
      CHECK(st.st_uid == 1234);
      CHECK((real("u/d/f").st_mode & 07777) != 04711);
      CHECK(xattr("u/d/f") == "1234:5678:4711");
      // chown drops set-user-ID, as chown(2) does.
      a.valid = SetAttr::kUid;
      a.uid = 99;
      REQUIRE(ov->setattr(f.n, -1, a, c, &st).ok());
      CHECK((st.st_mode & 07777) == 0711);
      CHECK(xattr("u/d/f") == "99:5678:711");
      // New files and directories get the caller's owner in the xattr.
      Held d(*ov, "d");
      c.uid = 1000;
      c.gid = 1001;
      c.umask = 022;
      UniqueFd fd;
      auto nf = ov->create(d.n, "new", 0666, O_WRONLY, c, &st, &fd);
      REQUIRE(nf.ok());
      ov->unref(nf.value());
      CHECK(st.st_uid == 1000);
      CHECK(st.st_gid == 1001);
      CHECK((st.st_mode & 07777) == 0644);
      CHECK(real("u/d/new").st_uid == 0);
      CHECK(xattr("u/d/new") == "1000:1001:644");
      auto nd = ov->mkdir(d.n, "sub", 0777, c, &st);
      REQUIRE(nd.ok());
      ov->unref(nd.value());
      CHECK(st.st_uid == 1000);
      CHECK((st.st_mode & 07777) == 0755);
      CHECK(xattr("u/d/sub") == "1000:1001:755");
      // Symlinks keep real owners (no xattr on them).
      auto sl = ov->symlink(d.n, "link", "f", c, &st);
      REQUIRE(sl.ok());
      ov->unref(sl.value());
      CHECK(st.st_uid == 1000);
      CHECK(xattr("u/d/link") == "none");
    }
  }
}

TEST_CASE("O_TMPFILE: a file with no name until link() gives it one", "[root]") {
  Layers L;
  L.mkdir("l1/d");
  L.write("l1/d/old", "o");
  auto ov = L.mount();
  Held d(*ov, "d");
  Caller c;
  c.umask = 022;
  struct stat st;
  UniqueFd fd;
  auto t = ov->tmpfile(d.n, 0666, O_RDWR, c, &st, &fd);
  REQUIRE(t.ok());
  Node* tn = t.value();  // referenced; the overlay frees it at the end if a check fails
  CHECK(S_ISREG(st.st_mode));
  CHECK((st.st_mode & 07777) == 0644);
  CHECK(st.st_nlink == 0);
  REQUIRE(::write(fd.get(), "tmp", 3) == 3);
  CHECK(names(*ov, "d") == std::set<std::string>{"old"});
  CHECK(L.exists("u/d"));  // its directory was copied up, nothing else
  CHECK_FALSE(L.exists("u/d/old"));
  struct stat lst;
  auto named = ov->link(tn, d.n, "named", &lst);
  REQUIRE(named.ok());
  ov->unref(named.value());
  CHECK(L.read("u/d/named") == "tmp");
  REQUIRE(ov->getattr(tn, -1, &st).ok());
  CHECK(st.st_nlink == 1);
  CHECK(st.st_ino == lst.st_ino);
  ov->unref(tn);
  // O_EXCL: never linkable.
  UniqueFd fd2;
  auto t2 = ov->tmpfile(d.n, 0600, O_RDWR | O_EXCL, c, &st, &fd2);
  REQUIRE(t2.ok());
  auto no = ov->link(t2.value(), d.n, "never", &lst);
  CHECK_FALSE(no.ok());
  ov->unref(t2.value());
  CHECK_FALSE(L.exists("u/d/never"));
}

TEST_CASE("nothing escapes the layers through symlinks") {
  Layers L;
  ::symlink("/etc", L.p("l1/etc").c_str());
  ::symlink("../../..", L.p("l1/up").c_str());
  auto ov = L.mount();
  CHECK(lookup_errno(*ov, "etc/passwd") == ENOTDIR);
  CHECK(lookup_errno(*ov, "up/tmp") == ENOTDIR);
  Held e(*ov, "etc");
  auto t = ov->readlink(e.n);
  REQUIRE(t.ok());
  CHECK(t.value() == "/etc");
  CHECK(ov->open_real(e.n, O_RDONLY).error() == ELOOP);
  Caller c;
  struct stat st;
  CHECK(ov->mkdir(e.n, "x", 0755, c, &st).error() == ENOTDIR);
}

TEST_CASE("read-only overlay refuses changes") {
  Layers L;
  L.write("l1/f", "f");
  auto ov = L.mount(false);
  CHECK_FALSE(ov->writable());
  Held f(*ov, "f");
  CHECK(ov->open_real(f.n, O_RDWR).error() == EROFS);
  CHECK(ov->unlink(ov->root(), "f").error() == EROFS);
  CHECK(ov->open_real(f.n, O_RDONLY).ok());
}

TEST_CASE("open refuses unusable directories by name") {
  Layers L;
  Config o;
  o.lowerdirs = {L.p("missing")};
  try {
    Overlay::open(o);
    FAIL("opened");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("missing") != std::string::npos);
  }
  Config same;
  same.lowerdirs = {L.p("l1")};
  same.upperdir = L.p("u");
  same.workdir = L.p("u");
  CHECK_THROWS_AS(Overlay::open(same), Error);
}

TEST_CASE("a metadata change copies no data; a write then copies it", "[root]") {
  Layers L;
  std::string big = letters(3 << 20, 'm');
  L.write("l1/big", big);
  auto ov = L.mount();
  Held f(*ov, "big");
  SetAttr a;
  a.valid = SetAttr::kMode;
  a.mode = 0640;
  Caller c;
  struct stat st;
  REQUIRE(ov->setattr(f.n, -1, a, c, &st).ok());
  CHECK((st.st_mode & 07777) == 0640);
  CHECK(st.st_size == static_cast<off_t>(big.size()));
  CHECK(f.n->layer.load() == kUpper);
  CHECK(f.n->data_layer.load() == 1);
  CHECK_FALSE(ov->lazy().partial_of(f.n));
  struct stat ust;
  REQUIRE(::stat(L.p("u/big").c_str(), &ust) == 0);
  CHECK(ust.st_blocks <= 8);
  CHECK(::getxattr(L.p("u/big").c_str(), "trusted.overlay.metacopy", nullptr, 0) == 0);
  auto r = ov->open_real(f.n, O_RDONLY);
  REQUIRE(r.ok());
  std::string got(big.size(), '?');
  REQUIRE(::pread(r->fd.get(), got.data(), got.size(), 0) == static_cast<ssize_t>(big.size()));
  CHECK(got == big);
  REQUIRE(ov->copy_up(f.n, CopyData::kAll).ok());
  CHECK(f.n->data_layer.load() == 0);
  CHECK(::getxattr(L.p("u/big").c_str(), "trusted.overlay.metacopy", nullptr, 0) < 0);
  CHECK(ov->lazy().partial_of(f.n));  // big: the data follows lazily
}

TEST_CASE("big files are copied up lazily, and completed after a crash", "[root]") {
  Layers L;
  std::string big = letters(3 << 20, 'a');
  L.write("l1/big", big);
  {
    auto ov = L.mount();
    Held f(*ov, "big");
    // A metadata change copies no data.
    struct stat st;
    REQUIRE(chmod_600(*ov, f.n, &st));
    CHECK(st.st_size == static_cast<off_t>(big.size()));
    CHECK(st.st_nlink == 1);
    auto p = ov->lazy().partial_of(f.n);
    REQUIRE(p);
    // Reads see the lower bytes; a write lands in the upper file only.
    auto lock = ov->lazy().begin_write(*p, (1 << 20) + 10, 5);
    REQUIRE(lock.ok());
    auto fd = ov->open_real(f.n, O_RDWR);
    REQUIRE(fd.ok());
    REQUIRE(::pwrite(fd->fd.get(), "HELLO", 5, (1 << 20) + 10) == 5);
    lock.value().unlock();
    std::string want = big;
    want.replace((1 << 20) + 10, 5, "HELLO");
    std::string got(big.size(), '?');
    auto r = ov->lazy().read(*p, got.data(), got.size(), 0);
    REQUIRE(r.ok());
    CHECK(r.value() == big.size());
    CHECK(got == want);
  }
  // The overlay is gone: the upper file is whole and plain.
  std::string want = big;
  want.replace((1 << 20) + 10, 5, "HELLO");
  CHECK(L.read("u/big") == want);
  char v[64];
  CHECK(::getxattr(L.p("u/big").c_str(), "trusted.overlay.layerfs.partial", v, sizeof(v)) < 0);
  CHECK(L.read("l1/big") == big);

  // Crash in the middle: a child copies a second big file up lazily and dies
  // without cleaning up; the next open completes it.
  L.write("l1/big2", big);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    auto ov = L.mount().release();  // never destroyed: like kill -9
    auto n = walk(*ov, "big2");
    if (!n) ::_exit(1);
    SetAttr a;
    a.valid = SetAttr::kMtime;
    a.mtime = {1, 0};
    Caller c;
    struct stat st;
    ::_exit(ov->setattr(n.value(), -1, a, c, &st).ok() && ov->copy_up(n.value()).ok() ? 0 : 2);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  struct stat st;
  REQUIRE(::stat(L.p("u/big2").c_str(), &st) == 0);
  CHECK(st.st_size == static_cast<off_t>(big.size()));
  {
    auto ov = L.mount();
    CHECK(L.read("u/big2") == big);
    CHECK(::getxattr(L.p("u/big2").c_str(), "trusted.overlay.layerfs.partial", v, sizeof(v)) < 0);
    Held f(*ov, "big2");
    CHECK_FALSE(ov->lazy().partial_of(f.n));
    struct stat ost;
    REQUIRE(ov->getattr(f.n, -1, &ost).ok());
    CHECK(ost.st_mtim.tv_sec == 1);
    CHECK(ost.st_nlink == 1);
  }
}

TEST_CASE("a filled lazy copy-up stays recoverable until complete; O_TRUNC lowers its marker", "[root]") {
  Layers L;
  std::string big = letters(3 << 20, 'A');
  L.write("l1/big", big);
  L.write("l1/trunc", big);
  // A child fills one file (the open of a passthrough daemon does), loses
  // part of the filled data as a machine crash before the fsync would, and
  // dies; it also truncates the other with O_TRUNC and writes past 2 MiB.
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    auto ov = L.mount().release();  // never destroyed: like kill -9
    auto copy_up = [&](const char* name) -> Node* {
      auto n = walk(*ov, name);
      if (!n) ::_exit(1);
      struct stat st;
      if (!chmod_600(*ov, n.value(), &st)) ::_exit(2);
      return n.value();
    };
    Node* n = copy_up("big");
    auto p = ov->lazy().partial_of(n);
    if (!p || !ov->lazy().unfilled_of(n)) ::_exit(3);
    {
      auto lock = ov->lazy().begin_write(*p, 10, 5);
      auto fd = ov->open_real(n, O_RDWR);
      if (!lock.ok() || !fd.ok() || ::pwrite(fd->fd.get(), "HELLO", 5, 10) != 5) ::_exit(4);
    }
    if (!ov->lazy().fill(*p).ok() || !p->filled.load() || p->done.load()) ::_exit(5);
    if (ov->lazy().unfilled_of(n) || !ov->lazy().partial_of(n)) ::_exit(6);
    std::string got(big.size(), '?');
    auto r = ov->lazy().read(*p, got.data(), got.size(), 0);
    if (!r.ok() || got.compare(20, std::string::npos, big, 20) != 0) ::_exit(7);
    if (::fallocate(p->upper.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 2 << 20, 8192) != 0)
      ::_exit(8);
    Node* t = copy_up("trunc");
    auto fd = ov->open_real(t, O_WRONLY | O_TRUNC);
    if (!fd.ok() || ::pwrite(fd->fd.get(), "xyz", 3, 2 << 20) != 3) ::_exit(9);
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  char v[256];
  ssize_t len = ::getxattr(L.p("u/trunc").c_str(), "trusted.overlay.layerfs.partial", v, sizeof(v));
  REQUIRE(len > 2);
  CHECK(std::string(v, 2) == std::string("0\0", 2));
  CHECK(::getxattr(L.p("u/big").c_str(), "trusted.overlay.layerfs.partial", v, sizeof(v)) > 0);
  {
    auto ov = L.mount();  // recovery
    std::string want = big;
    want.replace(10, 5, "HELLO");
    CHECK(L.read("u/big") == want);
    CHECK(L.read("u/trunc") == std::string(2 << 20, '\0') + "xyz");
    CHECK(::getxattr(L.p("u/big").c_str(), "trusted.overlay.layerfs.partial", v, sizeof(v)) < 0);
    CHECK(::getxattr(L.p("u/trunc").c_str(), "trusted.overlay.layerfs.partial", v, sizeof(v)) < 0);
  }
}


TEST_CASE("the background thread completes a filled lazy copy-up after its last writer closes", "[root]") {
  Layers L;
  L.write("l1/big", letters(3 << 20, 'w'));
  auto ov = L.mount();
  Held f(*ov, "big");
  auto p = lazy_copy_up(*ov, f.n);
  ov->lazy().add_writer(*p);
  ov->start_background();
  REQUIRE(ov->lazy().fill(*p).ok());
  char v[256];
  auto marked = [&] {
    return ::getxattr(L.p("u/big").c_str(), "trusted.overlay.layerfs.partial", v, sizeof(v)) > 0;
  };
  // Without the writer the thread would complete it at once.
  ::usleep(800'000);
  CHECK_FALSE(p->done.load());
  CHECK(marked());
  ov->lazy().drop_writer(p);
  for (int i = 0; i < 200 && !p->done.load(); ++i) ::usleep(50'000);
  CHECK(p->done.load());
  CHECK_FALSE(marked());
  CHECK(L.read("u/big") == letters(3 << 20, 'w'));
}


TEST_CASE("reading through the overlay leaves the lower layers' atimes alone") {
  Layers L;
  L.mkdir("l1/d");
  L.write("l1/d/f", "data");
  struct timespec old[2] = {{946684800, 0}, {UTIME_OMIT, 0}};  // atime 2000-01-01
  for (const char* p : {"l1/d", "l1/d/f"})
    REQUIRE(::utimensat(AT_FDCWD, L.p(p).c_str(), old, 0) == 0);
  {
    auto ov = L.mount();
    CHECK(names(*ov, "d") == std::set<std::string>{"f"});
    Held f(*ov, "d/f");
    auto fd = ov->open_real(f.n, O_RDONLY);
    REQUIRE(fd.ok());
    char buf[8];
    CHECK(::read(fd->fd.get(), buf, sizeof(buf)) == 4);
  }
  for (const char* p : {"l1/d", "l1/d/f"}) {
    struct stat st;
    REQUIRE(::stat(L.p(p).c_str(), &st) == 0);
    INFO(p);
    CHECK(st.st_atim.tv_sec == 946684800);  // relatime would have updated it
  }
}
