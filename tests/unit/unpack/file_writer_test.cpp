// TreeWriter's regular files with content objects (Options::objects_dir):
// the inline threshold, staging, dedup within a layer and against objects
// present, sparse files, rootless markers.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>

#include "store/layout.hpp"
#include "tar_builder.hpp"
#include "unpack/unpacker.hpp"
#include "util/sys.hpp"

using namespace layer;
using namespace layer::testing;
using layer::store::Layout;

namespace {

struct Dirs {
  TempDir t;
  UniqueFd tree, objects, staging;
  Dirs() {
    for (const char* d : {"tree", "objects", "staging"}) REQUIRE(::mkdirat(t.fd.get(), d, 0755) == 0);
    tree = sys::xopen_dir(t / "tree");
    objects = sys::xopen_dir(t / "objects");
    staging = sys::xopen_dir(t / "staging");
  }
  unpack::Stats unpack(const std::string& tar, bool rootless = false) {
    Blob b = make_blob(tar, Filter::None);
    StringSource src(b.bytes);
    unpack::Options opt;
    opt.objects_dir = objects.get();
    opt.object_staging = staging.get();
    opt.rootless = rootless || ::geteuid() != 0;
    return unpack::unpack_layer(tree.get(), b.spec, src, opt);
  }
  std::string xattr(const std::string& rel, const char* name) {
    char buf[256];
    ssize_t n = ::lgetxattr((t / ("tree/" + rel)).c_str(), name, buf, sizeof buf);
    return n < 0 ? "<none>" : std::string(buf, static_cast<size_t>(n));
  }
  std::string staged(const Digest& d) {
    return sys::xread_file(staging.get(), d.hex, 64 << 20, d.hex);
  }
  bool is_staged(const Digest& d) { return sys::exists_at(staging.get(), d.hex); }
};

const char* redirect_name() {
  return ::geteuid() == 0 ? "trusted.overlay.redirect" : "user.overlay.redirect";
}

}  // namespace

TEST_CASE("files over the inline threshold become metadata-only entries naming their object") {
  Dirs d;
  const std::string at(unpack::kInlineMax, 'a');
  const std::string over(unpack::kInlineMax + 1, 'b');
  unpack::Stats st = d.unpack(TarBuilder()
                                  .file("at", at)
                                  .file("over", over, {.mode = 0700, .mtime = 1234})
                                  .file("same", over)
                                  .finish());
  Digest od = Hasher::of(over);
  CHECK(d.xattr("at", redirect_name()) == "<none>");
  CHECK(sys::xread_file(d.tree.get(), "at", 1 << 20, "at") == at);
  CHECK(d.xattr("over", redirect_name()) == Layout::object_redirect(od));
  CHECK(d.xattr("same", redirect_name()) == Layout::object_redirect(od));
  struct stat s;
  REQUIRE(::fstatat(d.tree.get(), "over", &s, AT_SYMLINK_NOFOLLOW) == 0);
  CHECK(s.st_size == static_cast<off_t>(over.size()));
  CHECK((s.st_mode & 07777) == 0700);
  CHECK(s.st_mtim.tv_sec == 1234);
  CHECK(d.staged(od) == over);
  CHECK(st.objects == std::set<Digest>{od});
  CHECK(st.object_bytes == 2 * over.size());
  CHECK(st.new_object_bytes == over.size());  // written once
  CHECK(st.content_digests.at("over") == od);
  CHECK(sys::xlist_dir(d.staging.get(), ".").size() == 1);  // no temporaries left
}

TEST_CASE("an object already present is not written again") {
  Dirs d;
  const std::string big = std::string(3 << 20, 'x') + "tail";  // streams through a temp file
  const std::string mid(100000, 'm');                          // gathered in memory
  for (const auto* c : {&big, &mid}) {
    Digest o = Hasher::of(*c);
    std::string fan = Layout::object_fanout(o).substr(Layout::objects_dir().size() + 1);
    sys::xmkdir_p(d.t / ("objects/" + fan));
    sys::xwrite_file_atomic(d.staging.get(), "x", d.objects.get(),
                            Layout::object(o).substr(Layout::objects_dir().size() + 1), *c);
  }
  unpack::Stats st = d.unpack(TarBuilder().file("big", big).file("mid", mid).finish());
  CHECK(st.objects.size() == 2);
  CHECK(st.new_object_bytes == 0);
  CHECK(sys::xlist_dir(d.staging.get(), ".").empty());
  CHECK(d.xattr("big", redirect_name()) == Layout::object_redirect(Hasher::of(big)));
}

TEST_CASE("a sparse file's object holds its whole content") {
  Dirs d;
  const int64_t size = 5 << 20;
  unpack::Stats st = d.unpack(
      TarBuilder().sparse("s", size, {{4096, "data"}, {(3 << 20), "more"}}).finish());
  std::string want(static_cast<size_t>(size), '\0');
  want.replace(4096, 4, "data");
  want.replace(3 << 20, 4, "more");
  Digest o = Hasher::of(want);
  CHECK(st.objects == std::set<Digest>{o});
  CHECK(d.staged(o) == want);
}

TEST_CASE("rootless layers carry the markers in user.overlay.*") {
  Dirs d;
  const std::string big(9000, 'r');
  d.unpack(TarBuilder().file("f", big).finish(), true);
  CHECK(d.xattr("f", "user.overlay.metacopy") == "");
  CHECK(d.xattr("f", "user.overlay.redirect") == Layout::object_redirect(Hasher::of(big)));
  CHECK(d.xattr("f", "trusted.overlay.redirect") == "<none>");
}
