// Overlay: operations that change the tree (create, remove, rename). Each
// copies up what it touches first, then works in the upper
// directory with the kernel overlayfs format: whiteouts are character devices
// 0:0 (RENAME_WHITEOUT where a name leaves), a directory created over a
// whiteout is opaque, renamed directories are copied up whole and made opaque.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "format/overlay_format.hpp"
#include "overlay/overlay.hpp"
#include "util/sys.hpp"
#include "util/xattr_path.hpp"

namespace layer::overlay {

namespace {

std::string to_string(std::string_view s) {
  return std::string(s);
}

}  // namespace

// Before making `name` in `parent`: EEXIST if the merged view has it, else
// the parent copied up and its upper directory's fd (open while *keep is).
Result<int> Overlay::dir_for_new_name(Node* parent, std::string_view name,
                                      std::shared_ptr<const DirStack>* keep) {
  if (!parent->is_dir()) return Errno{ENOTDIR};
  if (name == format::kOpaqueMarker) return Errno{EINVAL};  // would make parent opaque
  auto existing = lookup_node(parent, name);
  if (existing) {
    nodes_.unref(existing.value());
    return Errno{EEXIST};
  }
  if (existing.error() != ENOENT) return Errno{existing.error()};
  if (auto r = copy_up(parent); !r) return Errno{r.error()};
  return upper_fd(parent, keep);
}

// Creates one new name in `parent`: checks that the merged view has no such
// name, copies the parent up, and calls make(dirfd, name) either straight in
// the upper directory or, over a whiteout, in work/ followed by a rename over
// the whiteout (an exchange for directories, which then become opaque).
template <typename MakeFn>
Result<Node*> Overlay::create_common(Node* parent, std::string_view name_sv, mode_t mode,
                                     const Caller& c, struct stat* st, MakeFn make) {
  if (!writable()) return Errno{EROFS};
  std::shared_ptr<const DirStack> keep;
  auto ufd_r = dir_for_new_name(parent, name_sv, &keep);
  if (!ufd_r) return Errno{ufd_r.error()};
  int ufd = ufd_r.value();
  std::string name = to_string(name_sv);
  struct stat pst;
  if (::fstat(ufd, &pst) != 0) return last_errno();

  auto wh = upper_.is_whiteout(ufd, name.c_str());
  if (!wh) return Errno{wh.error()};
  if (!wh.value()) {
    if (auto r = make(ufd, name.c_str()); !r) return Errno{r.error()};
    if (auto r = owners_.set_owner(ufd, name.c_str(), c, pst, mode); !r) {
      if (S_ISDIR(mode))
        ::unlinkat(ufd, name.c_str(), AT_REMOVEDIR);
      else
        ::unlinkat(ufd, name.c_str(), 0);
      return Errno{r.error()};
    }
  } else {
    std::string tmp = upper_.temp_name();
    const char* tn = tmp.c_str();
    if (auto r = make(upper_.work(), tn); !r) return Errno{r.error()};
    auto undo = [&](int err) -> Result<Node*> {
      (void)upper_.remove_in_work(tn);
      return Errno{err};
    };
    // Made in the work directory, it missed the parent's default ACL that
    // umask_for counted on: the umask applies after all.
    if (!S_ISLNK(mode) && (mode & c.umask & 0777) &&
        ::fchmodat(upper_.work(), tn, mode & ~c.umask & 07777, 0) != 0)
      return undo(errno);
    if (auto r = owners_.set_owner(upper_.work(), tn, c, pst, mode); !r) return undo(r.error());
    if (S_ISDIR(mode)) {
      auto fd = sys::open_at(upper_.work(), tn, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
      if (!fd) return undo(fd.error());
      if (auto r = upper_.set_opaque(fd.value().get()); !r) return undo(r.error());
      if (::renameat2(upper_.work(), tn, ufd, name.c_str(), RENAME_EXCHANGE) != 0)
        return undo(errno);
      (void)upper_.remove_in_work(tn);  // now the whiteout
    } else if (::renameat(upper_.work(), tn, ufd, name.c_str()) != 0) {
      return undo(errno);
    }
  }
  listings_.invalidate(parent);
  if (S_ISDIR(mode)) return lookup(parent, name_sv, st);
  // A new non-directory: in the upper layer, with no origin and nothing
  // below it to merge, so its name need not be resolved again.
  Found f;
  f.layer = kUpper;
  if (::fstatat(ufd, name.c_str(), &f.st, AT_SYMLINK_NOFOLLOW) != 0) return last_errno();
  Node* n = adopt(parent, name_sv, f, resolver_.map_ino_raw(f.st.st_dev, f.st.st_ino));
  *st = f.st;
  fix_stat(n, st);
  return n;
}

mode_t Overlay::umask_for(Node* parent, const Caller& c) {
  if (c.umask == 0) return 0;
  // A default ACL decides the new object's permissions instead of the umask
  // (POSIX.1e, and the kernel skips the umask for such parents): the daemon
  // creates with umask 0, and the upper's filesystem applies the ACL that
  // copy-up carried over.
  auto stack = stack_of(parent);
  XattrPath dir(stack->front().fd.get(), nullptr);
  if (dir.get("system.posix_acl_default", nullptr, 0) > 0) return 0;
  return c.umask;
}

Result<Node*> Overlay::mknod(Node* parent, std::string_view name, mode_t mode, dev_t rdev,
                             const Caller& c, struct stat* st) {
  if (S_ISCHR(mode) && rdev == makedev(0, 0)) return Errno{EPERM};  // a whiteout
  if (S_ISDIR(mode) || S_ISLNK(mode)) return Errno{EINVAL};
  if ((mode & S_IFMT) == 0) mode |= S_IFREG;
  mode &= ~umask_for(parent, c) | S_IFMT;
  return create_common(parent, name, mode, c, st, [&](int dfd, const char* n) -> Result<void> {
    if (::mknodat(dfd, n, mode, rdev) != 0) return last_errno();
    return {};
  });
}

Result<Node*> Overlay::mkdir(Node* parent, std::string_view name, mode_t mode, const Caller& c,
                             struct stat* st) {
  mode = S_IFDIR | (mode & ~umask_for(parent, c) & 07777);
  return create_common(parent, name, mode, c, st, [&](int dfd, const char* n) -> Result<void> {
    if (::mkdirat(dfd, n, mode & 07777) != 0) return last_errno();
    return {};
  });
}

Result<Node*> Overlay::symlink(Node* parent, std::string_view name, const char* target,
                               const Caller& c, struct stat* st) {
  return create_common(parent, name, S_IFLNK | 0777, c, st,
                       [&](int dfd, const char* n) -> Result<void> {
                         if (::symlinkat(target, dfd, n) != 0) return last_errno();
                         return {};
                       });
}

Result<Node*> Overlay::create(Node* parent, std::string_view name, mode_t mode, int flags,
                              const Caller& c, struct stat* st, UniqueFd* fd) {
  mode = S_IFREG | (mode & ~umask_for(parent, c) & 07777);
  int oflags = (flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY)) | O_CREAT | O_EXCL | O_NOFOLLOW;
  return create_common(parent, name, mode, c, st, [&](int dfd, const char* n) -> Result<void> {
    auto r = sys::open_at(dfd, n, oflags, mode & 07777);
    if (!r) return Errno{r.error()};
    *fd = std::move(r).value();
    return {};
  });
}

Result<Node*> Overlay::tmpfile(Node* parent, mode_t mode, int flags, const Caller& c,
                               struct stat* st, UniqueFd* fd) {
  if (!writable()) return Errno{EROFS};
  if (!parent->is_dir()) return Errno{ENOTDIR};
  if (auto r = copy_up(parent); !r) return Errno{r.error()};
  std::shared_ptr<const DirStack> keep;
  auto ufd = upper_fd(parent, &keep);
  if (!ufd) return Errno{ufd.error()};
  struct stat pst;
  if (::fstat(ufd.value(), &pst) != 0) return last_errno();
  mode &= ~umask_for(parent, c) & 07777;
  // O_EXCL stays: such a file can never be given a name.
  int oflags = (flags & ~(O_CREAT | O_TRUNC | O_NOCTTY | O_TMPFILE)) | O_TMPFILE;
  auto f = sys::open_at(ufd.value(), ".", oflags, mode);
  if (!f) return Errno{f.error()};
  int tfd = f.value().get();
  uid_t uid = owners_.outside_uid(c.uid);
  gid_t gid = (pst.st_mode & S_ISGID) ? pst.st_gid : owners_.outside_gid(c.gid);
  if (::fchown(tfd, uid, gid) != 0) return last_errno();
  // chown clears the set-id bits: put back what was asked for.
  if ((mode & (S_ISUID | S_ISGID)) && ::fchmod(tfd, mode) != 0) return last_errno();
  auto anon = sys::open_at(AT_FDCWD, sys::proc_path(tfd).c_str(), O_PATH);
  if (!anon) return Errno{anon.error()};
  struct stat fst;
  if (::fstat(tfd, &fst) != 0) return last_errno();
  Node* n = new Node(S_IFREG, resolver_.map_ino_raw(fst.st_dev, fst.st_ino));
  n->layer = kUpper;
  n->anon = std::move(anon).value();
  nodes_.add_unnamed(n);
  *st = fst;
  fix_stat(n, st);
  *fd = std::move(f).value();
  return n;
}

Result<Node*> Overlay::link(Node* src, Node* parent, std::string_view name, struct stat* st) {
  if (src->is_dir()) return Errno{EPERM};
  if (!writable()) return Errno{EROFS};
  if (auto r = copy_up(src); !r) return Errno{r.error()};
  Located loc;
  std::string anon_path;
  if (src->anon.valid()) {  // O_TMPFILE: linked through /proc, unless made O_EXCL
    anon_path = sys::proc_path(src->anon.get());
  } else {
    auto l = locate(src);
    if (!l) return Errno{l.error()};
    loc = std::move(l).value();
  }
  auto link_src = [&](int dfd, const char* dname) {
    if (anon_path.empty()) return ::linkat(loc.dirfd, loc.name.c_str(), dfd, dname, 0);
    // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH (before Linux 6.10): without it,
    // ENOENT, and the /proc link is the way (an O_EXCL file refuses both).
    if (::linkat(src->anon.get(), "", dfd, dname, AT_EMPTY_PATH) == 0) return 0;
    if (errno != ENOENT) return -1;
    return ::linkat(AT_FDCWD, anon_path.c_str(), dfd, dname, AT_SYMLINK_FOLLOW);
  };
  std::shared_ptr<const DirStack> keep;
  auto ufd_r = dir_for_new_name(parent, name, &keep);
  if (!ufd_r) return Errno{ufd_r.error()};
  int ufd = ufd_r.value();
  std::string nm = to_string(name);
  auto wh = upper_.is_whiteout(ufd, nm.c_str());
  if (!wh) return Errno{wh.error()};
  // A copy-up linked into another directory makes it impure, as the
  // kernel's link does: its readdir then gives the copy's origin inode number.
  if (anon_path.empty()) {
    XattrPath sp(loc.dirfd, loc.name.c_str());
    if (sp.get(upper_.xattrs().origin.data(), nullptr, 0) > 0 ||
        sp.get(upper_.xattrs().layerfs_origin.data(), nullptr, 0) > 0)
      upper_.mark_impure(ufd);
  }
  if (!wh.value()) {
    if (link_src(ufd, nm.c_str()) != 0) return last_errno();
  } else {
    std::string tmp = upper_.temp_name();
    if (link_src(upper_.work(), tmp.c_str()) != 0) return last_errno();
    if (::renameat(upper_.work(), tmp.c_str(), ufd, nm.c_str()) != 0) {
      int e = errno;
      ::unlinkat(upper_.work(), tmp.c_str(), 0);
      return Errno{e};
    }
  }
  listings_.invalidate(parent);
  src->shared = true;
  auto r = lookup(parent, name, st);
  if (r) r.value()->shared = true;
  return r;
}

// ---------------------------------------------------------------- removal

std::shared_ptr<const UniqueFd> Overlay::hold_object(Node* n) {
  if (n->is_dir() || n->anon.valid()) return nullptr;
  auto loc = locate(n);
  if (!loc) return nullptr;
  auto fd = sys::open_at(loc->dirfd, loc->name.c_str(), O_PATH | O_NOFOLLOW);
  if (!fd) return nullptr;
  return std::make_shared<const UniqueFd>(std::move(fd).value());
}

void Overlay::set_orphan(Node* n, std::shared_ptr<const UniqueFd> kept) {
  if (!kept) return;
  std::lock_guard<std::mutex> g(n->mu);
  n->orphan = std::move(kept);
}

Result<void> Overlay::unindex_name(Node* n) {
  if (!n->shared.load() || !index_.valid() || n->type != S_IFREG) return {};
  // A lower name of a multiply linked file is copied up (into the index, or
  // linked to the copy another name made) before it goes, as the kernel
  // does with index=on: the index then counts the names left below.
  if (auto r = copy_up(n); !r) return r;
  if (auto loc = locate(n); loc && loc->layer == kUpper)
    index_.forget(loc->dirfd, loc->name.c_str());
  return {};
}

Result<void> Overlay::unlink(Node* parent, std::string_view name) {
  if (!writable()) return Errno{EROFS};
  auto nr = lookup_node(parent, name);
  if (!nr) return Errno{nr.error()};
  NodeRef n(&nodes_, nr.value());
  if (n.get()->is_dir()) return Errno{EISDIR};
  if (auto r = copy_up(parent); !r) return r;
  if (auto r = unindex_name(n.get()); !r) return r;
  std::shared_ptr<const DirStack> pstack;
  auto ufd_r = upper_fd(parent, &pstack);
  if (!ufd_r) return Errno{ufd_r.error()};
  int ufd = ufd_r.value();
  std::string nm = to_string(name);
  bool lower = n.get()->layer.load() != kUpper;
  if (!lower) {
    auto lh = resolver_.lower_has(*pstack, name);
    if (!lh) return Errno{lh.error()};
    lower = lh.value();
  }
  auto kept = hold_object(n.get());
  if (n.get()->layer.load() == kUpper) {
    if (lower) {
      std::string tmp = upper_.temp_name();
      if (auto r = upper_.move_name(ufd, nm.c_str(), upper_.work(), tmp.c_str(), true); !r)
        return r;
      ::unlinkat(upper_.work(), tmp.c_str(), 0);
    } else if (::unlinkat(ufd, nm.c_str(), 0) != 0) {
      return last_errno();
    }
  } else if (auto r = upper_.make_whiteout(ufd, nm.c_str()); !r) {
    return r;
  }
  set_orphan(n.get(), std::move(kept));
  nodes_.detach_child(parent, name);
  listings_.invalidate(parent);
  return {};
}

Result<void> Overlay::rmdir(Node* parent, std::string_view name) {
  if (!writable()) return Errno{EROFS};
  auto nr = lookup_node(parent, name);
  if (!nr) return Errno{nr.error()};
  NodeRef n(&nodes_, nr.value());
  if (!n.get()->is_dir()) return Errno{ENOTDIR};
  auto l = listings_.list(n.get());
  if (!l) return Errno{l.error()};
  if (!l.value()->entries.empty()) return Errno{ENOTEMPTY};
  if (auto r = copy_up(parent); !r) return r;
  std::shared_ptr<const DirStack> pstack;
  auto ufd_r = upper_fd(parent, &pstack);
  if (!ufd_r) return Errno{ufd_r.error()};
  int ufd = ufd_r.value();
  std::string nm = to_string(name);
  auto lh = resolver_.lower_has(*pstack, name);
  if (!lh) return Errno{lh.error()};
  bool lower = lh.value();
  if (n.get()->layer.load() == kUpper) {
    // The upper directory may still hold whiteouts: move it to work/ (leaving
    // a whiteout if a lower layer has the name) and remove it there.
    std::string tmp = upper_.temp_name();
    if (lower || ::unlinkat(ufd, nm.c_str(), AT_REMOVEDIR) != 0) {
      if (auto r = upper_.move_name(ufd, nm.c_str(), upper_.work(), tmp.c_str(), lower); !r)
        return r;
      (void)upper_.remove_in_work(tmp.c_str());
    }
  } else if (auto r = upper_.make_whiteout(ufd, nm.c_str()); !r) {
    return r;
  }
  nodes_.detach_child(parent, name);
  listings_.invalidate(parent);
  return {};
}

// ---------------------------------------------------------------- rename

Result<void> Overlay::copy_up_tree(Node* dir) {
  if (auto r = copy_up(dir); !r) return r;
  auto stack = stack_of(dir);
  if (stack->size() == 1) return {};  // upper only: nothing below to copy
  auto l = listings_.list(dir);
  if (!l) return Errno{l.error()};
  for (const auto& e : l.value()->entries) {
    auto c = lookup_node(dir, e.name);
    if (!c) {
      if (c.error() == ENOENT) continue;
      return Errno{c.error()};
    }
    NodeRef child(&nodes_, c.value());
    auto r = child.get()->is_dir() ? copy_up_tree(child.get()) : copy_up(child.get());
    if (!r) return r;
  }
  // Everything visible is in the upper directory now: make it opaque and stop
  // merging the lower directories into it.
  if (auto r = upper_.set_opaque(stack->front().fd.get()); !r) return r;
  // The kernel lists an opaque directory as it is, so whiteouts left in it
  // would show up there: they hide nothing now, remove them.
  if (auto r = upper_.remove_whiteouts(stack->front().fd.get()); !r) return r;
  int dup = ::fcntl(stack->front().fd.get(), F_DUPFD_CLOEXEC, 0);
  if (dup < 0) return last_errno();
  auto only = std::make_shared<DirStack>();
  only->push_back(LayerDir{kUpper, UniqueFd(dup)});
  std::lock_guard<std::mutex> g(dir->mu);
  dir->stack = std::move(only);
  ++dir->listing_gen;  // entries are the same, but their inode numbers were read below
  return {};
}

std::string Overlay::upper_redirect(Node* dir) {
  auto stack = stack_of(dir);
  if (stack->front().layer != kUpper) return {};
  return format::read_dir_marks(stack->front().fd.get()).redirect;
}

Result<void> Overlay::set_redirect(Node* dir, Node* parent, const std::string& name, bool samedir) {
  std::string value = upper_redirect(dir);
  if (!value.empty() && (samedir || value[0] == '/')) return {};  // still holds
  if (samedir) {
    value = name;
  } else {
    // As the kernel's ovl_get_redirect: each ancestor contributes its own
    // redirect, or else its name, up to the root or an absolute redirect.
    if (value.empty()) value = name;
    Node* p = parent;
    bool held = false;
    while (value[0] != '/') {
      std::string pname;
      Node* pp = nodes_.parent_of(p, &pname);
      if (!pp) {
        value = "/" + value;
        break;
      }
      std::string pr = upper_redirect(p);
      value = (pr.empty() ? pname : pr) + "/" + value;
      if (held) nodes_.unref(p);
      p = pp;
      held = true;
    }
    if (held) nodes_.unref(p);
  }
  auto stack = stack_of(dir);
  XattrPath path(stack->front().fd.get(), nullptr);
  if (path.set(upper_.xattrs().redirect.data(), value.data(), value.size(), 0) != 0)
    return last_errno();
  return {};
}

Result<void> Overlay::rename(Node* p1, std::string_view n1, Node* p2, std::string_view n2,
                             unsigned flags) {
  if (!writable()) return Errno{EROFS};
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) return Errno{EINVAL};
  if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE)) return Errno{EINVAL};
  if (!valid_name(n2)) return Errno{n2.size() > NAME_MAX ? ENAMETOOLONG : EINVAL};
  auto sr = lookup_node(p1, n1);
  if (!sr) return Errno{sr.error()};
  NodeRef src(&nodes_, sr.value());
  auto dr = lookup_node(p2, n2);
  if (!dr && dr.error() != ENOENT) return Errno{dr.error()};
  NodeRef dst(&nodes_, dr ? dr.value() : nullptr);
  Node* s = src.get();
  Node* d = dst.get();
  if (d == s) return {};
  if ((flags & RENAME_NOREPLACE) && d) return Errno{EEXIST};
  if ((flags & RENAME_EXCHANGE) && !d) return Errno{ENOENT};
  bool exchange = flags & RENAME_EXCHANGE;
  if (d && !exchange) {
    if (s->is_dir() && !d->is_dir()) return Errno{ENOTDIR};
    if (!s->is_dir() && d->is_dir()) return Errno{EISDIR};
    if (d->is_dir()) {
      auto l = listings_.list(d);
      if (!l) return Errno{l.error()};
      if (!l.value()->entries.empty()) return Errno{ENOTEMPTY};
    }
  }
  if (auto r = copy_up(p1); !r) return r;
  if (auto r = copy_up(p2); !r) return r;
  // A directory with lower parts moves by a redirect (the kernel's
  // redirect_dir=on format): only the directory itself is copied up, so the
  // rename costs the same whatever it holds. An exchange copies the trees.
  bool redirect = false;
  if (s->is_dir() && !exchange && config_.redirect_dir) {
    if (auto r = copy_up(s); !r) return r;
    redirect = stack_of(s)->size() > 1;
  } else if (auto r = s->is_dir() ? copy_up_tree(s) : copy_up(s); !r) {
    return r;
  }
  if (exchange) {
    if (auto r = d->is_dir() ? copy_up_tree(d) : copy_up(d); !r) return r;
  } else if (d) {
    if (auto r = unindex_name(d); !r) return r;  // its name goes, as in unlink
  }
  std::shared_ptr<const DirStack> k1, k2;
  auto u1r = upper_fd(p1, &k1);
  auto u2r = upper_fd(p2, &k2);
  if (!u1r || !u2r) return Errno{EIO};
  int u1 = u1r.value(), u2 = u2r.value();
  std::string a = to_string(n1), b = to_string(n2);
  auto l1 = resolver_.lower_has(*k1, n1);
  auto l2 = resolver_.lower_has(*k2, n2);
  if (!l1 || !l2) return Errno{!l1 ? l1.error() : l2.error()};
  bool src_lower = l1.value(), dst_lower = l2.value();

  // A directory arriving where a lower layer has the name must hide it.
  auto opaque_if = [&](Node* n, bool needed) -> Result<void> {
    if (!n->is_dir() || !needed) return {};
    return upper_.set_opaque(stack_of(n)->front().fd.get());
  };

  if (redirect) {
    if (auto r = set_redirect(s, p1, a, p1 == p2); !r) return r;
  }
  auto kept = d && !exchange ? hold_object(d) : nullptr;
  if (exchange) {
    if (auto r = opaque_if(s, dst_lower); !r) return r;
    if (auto r = opaque_if(d, src_lower); !r) return r;
    if (::renameat2(u1, a.c_str(), u2, b.c_str(), RENAME_EXCHANGE) != 0) return last_errno();
  } else {
    // A redirect already says where the lower directories are.
    if (auto r = opaque_if(s, dst_lower && !redirect); !r) return r;
    std::string moved_out;
    if (d && d->is_dir() && d->layer.load() == kUpper) {
      // The upper directory being replaced may hold whiteouts; move it away.
      moved_out = upper_.temp_name();
      if (auto r = upper_.move_name(u2, b.c_str(), upper_.work(), moved_out.c_str(), dst_lower); !r)
        return r;
    }
    auto wh = upper_.is_whiteout(u2, b.c_str());
    bool dst_is_wh = wh.ok() && wh.value();
    if (s->is_dir() && dst_is_wh) {
      if (::renameat2(u1, a.c_str(), u2, b.c_str(), RENAME_EXCHANGE) != 0) return last_errno();
      if (!src_lower) ::unlinkat(u1, a.c_str(), 0);  // the whiteout now at the old name
    } else if (auto r = upper_.move_name(u1, a.c_str(), u2, b.c_str(), src_lower); !r) {
      return r;
    }
    if (!moved_out.empty()) (void)upper_.remove_in_work(moved_out.c_str());
  }

  upper_.mark_impure(u2);
  if (exchange) upper_.mark_impure(u1);

  // The tree: move the nodes to their new names.
  if (d) set_orphan(d, std::move(kept));
  nodes_.move(p1, a, s, p2, b, d, exchange);
  listings_.invalidate(p1);
  if (p2 != p1) listings_.invalidate(p2);
  return {};
}

}  // namespace layer::overlay
