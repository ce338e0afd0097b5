#include "overlay/overlay.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstring>

#include "format/overlay_format.hpp"
#include "overlay/atime_mount.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"
#include "util/xattr_path.hpp"

namespace layer::overlay {

namespace {

bool stat_at(int dirfd, const char* name, struct stat* st) {
  return ::fstatat(dirfd, name, st, AT_SYMLINK_NOFOLLOW) == 0;
}

// Whether trusted.* xattrs can be set in `dirfd`: not without CAP_SYS_ADMIN
// in the initial user namespace (a rootless mount).
// In the workdir: an earlier mount chose user.overlay.* by itself.
constexpr char kUserXattrMark[] = "layerfs-userxattr";

bool trusted_xattrs_allowed(int dirfd) {
  const char* kProbe = format::kTrusted.layerfs_probe.data();
  if (::fsetxattr(dirfd, kProbe, "1", 1, 0) == 0) {
    ::fremovexattr(dirfd, kProbe);
    return true;
  }
  return errno != EPERM;
}

// The root node over the merged root directory.
Node* make_root(const Resolver& r) {
  auto stack = r.root_stack();
  struct stat rst;
  if (::fstat(stack->front().fd.get(), &rst) != 0) throw Error("root directory", errno);
  Node* root = new Node(S_IFDIR, r.map_ino_raw(rst.st_dev, rst.st_ino));
  root->layer = stack->front().layer;
  root->stack = std::move(stack);
  return root;
}

format::XattrNamespace ns_of(const Config& c) {
  return c.userxattr ? format::XattrNamespace::kUser : format::XattrNamespace::kTrusted;
}

}  // namespace

// What open() prepared; each invalid for a read-only mount.
struct Overlay::Dirs {
  UniqueFd upper, work, index, legacy_index, partial, data;
  std::vector<UniqueFd> roots;  // [0] upper (may be invalid), [1..] lowers
};

Overlay::Overlay(const Config& c, Dirs&& d)
    : config_(c),
      datadir_(std::move(d.data)),
      upper_(std::move(d.upper), std::move(d.work), ns_of(c)),
      resolver_(std::move(d.roots), std::string(upper_.xattrs().layerfs_origin),
                std::string(upper_.xattrs().origin), std::string(upper_.xattrs().impure),
                c.metacopy),
      nodes_(make_root(resolver_)),
      listings_(resolver_),
      owners_(config_),
      index_(std::move(d.index), std::move(d.legacy_index), upper_),
      lazy_(std::move(d.partial), upper_.xattrs().layerfs_partial.data(), c.fsync, datadir_.get()),
      copier_(config_, nodes_, upper_, index_, lazy_, datadir_.get()) {}

Overlay::~Overlay() {
  lazy_.finish();  // before the nodes go
}

std::unique_ptr<Overlay> Overlay::open(const Config& opts) {
  Config c = opts;
  Dirs d;
  // Layers are opened through private mounts with the mount's atime rule
  // (lower layers: none, as the kernel's overlayfs never updates their
  // atime); upper and workdir through one, so that renames and links
  // between them stay on one mount.
  AtimeMount through;
  auto open_layer = [&through](const std::string& path, const char* what) {
    auto r = through.open_dir(path);
    if (!r) throw Error(std::string(what) + " '" + path + "'", r.error());
    return std::move(r).value();
  };
  if (!opts.datadir.empty()) {
    auto r = sys::open_at(AT_FDCWD, opts.datadir.c_str(), O_RDONLY | O_DIRECTORY);
    if (!r) throw Error("datadir '" + opts.datadir + "'", r.error());
    d.data = std::move(r).value();
  }
  d.roots.emplace_back();
  if (!opts.upperdir.empty() && !opts.read_only) {
    through = AtimeMount::clone(common_ancestor(opts.upperdir, opts.workdir), opts.atime_rule(),
                                opts.nodiratime);
    d.upper = open_layer(opts.upperdir, "upperdir");
    if (::faccessat(d.upper.get(), ".", W_OK, AT_EACCESS) != 0)
      throw Error("upperdir '" + opts.upperdir + "'", errno);
    UniqueFd wd = open_layer(opts.workdir, "workdir");
    struct stat ust, wst;
    if (::fstat(d.upper.get(), &ust) != 0 || ::fstat(wd.get(), &wst) != 0)
      throw Error("upperdir '" + opts.upperdir + "'", errno);
    if (ust.st_dev != wst.st_dev)
      throw Error("workdir '" + opts.workdir + "' is not on the same filesystem as upperdir '" +
                  opts.upperdir + "'");
    if (ust.st_ino == wst.st_ino)
      throw Error("workdir '" + opts.workdir + "' is the same directory as upperdir");
    // Rootless: the markers go in user.* xattrs, as with the kernel's
    // overlayfs and -o userxattr (fuse-overlayfs too picks its user.*
    // namespace by itself). The choice is kept in the workdir, so a later
    // privileged mount of the same upper reads and writes the same markers.
    if (!opts.userxattr) {
      bool chosen = ::faccessat(wd.get(), kUserXattrMark, F_OK, 0) == 0;
      if (chosen || !trusted_xattrs_allowed(wd.get())) {
        if (!chosen) {
          int fd = ::openat(wd.get(), kUserXattrMark, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
          if (fd < 0) throw Error("workdir '" + opts.workdir + "/" + kUserXattrMark + "'", errno);
          ::close(fd);
        }
        c.userxattr = true;
      }
    }
    // Files a crash left half copied up are completed first.
    if (::mkdirat(wd.get(), "layerfs-partial", 0700) != 0 && errno != EEXIST)
      throw Error("workdir '" + opts.workdir + "/layerfs-partial'", errno);
    d.partial = open_layer(opts.workdir + "/layerfs-partial", "workdir");
    LazyCopy(open_layer(opts.workdir + "/layerfs-partial", "workdir"),
             format::names(ns_of(c)).layerfs_partial.data(), c.fsync, d.data.get())
        .recover();
    // workdir/work is our scratch space, as it is the kernel's: anything left in
    // it by a crash is a partial copy-up or a removed tree, never live data.
    if (::mkdirat(wd.get(), "work", 0700) != 0 && errno != EEXIST)
      throw Error("workdir '" + opts.workdir + "/work'", errno);
    sys::xremove_tree(wd.get(), "work");
    if (::mkdirat(wd.get(), "work", 0700) != 0)
      throw Error("workdir '" + opts.workdir + "/work'", errno);
    d.work = open_layer(opts.workdir + "/work", "workdir");
    // The kernel's index dir (index=on), and layerfs's older one while it
    // still holds entries to move (LinkIndex::key_of).
    const std::string index_dir = opts.workdir + "/" + format::kIndexDir;
    if (::mkdirat(wd.get(), format::kIndexDir, 0700) != 0 && errno != EEXIST)
      throw Error("workdir '" + index_dir + "'", errno);
    d.index = open_layer(index_dir, "workdir");
    if (::unlinkat(wd.get(), format::kLegacyIndexDir, AT_REMOVEDIR) != 0 && errno == ENOTEMPTY)
      d.legacy_index = open_layer(opts.workdir + "/" + format::kLegacyIndexDir, "workdir");
    auto dup = sys::open_at(d.upper.get(), ".", O_RDONLY | O_DIRECTORY);
    if (!dup) throw Error("upperdir '" + opts.upperdir + "'", dup.error());
    d.roots[0] = std::move(dup).value();
  }
  // One clone for every lower layer it reaches (a store's layers share a
  // mount): each mount_setattr costs milliseconds (it waits for an RCU grace
  // period), which was most of a mount's start. A layer it does not reach
  // gets a clone of its own.
  std::string common;
  for (const auto& l : opts.lowerdirs) common = common.empty() ? l : common_ancestor(common, l);
  AtimeMount lowers = opts.lowerdirs.size() > 1 && !common.empty()
                          ? AtimeMount::clone(common, Atime::kNoatime, true)
                          : AtimeMount();
  for (const auto& l : opts.lowerdirs) {
    auto shared = lowers.open_below(l);
    UniqueFd fd;
    if (shared) {
      fd = std::move(shared).value();
    } else {
      through = AtimeMount::clone(l, Atime::kNoatime, true);
      fd = open_layer(l, "lowerdir");
    }
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) throw Error("lowerdir '" + l + "'", errno);
    d.roots.push_back(std::move(fd));
  }
  return std::unique_ptr<Overlay>(new Overlay(c, std::move(d)));
}

Result<Overlay::Real> Overlay::real_of(Node* n) {
  Real r;
  if (n->anon.valid()) {
    int dup = ::fcntl(n->anon.get(), F_DUPFD_CLOEXEC, 0);
    if (dup < 0) return last_errno();
    r.own = UniqueFd(dup);
    r.dirfd = dup;
    return r;
  }
  if (auto kept = orphan_of(n)) {
    r.own = UniqueFd(::fcntl(kept->get(), F_DUPFD_CLOEXEC, 0));
    if (!r.own.valid()) return last_errno();
    r.dirfd = r.own.get();
    return r;
  }
  auto copy = indexed_copy(n);
  if (!copy) return Errno{copy.error()};
  if (copy->valid()) {
    r.own = std::move(copy).value();
    r.dirfd = r.own.get();
    return r;
  }
  if (n->is_dir()) {
    r.keep = stack_of(n);
    r.dirfd = r.keep->front().fd.get();
    return r;
  }
  auto l = locate(n);
  if (!l) return Errno{l.error()};
  r.keep = std::move(l->stack);
  r.dirfd = l->dirfd;
  r.name = std::move(l->name);
  return r;
}

Result<UniqueFd> Overlay::indexed_copy(Node* n) {
  if (n->type != S_IFREG || !n->shared.load() || n->layer.load() == kUpper || !index_.valid())
    return UniqueFd();
  auto loc = locate(n);
  if (!loc || loc->layer == kUpper) return UniqueFd();  // the caller's own locate tells
  auto k = index_.key_of(n->ino, loc->dirfd, loc->name.c_str());
  if (!k) return k.error() == EOPNOTSUPP ? Result<UniqueFd>(UniqueFd()) : Errno{k.error()};
  return index_.copy_of(k.value());
}

Result<Overlay::Located> Overlay::locate(Node* n, bool data) {
  // The layer can move from lower to upper between reading it and reading the
  // parent's stack (a copy-up); the upper entry is then in the stack too, or
  // the stack was rebuilt, and a second pass sees the new layer.
  for (int attempt = 0; attempt < 3; ++attempt) {
    Located loc;
    int layer = n->layer.load();
    if (data) {
      int below = n->data_layer.load();
      if (below < 0) return Errno{EIO};  // a metadata-only copy without its data
      if (below > 0) layer = below;
    }
    Node* p = nodes_.parent_of(n, &loc.name);
    if (!p) return Errno{EINVAL};
    NodeRef hold(&nodes_, p);
    if (nodes_.unlinked(n)) return Errno{ENOENT};
    loc.stack = stack_of(p);
    for (const auto& ld : *loc.stack) {
      if (ld.layer == layer) {
        loc.dirfd = ld.fd.get();
        loc.layer = layer;
        return loc;
      }
    }
  }
  return Errno{EIO};
}

// ---------------------------------------------------------------- lookup

Result<Node*> Overlay::lookup_node(Node* parent, std::string_view name) {
  if (!parent->is_dir()) return Errno{ENOTDIR};
  if (!valid_name(name)) return Errno{name.size() > NAME_MAX ? ENAMETOOLONG : ENOENT};
  if (Node* n = nodes_.find_child(parent, name)) return n;
  auto stack = stack_of(parent);
  auto f = resolver_.resolve(*stack, name, true);
  if (!f) return Errno{f.error()};
  // A lower file with several names, one of which was copied up already: this
  // name stays below until it is changed (a lookup never writes the upper);
  // reads go to the upper copy through the index (see indexed_copy).
  uint64_t ino;
  if (f->stack) {
    ino = resolver_.map_ino(f->layer, f->st, f->stack->front().fd.get(), nullptr, true);
  } else {
    int dirfd = -1;
    for (const auto& ld : *stack)
      if (ld.layer == f->layer) dirfd = ld.fd.get();
    std::string n(name);
    ino = resolver_.map_ino(f->layer, f->st, dirfd, n.c_str(), true);
  }
  return adopt(parent, name, f.value(), ino);
}

Node* Overlay::adopt(Node* parent, std::string_view name, Found& f, uint64_t ino) {
  Node* fresh = new Node(f.st.st_mode, ino);
  fresh->data_layer = f.data_layer;
  fresh->layer = f.layer;
  fresh->stack = std::move(f.stack);
  if (S_ISREG(f.st.st_mode) && f.st.st_nlink > 1) {
    // An upper file whose only other link is its lazy copy-up's registration
    // in the workdir is not shared.
    bool only_partial = f.layer == kUpper && lazy_.attach(fresh, f.st);
    fresh->shared = !only_partial;
  }
  Node* got = nodes_.insert_child(parent, name, fresh);
  if (got != fresh) delete fresh;
  return got;
}

Result<Node*> Overlay::lookup(Node* parent, std::string_view name, struct stat* st) {
  auto n = lookup_node(parent, name);
  if (!n) return n;
  auto a = getattr(n.value(), -1, st);
  if (!a) {
    unref(n.value());
    return Errno{a.error()};
  }
  return n;
}

Result<Node*> Overlay::lookup_listed(Node* parent, const DirEntry& e, struct stat* st) {
  if (e.layer <= kUpper || e.type == DT_DIR || e.type == DT_UNKNOWN)
    return lookup(parent, e.name, st);
  auto stack = stack_of(parent);
  int dirfd = -1;
  for (const auto& ld : *stack) {
    if (ld.layer == kUpper) {
      // A copy-up, a whiteout or a new object of that name since the
      // listing: the whole lookup decides.
      struct stat ust;
      if (stat_at(ld.fd.get(), e.name.c_str(), &ust) || errno != ENOENT)
        return lookup(parent, e.name, st);
    } else if (ld.layer == e.layer) {
      dirfd = ld.fd.get();
    }
  }
  Found f;
  f.layer = e.layer;
  // Lower layers never change: the layers above it hide nothing of it, as
  // the listing found. Hard links need the index's view (getattr); an empty
  // file or a device may be a whiteout that readdir shows and lookup hides;
  // with metacopy=on a lower file may be metadata-only, its data further down.
  if (dirfd < 0 || !stat_at(dirfd, e.name.c_str(), &f.st) || S_ISDIR(f.st.st_mode) ||
      S_ISCHR(f.st.st_mode) || (S_ISREG(f.st.st_mode) && f.st.st_size == 0) || f.st.st_nlink > 1 ||
      (resolver_.follows_lower_metacopy() && format::may_be_metacopy(f.st)))
    return lookup(parent, e.name, st);
  uint64_t ino = resolver_.map_ino(f.layer, f.st, dirfd, e.name.c_str(), true);
  const struct stat got_st = f.st;
  Node* n = adopt(parent, e.name, f, ino);
  if (n->layer.load() != e.layer || n->shared.load()) {  // an older node, changed since
    if (auto a = getattr(n, -1, st); !a) {
      unref(n);
      return Errno{a.error()};
    }
    return n;
  }
  *st = got_st;
  fix_stat(n, st);
  return n;
}

// ---------------------------------------------------------------- attributes

void Overlay::fix_stat(Node* n, struct stat* st) {
  if (owners_.in_xattr(st->st_mode)) {
    if (auto real = real_of(n))
      owners_.read_override(
          XattrPath(real->dirfd, real->name.empty() ? nullptr : real->name.c_str()), st);
  }
  st->st_ino = n->ino;
  owners_.to_inside(st);
}

Result<void> Overlay::getattr(Node* n, int fd, struct stat* st) {
  if (fd >= 0) {
    if (::fstat(fd, st) != 0) return last_errno();
    // An open of a lower name may be of the indexed upper copy (open_file).
    if (S_ISREG(st->st_mode) && n->layer.load() != kUpper && n->shared.load() && index_.valid())
      st->st_nlink = index_.union_nlink(fd, nullptr, *st);
  } else if (n->is_dir()) {
    auto stack = stack_of(n);
    if (::fstat(stack->front().fd.get(), st) != 0) return last_errno();
    if (config_.static_nlink) {
      st->st_nlink = 1;  // every directory, as fuse-overlayfs's static_nlink
    } else if (stack->size() > 1) {
      auto nl = listings_.merged_nlink(n);
      if (!nl) return Errno{nl.error()};
      st->st_nlink = nl.value();
    }
  } else if (n->anon.valid()) {
    if (::fstat(n->anon.get(), st) != 0) return last_errno();
  } else if (auto kept = orphan_of(n)) {
    if (::fstat(kept->get(), st) != 0) return last_errno();
  } else {
    auto copy = indexed_copy(n);
    if (!copy) return Errno{copy.error()};
    if (copy->valid()) {
      if (::fstat(copy->get(), st) != 0) return last_errno();
      st->st_nlink = index_.union_nlink(copy->get(), nullptr, *st);
      fix_stat(n, st);
      return {};
    }
    auto loc = locate(n);
    if (!loc) return Errno{loc.error()};
    if (!stat_at(loc->dirfd, loc->name.c_str(), st)) return last_errno();
    // A copy-up of a multiply linked lower file: maybe indexed, its link
    // count (the entry's link and the names still below) in an xattr.
    if (S_ISREG(st->st_mode) && loc->layer == kUpper && st->st_nlink > 1 && index_.valid())
      st->st_nlink = index_.union_nlink(loc->dirfd, loc->name.c_str(), *st);
  }
  if (S_ISREG(st->st_mode) && n->layer.load() == kUpper && index_.valid()) {
    // Its link in layerfs-partial is not a name (an unlinked one has no other).
    if (st->st_nlink > 0 && lazy_.partial_of(n) && (st->st_nlink > 1 || nodes_.unlinked(n)))
      --st->st_nlink;
  }
  fix_stat(n, st);
  return {};
}

Result<std::string> Overlay::readlink(Node* n) {
  if (n->type != S_IFLNK) return Errno{EINVAL};
  auto loc = locate(n);
  if (!loc) return Errno{loc.error()};
  char buf[PATH_MAX];
  ssize_t len = ::readlinkat(loc->dirfd, loc->name.c_str(), buf, sizeof(buf));
  if (len < 0) return last_errno();
  return std::string(buf, static_cast<size_t>(len));
}

Result<struct statvfs> Overlay::statfs() {
  struct statvfs s;
  int fd = upper_.valid() ? upper_.upper() : resolver_.lower_root(1);
  if (::fstatvfs(fd, &s) != 0) return last_errno();
  return s;
}

Result<void> Overlay::fsync_dir(Node* dir, bool datasync) {
  auto stack = stack_of(dir);
  if (stack->front().layer != kUpper) return {};
  int fd = stack->front().fd.get();
  if ((datasync ? ::fdatasync(fd) : ::fsync(fd)) != 0) return last_errno();
  return {};
}

}  // namespace layer::overlay
