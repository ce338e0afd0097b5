#include "overlay/overlay.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string_view>
#include <unordered_set>

#include "format/overlay_format.hpp"
#include "util/xattr_path.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::overlay {

namespace {

bool stat_at(int dirfd, const char* name, struct stat* st) {
  return ::fstatat(dirfd, name, st, AT_SYMLINK_NOFOLLOW) == 0;
}

format::DirMarks dir_marks(int fd, int layer) {
  return format::read_dir_marks(fd, layer != kUpper);
}

Result<UniqueFd> open_dir_at(int layer, int dirfd, const char* name) {
  auto r = open_in_layer(layer, dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!r && r.error() == EACCES)
    return sys::open_at(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW);
  return r;
}

}  // namespace

Result<UniqueFd> open_in_layer(int layer, int dirfd, const char* name, int flags) {
  if (layer != kUpper) {
    auto r = sys::open_at(dirfd, name, flags | O_NOATIME);
    if (r || r.error() != EPERM) return r;
  }
  return sys::open_at(dirfd, name, flags);
}

bool valid_name(std::string_view name) {
  return !name.empty() && name.size() <= NAME_MAX && name != "." && name != ".." &&
         name.find('/') == std::string_view::npos && name.find('\0') == std::string_view::npos;
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

// ---------------------------------------------------------------- setup

Overlay::Overlay(const MountOptions& opts) : opts_(opts) {
  name_xattrs();
  if (opts.xattr_permissions == 1) perm_xattr_ = format::kPermXattrSecurity;
  if (opts.xattr_permissions == 2) perm_xattr_ = format::kPermXattrUser;
}

void Overlay::name_xattrs() {
  const format::XattrNames& x =
      format::names(opts_.userxattr ? format::XattrNamespace::kUser : format::XattrNamespace::kTrusted);
  xattr_prefix_ = x.prefix;
  origin_xattr_ = x.layerfs_origin;
  opaque_xattr_ = x.opaque;
  names_xattr_ = x.layerfs_lower_names;
  partial_xattr_ = x.layerfs_partial;
  impure_xattr_ = x.impure;
}

namespace {

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

}  // namespace

std::unique_ptr<Overlay> Overlay::open(const MountOptions& opts) {
  std::unique_ptr<Overlay> ov(new Overlay(opts));
  auto open_layer = [](const std::string& path, const char* what) {
    auto r = sys::open_at(AT_FDCWD, path.c_str(), O_RDONLY | O_DIRECTORY);
    if (!r) throw Error(std::string(what) + " '" + path + "'", r.error());
    return std::move(r).value();
  };
  if (!opts.datadir.empty()) ov->datadir_ = open_layer(opts.datadir, "datadir");
  ov->layer_roots_.emplace_back();
  if (!opts.upperdir.empty() && !opts.read_only) {
    ov->upper_ = open_layer(opts.upperdir, "upperdir");
    if (::faccessat(ov->upper_.get(), ".", W_OK, AT_EACCESS) != 0)
      throw Error("upperdir '" + opts.upperdir + "'", errno);
    UniqueFd wd = open_layer(opts.workdir, "workdir");
    struct stat ust, wst;
    if (::fstat(ov->upper_.get(), &ust) != 0 || ::fstat(wd.get(), &wst) != 0)
      throw Error("upperdir '" + opts.upperdir + "'", errno);
    if (ust.st_dev != wst.st_dev)
      throw Error("workdir '" + opts.workdir + "' is not on the same filesystem as upperdir '" +
                  opts.upperdir + "'");
    if (ust.st_ino == wst.st_ino)
      throw Error("workdir '" + opts.workdir + "' is the same directory as upperdir");
    // Rootless: the markers go in user.overlay.* xattrs, as with the
    // kernel's overlayfs and -o userxattr (fuse-overlayfs too picks its
    // user.* namespace by itself). The choice is kept in the workdir, so a
    // later privileged mount of the same upper reads and writes the same
    // markers.
    if (!opts.userxattr) {
      bool chosen = ::faccessat(wd.get(), kUserXattrMark, F_OK, 0) == 0;
      if (chosen || !trusted_xattrs_allowed(wd.get())) {
        if (!chosen) {
          int fd = ::openat(wd.get(), kUserXattrMark, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
          if (fd < 0) throw Error("workdir '" + opts.workdir + "/" + kUserXattrMark + "'", errno);
          ::close(fd);
        }
        ov->opts_.userxattr = true;
        ov->name_xattrs();
      }
    }
    // Files a crash left half copied up are completed first.
    if (::mkdirat(wd.get(), "layerfs-partial", 0700) != 0 && errno != EEXIST)
      throw Error("workdir '" + opts.workdir + "/layerfs-partial'", errno);
    ov->partial_dir_ = open_layer(opts.workdir + "/layerfs-partial", "workdir");
    ov->recover_partials();
    // workdir/work is our scratch space, as it is the kernel's: anything left in
    // it by a crash is a partial copy-up or a removed tree, never live data.
    if (::mkdirat(wd.get(), "work", 0700) != 0 && errno != EEXIST)
      throw Error("workdir '" + opts.workdir + "/work'", errno);
    sys::xremove_tree(wd.get(), "work");
    if (::mkdirat(wd.get(), "work", 0700) != 0)
      throw Error("workdir '" + opts.workdir + "/work'", errno);
    ov->work_ = open_layer(opts.workdir + "/work", "workdir");
    if (::mkdirat(wd.get(), "layerfs-index", 0700) != 0 && errno != EEXIST)
      throw Error("workdir '" + opts.workdir + "/layerfs-index'", errno);
    ov->index_ = open_layer(opts.workdir + "/layerfs-index", "workdir");
    auto dup = sys::open_at(ov->upper_.get(), ".", O_RDONLY | O_DIRECTORY);
    if (!dup) throw Error("upperdir '" + opts.upperdir + "'", dup.error());
    ov->layer_roots_[0] = std::move(dup).value();
    ov->devs_.push_back(ust.st_dev);
  }
  for (const auto& l : opts.lowerdirs) {
    UniqueFd fd = open_layer(l, "lowerdir");
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) throw Error("lowerdir '" + l + "'", errno);
    bool known = false;
    for (dev_t d : ov->devs_) known = known || d == st.st_dev;
    if (!known) ov->devs_.push_back(st.st_dev);
    ov->layer_roots_.push_back(std::move(fd));
  }

  // The root: every layer's top directory down to the first opaque one.
  auto stack = std::make_shared<DirStack>();
  for (size_t i = 0; i < ov->layer_roots_.size(); ++i) {
    if (!ov->layer_roots_[i].valid()) continue;
    auto fd = open_in_layer(static_cast<int>(i), ov->layer_roots_[i].get(), ".",
                            O_RDONLY | O_DIRECTORY);
    if (!fd) throw Error("layer directory", fd.error());
    format::DirMarks m = dir_marks(fd.value().get(), static_cast<int>(i));
    bool opaque = m.opaque;
    stack->push_back(LayerDir{static_cast<int>(i), std::move(fd).value(), m.xwhiteouts});
    if (opaque && i != 0) break;
  }
  struct stat rst;
  if (::fstat(stack->front().fd.get(), &rst) != 0) throw Error("root directory", errno);
  Node* root = new Node(S_IFDIR, ov->map_ino_raw(rst.st_dev, rst.st_ino));
  root->layer = stack->front().layer;
  root->stack = std::move(stack);
  root->refs = 1;
  ov->root_ = root;
  ov->nodes_ = 1;
  return ov;
}

void Overlay::start_background() {
  std::lock_guard<std::mutex> g(partial_mu_);
  if (!partial_dir_.valid() || partial_thread_.joinable() || stop_) return;
  partial_thread_ = std::thread([this] { partial_worker(); });
}

Overlay::~Overlay() {
  finish_partials();
  // Whatever the kernel still referenced at unmount: free the whole tree.
  if (!root_) return;  // open() failed half-way
  std::vector<Node*> all;
  std::vector<Node*> todo{root_};
  for (Node* d : detached_) todo.push_back(d);
  while (!todo.empty()) {
    Node* n = todo.back();
    todo.pop_back();
    all.push_back(n);
    for (auto& [name, c] : n->children) todo.push_back(c);
  }
  for (Node* n : all) delete n;
}

size_t Overlay::node_count() const {
  std::lock_guard<std::mutex> g(tree_mu_);
  return nodes_;
}

// ---------------------------------------------------------------- inode numbers

uint64_t Overlay::map_ino_raw(dev_t dev, ino_t ino) const {
  // Like the kernel's xino: the first filesystem's inode numbers are used as
  // they are, others get their filesystem's index in the top bits.
  for (size_t i = 0; i < devs_.size(); ++i)
    if (devs_[i] == dev) return i == 0 ? ino : (ino ^ (uint64_t{i} << 56));
  return ino ^ ((uint64_t{0x80} | (dev & 0x7f)) << 56);
}

uint64_t Overlay::map_ino(int layer, const struct stat& st, int dirfd, const char* name,
                          bool upper_origin) {
  if (layer == kUpper && upper_origin) {
    // A copy-up keeps the inode number of its origin (the lower object), so
    // st_ino does not change when a file is copied up.
    XattrPath p(dirfd, name);
    uint64_t v = 0;
    if (p.get(origin_xattr_.c_str(), &v, sizeof(v)) == sizeof(v) && v != 0) return v;
  }
  return map_ino_raw(st.st_dev, st.st_ino);
}

// ---------------------------------------------------------------- the tree

void Overlay::ref(Node* n) {
  std::lock_guard<std::mutex> g(tree_mu_);
  ++n->refs;
}

void Overlay::unref(Node* n, uint64_t count) {
  std::vector<Node*> dead;
  {
    std::lock_guard<std::mutex> g(tree_mu_);
    while (n) {
      assert(n->refs >= count && "node reference count below zero");
      n->refs -= count;
      if (n->refs != 0) break;
      assert(n != root_ && "root node released");
      assert(n->children.empty());
      Node* p = n->parent;
      if (p) {
        auto it = p->children.find(n->name);
        if (it != p->children.end() && it->second == n) p->children.erase(it);
      }
      if (n->unlinked) detached_.erase(n);
      dead.push_back(n);
      --nodes_;
      n = p;
      count = 1;
    }
  }
  for (Node* d : dead) delete d;
}

Node* Overlay::parent_of(Node* n, std::string* name) {
  std::lock_guard<std::mutex> g(tree_mu_);
  Node* p = n->parent;
  if (p) ++p->refs;
  if (name) *name = n->name;
  return p;
}

Node* Overlay::find_child(Node* parent, std::string_view name) {
  std::lock_guard<std::mutex> g(tree_mu_);
  auto it = parent->children.find(std::string(name));
  if (it == parent->children.end()) return nullptr;
  ++it->second->refs;
  return it->second;
}

Node* Overlay::insert_child(Node* parent, std::string_view name, Node* fresh) {
  std::lock_guard<std::mutex> g(tree_mu_);
  auto [it, inserted] = parent->children.try_emplace(std::string(name), fresh);
  if (!inserted) {
    ++it->second->refs;
    return it->second;
  }
  fresh->parent = parent;
  ++parent->refs;
  fresh->name = name;
  fresh->refs = 1;
  ++nodes_;
  return fresh;
}

void Overlay::detach_child(Node* parent, std::string_view name) {
  std::lock_guard<std::mutex> g(tree_mu_);
  auto it = parent->children.find(std::string(name));
  if (it == parent->children.end()) return;
  it->second->unlinked = true;
  detached_.insert(it->second);
  parent->children.erase(it);
}

std::shared_ptr<const DirStack> Overlay::stack_of(Node* dir) {
  std::lock_guard<std::mutex> g(dir->mu);
  return dir->stack;
}

void Overlay::invalidate_listing(Node* dir) {
  std::lock_guard<std::mutex> g(dir->mu);
  dir->listing.reset();
  ++dir->listing_gen;
}

NodeRef::~NodeRef() {
  if (n_) ov_->unref(n_);
}

Result<Overlay::Located> Overlay::locate(Node* n) {
  // The layer can move from lower to upper between reading it and reading the
  // parent's stack (a copy-up); the upper entry is then in the stack too, or
  // the stack was rebuilt, and a second pass sees the new layer.
  for (int attempt = 0; attempt < 3; ++attempt) {
    Located loc;
    int layer = n->layer.load();
    Node* p = parent_of(n, &loc.name);
    if (!p) return Errno{EINVAL};
    NodeRef hold(this, p);
    {
      std::lock_guard<std::mutex> g(tree_mu_);
      if (n->unlinked) return Errno{ENOENT};
    }
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

// Resolving a name in a merged directory, layer by layer from the top:
//   ENOENT in a layer        -> try the next layer (unless its OCI whiteout is there)
//   a whiteout               -> stop: ENOENT
//   found                    -> stop: that layer's object; a directory goes on
//                               collecting the same name below it until an
//                               opaque directory, a whiteout or a non-directory
//   any other errno          -> stop and return it
Result<Overlay::Found> Overlay::resolve(const DirStack& parent, std::string_view name_sv,
                                        bool want_stack) {
  char name[NAME_MAX + 1];
  std::memcpy(name, name_sv.data(), name_sv.size());
  name[name_sv.size()] = '\0';
  bool internal = name_sv.starts_with(format::kWhiteoutPrefix);

  Found f;
  size_t i = 0;
  for (; i < parent.size(); ++i) {
    const LayerDir& ld = parent[i];
    if (internal && ld.layer != kUpper) continue;  // OCI whiteout names: markers below the upper
    if (!stat_at(ld.fd.get(), name, &f.st)) {
      if (errno != ENOENT) return last_errno();
      if (ld.layer != kUpper && format::has_oci_whiteout(ld.fd.get(), name_sv)) return Errno{ENOENT};
      continue;
    }
    if (format::is_whiteout(ld.fd.get(), name, f.st)) return Errno{ENOENT};
    f.layer = ld.layer;
    break;
  }
  if (i == parent.size()) return Errno{ENOENT};
  if (!S_ISDIR(f.st.st_mode) || !want_stack) return f;

  auto stack = std::make_shared<DirStack>();
  auto top = open_dir_at(parent[i].layer, parent[i].fd.get(), name);
  if (!top) return Errno{top.error()};
  format::DirMarks marks = dir_marks(top.value().get(), parent[i].layer);
  bool opaque = marks.opaque;
  f.opaque = opaque;
  std::string redirect = std::move(marks.redirect);
  stack->push_back(LayerDir{parent[i].layer, std::move(top).value(), marks.xwhiteouts});
  // Below, the same name in the parent's directories, unless the kernel's
  // redirect_dir moved this directory: "/a/b" is that path from each lower
  // layer's root, "x" the name x in the parent's directories.
  std::string cur = name;
  for (size_t j = i + 1; j < parent.size() && !opaque; ++j) {
    const LayerDir& ld = parent[j];
    if (!redirect.empty() && redirect[0] == '/') {
      // Absolute: every lower layer below, from its root.
      for (size_t l = static_cast<size_t>(stack->back().layer) + 1;
           l < layer_roots_.size() && !opaque; ++l) {
        auto fd = sys::open_beneath(layer_roots_[l].get(), redirect.c_str() + 1,
                                    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NOATIME, 0,
                                    RESOLVE_NO_SYMLINKS);
        if (!fd && fd.error() == EPERM)
          fd = sys::open_beneath(layer_roots_[l].get(), redirect.c_str() + 1,
                                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, RESOLVE_NO_SYMLINKS);
        if (!fd) {
          if (fd.error() == ENOENT) continue;
          if (fd.error() == ENOTDIR) break;
          return Errno{fd.error()};
        }
        format::DirMarks m = dir_marks(fd.value().get(), static_cast<int>(l));
        opaque = m.opaque;
        std::string next = std::move(m.redirect);
        stack->push_back(LayerDir{static_cast<int>(l), std::move(fd).value(), m.xwhiteouts});
        if (!next.empty() && next[0] == '/') redirect = next;
      }
      break;
    }
    if (!redirect.empty()) {
      cur = redirect;
      redirect.clear();
    }
    struct stat st;
    if (!stat_at(ld.fd.get(), cur.c_str(), &st)) {
      if (errno != ENOENT) return last_errno();
      if (format::has_oci_whiteout(ld.fd.get(), cur)) break;
      continue;
    }
    if (!S_ISDIR(st.st_mode)) break;  // a whiteout or a non-directory ends the merge
    auto fd = open_dir_at(ld.layer, ld.fd.get(), cur.c_str());
    if (!fd) return Errno{fd.error()};
    format::DirMarks m = dir_marks(fd.value().get(), ld.layer);
    opaque = m.opaque;
    redirect = std::move(m.redirect);
    stack->push_back(LayerDir{ld.layer, std::move(fd).value(), m.xwhiteouts});
  }
  f.stack = std::move(stack);
  return f;
}

Result<bool> Overlay::lower_has(const DirStack& parent, std::string_view name_sv) {
  char name[NAME_MAX + 1];
  std::memcpy(name, name_sv.data(), name_sv.size());
  name[name_sv.size()] = '\0';
  bool internal = name_sv.starts_with(format::kWhiteoutPrefix);
  for (const auto& ld : parent) {
    if (ld.layer == kUpper || internal) continue;
    struct stat st;
    if (!stat_at(ld.fd.get(), name, &st)) {
      if (errno != ENOENT) return last_errno();
      if (format::has_oci_whiteout(ld.fd.get(), name_sv)) return false;
      continue;
    }
    return !format::is_whiteout(ld.fd.get(), name, st);
  }
  return false;
}

Result<Node*> Overlay::lookup_node(Node* parent, std::string_view name) {
  if (!parent->is_dir()) return Errno{ENOTDIR};
  if (!valid_name(name)) return Errno{name.size() > NAME_MAX ? ENAMETOOLONG : ENOENT};
  if (Node* n = find_child(parent, name)) return n;
  auto stack = stack_of(parent);
  auto f = resolve(*stack, name, true);
  if (!f) return Errno{f.error()};
  // A lower file with several names, one of which was copied up already: this
  // name stays below until it is changed (a lookup never writes the upper);
  // reads go to the upper copy through the index (see indexed_copy).
  uint64_t ino;
  if (f->stack) {
    ino = map_ino(f->layer, f->st, f->stack->front().fd.get(), nullptr, true);
  } else {
    int dirfd = -1;
    for (const auto& ld : *stack)
      if (ld.layer == f->layer) dirfd = ld.fd.get();
    std::string n(name);
    ino = map_ino(f->layer, f->st, dirfd, n.c_str(), true);
  }
  return adopt(parent, name, f.value(), ino);
}

Node* Overlay::adopt(Node* parent, std::string_view name, Found& f, uint64_t ino) {
  Node* fresh = new Node(f.st.st_mode, ino);
  fresh->layer = f.layer;
  fresh->stack = std::move(f.stack);
  if (S_ISREG(f.st.st_mode) && f.st.st_nlink > 1) {
    if (f.layer == kUpper) attach_partial(fresh, f.st);  // its second link is in workdir
    fresh->shared = f.layer != kUpper || !attach_partial_only(fresh, f.st);
  }
  Node* got = insert_child(parent, name, fresh);
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

// ---------------------------------------------------------------- attributes

void Overlay::read_perm_override(const XattrPath& p, struct stat* st) const {
  char buf[64];
  ssize_t len = p.get(perm_xattr_.c_str(), buf, sizeof(buf) - 1);
  if (len <= 0) return;
  buf[len] = '\0';
  unsigned uid, gid, mode;
  char end;
  if (std::sscanf(buf, "%u:%u:%o%c", &uid, &gid, &mode, &end) != 3) return;  // not ours: ignored
  st->st_uid = uid;
  st->st_gid = gid;
  st->st_mode = (st->st_mode & S_IFMT) | (mode & 07777);
}

void Overlay::fix_stat(Node* n, struct stat* st) {
  if (perm_in_xattr(st->st_mode)) {
    if (auto real = real_of(n))
      read_perm_override(XattrPath(real->dirfd, real->name.empty() ? nullptr : real->name.c_str()),
                         st);
  }
  st->st_ino = n->ino;
  if (opts_.squash_to_root) {
    st->st_uid = 0;
    st->st_gid = 0;
  } else {
    st->st_uid = opts_.squash_to_uid >= 0 ? static_cast<uid_t>(opts_.squash_to_uid)
                                          : opts_.uid_map.to_inside(st->st_uid);
    st->st_gid = opts_.squash_to_gid >= 0 ? static_cast<gid_t>(opts_.squash_to_gid)
                                          : opts_.gid_map.to_inside(st->st_gid);
  }
}

Result<uint32_t> Overlay::merged_nlink(Node* dir) {
  auto l = list(dir);
  if (!l) return Errno{l.error()};
  return 2 + l.value()->subdirs;
}

Result<void> Overlay::getattr(Node* n, int fd, struct stat* st) {
  if (fd >= 0) {
    if (::fstat(fd, st) != 0) return last_errno();
    // An open of a lower name may be of the indexed upper copy (open_file).
    if (S_ISREG(st->st_mode) && n->layer.load() != kUpper && n->shared.load() && index_.valid())
      st->st_nlink = indexed_nlink(n->ino, *st);
  } else if (n->is_dir()) {
    auto stack = stack_of(n);
    if (::fstat(stack->front().fd.get(), st) != 0) return last_errno();
    if (stack->size() > 1) {
      if (opts_.static_nlink) {
        st->st_nlink = 1;
      } else {
        auto nl = merged_nlink(n);
        if (!nl) return Errno{nl.error()};
        st->st_nlink = nl.value();
      }
    }
  } else if (n->anon.valid()) {
    if (::fstat(n->anon.get(), st) != 0) return last_errno();
  } else {
    auto copy = indexed_copy(n);
    if (!copy) return Errno{copy.error()};
    if (copy->valid()) {
      if (::fstat(copy->get(), st) != 0) return last_errno();
      st->st_nlink = indexed_nlink(n->ino, *st);
      fix_stat(n, st);
      return {};
    }
    auto loc = locate(n);
    if (!loc) return Errno{loc.error()};
    if (!stat_at(loc->dirfd, loc->name.c_str(), st)) return last_errno();
    if (loc->layer != kUpper && n->shared.load() && index_.valid()) {
      // Some of its names were removed: the entry counts the names left, all
      // below (there is no upper copy, or indexed_copy would have found it).
      uint32_t c = index_count(n->ino);
      if (c != UINT32_MAX) st->st_nlink = c > 0 ? c : 1;
    }
  }
  if (S_ISREG(st->st_mode) && n->layer.load() == kUpper && index_.valid()) {
    if (st->st_nlink > 1 && partial_of(n)) --st->st_nlink;  // its link in layerfs-partial
    if (n->ino != map_ino_raw(st->st_dev, st->st_ino)) {    // a copy-up: maybe indexed
      uint32_t lower = lower_names(n->ino, *st);
      if (lower != UINT32_MAX) st->st_nlink += lower;
    }
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
  int fd = upper_.valid() ? upper_.get() : layer_roots_.at(1).get();
  if (::fstatvfs(fd, &s) != 0) return last_errno();
  return s;
}

Result<void> Overlay::follow_index(Node* n) {
  // Another name of this lower file was copied up since this one was looked
  // up: link this name to that copy too. Only for changes: reads go through
  // indexed_copy and leave the upper alone.
  if (!n->shared.load() || n->layer.load() == kUpper || !has_index(n->ino)) return {};
  return copy_up(n);
}

Result<UniqueFd> Overlay::indexed_copy(Node* n) {
  if (n->type != S_IFREG || !n->shared.load() || n->layer.load() == kUpper || !index_.valid())
    return UniqueFd();
  auto fd = open_index(n->ino, nullptr);
  if (!fd && fd.error() == ENOENT) return UniqueFd();  // no copy (yet, or a count only)
  return fd;
}

bool Overlay::attach_partial_only(Node* n, const struct stat& st) {
  // An upper file whose only other link is its workdir/layerfs-partial entry.
  return st.st_nlink == 2 && partial_of(n) != nullptr;
}

Result<void> Overlay::fsync_dir(Node* dir, bool datasync) {
  auto stack = stack_of(dir);
  if (stack->front().layer != kUpper) return {};
  int fd = stack->front().fd.get();
  if ((datasync ? ::fdatasync(fd) : ::fsync(fd)) != 0) return last_errno();
  return {};
}

// ---------------------------------------------------------------- readdir

Result<std::shared_ptr<const Listing>> Overlay::build_listing(const DirStack& stack) {
  auto out = std::make_shared<Listing>();
  std::unordered_set<std::string> seen;  // names decided by an upper layer
  for (const auto& ld : stack) {
    auto dfd = open_in_layer(ld.layer, ld.fd.get(), ".", O_RDONLY | O_DIRECTORY);
    if (!dfd) return Errno{dfd.error()};
    struct stat dst;
    if (::fstat(dfd.value().get(), &dst) != 0) return last_errno();
    std::vector<std::string> hidden_below;  // names this layer's OCI whiteouts remove
    // getdents64 straight into a buffer: no DIR stream and its extra calls.
    alignas(struct dirent64) char buf[32768];
    ssize_t len = 0, pos = 0;
    for (;;) {
      if (pos >= len) {
        len = ::getdents64(dfd.value().get(), buf, sizeof buf);
        if (len < 0) return last_errno();
        if (len == 0) break;
        pos = 0;
      }
      auto* e = reinterpret_cast<struct dirent64*>(buf + pos);
      pos += e->d_reclen;
      std::string_view name(e->d_name);
      if (name == "." || name == "..") continue;
      if (ld.layer != kUpper && format::classify_name(name) != format::Whiteout::kNone) {
        if (format::classify_name(name) == format::Whiteout::kOciName)
          hidden_below.emplace_back(name.substr(format::kWhiteoutPrefix.size()));
        continue;
      }
      if (seen.count(std::string(name))) continue;
      unsigned char type = e->d_type;
      struct stat st;
      st.st_dev = dst.st_dev;
      st.st_ino = e->d_ino;
      // Regular files are stat'ed only where they may be xattr whiteouts
      // (see LayerDir::xwhiteouts).
      if (type == DT_UNKNOWN || type == DT_CHR || (type == DT_REG && ld.may_hold_xwhiteouts())) {
        if (!stat_at(ld.fd.get(), e->d_name, &st)) {
          if (errno == ENOENT) continue;
          return last_errno();
        }
        type = static_cast<unsigned char>(IFTODT(st.st_mode));
        if (format::is_whiteout(ld.fd.get(), e->d_name, st)) {
          seen.emplace(name);
          continue;
        }
      }
      seen.emplace(name);
      uint64_t ino = map_ino(ld.layer, st, ld.fd.get(), e->d_name, true);
      out->entries.push_back(DirEntry{std::string(name), ino, type});
      if (type == DT_DIR) ++out->subdirs;
    }
    for (auto& h : hidden_below) seen.insert(std::move(h));
  }
  // Offsets 1 and 2 are "." and ".."; names hash into [3, 2^62 + 3).
  for (auto& e : out->entries) e.off = (std::hash<std::string_view>{}(e.name) >> 2) + 3;
  std::sort(out->entries.begin(), out->entries.end(), [](const DirEntry& a, const DirEntry& b) {
    return a.off != b.off ? a.off < b.off : a.name < b.name;
  });
  for (size_t i = 1; i < out->entries.size(); ++i)  // a collision: the next free value
    if (out->entries[i].off <= out->entries[i - 1].off)
      out->entries[i].off = out->entries[i - 1].off + 1;
  return std::shared_ptr<const Listing>(std::move(out));
}

Result<std::shared_ptr<const Listing>> Overlay::list(Node* dir) {
  if (!dir->is_dir()) return Errno{ENOTDIR};
  std::shared_ptr<const DirStack> stack;
  uint64_t gen;
  {
    std::lock_guard<std::mutex> g(dir->mu);
    if (dir->listing) return dir->listing;
    stack = dir->stack;
    gen = dir->listing_gen;
  }
  auto l = build_listing(*stack);
  if (!l) return l;
  std::lock_guard<std::mutex> g(dir->mu);
  // Keep it only if the directory did not change meanwhile (a change drops
  // the cache; a racing change could otherwise be hidden by this older list).
  if (dir->listing_gen == gen && dir->stack == stack) dir->listing = l.value();
  return l;
}

}  // namespace layer::overlay
