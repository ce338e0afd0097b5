// Overlay: operations that change the tree (create, remove, rename, setattr,
// xattrs). Each copies up what it touches first, then works in the upper
// directory with the kernel overlayfs format: whiteouts are character devices
// 0:0 (RENAME_WHITEOUT where a name leaves), a directory created over a
// whiteout is opaque, renamed directories are copied up whole and made opaque.
#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "overlay/overlay.hpp"
#include "format/overlay_format.hpp"
#include "store/object_ref.hpp"
#include "util/xattr_path.hpp"
#include "util/sys.hpp"

namespace layer::overlay {

namespace {

std::string to_string(std::string_view s) {
  return std::string(s);
}

bool stat_at_nofollow(int dirfd, const char* name, struct stat* st) {
  return ::fstatat(dirfd, name, st, AT_SYMLINK_NOFOLLOW) == 0;
}

}  // namespace

bool Overlay::escaped_xattr(std::string_view name) const {
  return format::is_escaped_xattr(
      name, opts_.userxattr ? format::XattrNamespace::kUser : format::XattrNamespace::kTrusted);
}

bool Overlay::private_xattr(std::string_view name) const {
  // All of our own namespace (an image's own such names are stored escaped);
  // of the other one, the names the format reads there too (whiteouts,
  // opaque dirs, redirects), so that a program cannot forge them; and the
  // owner and mode xattr_permissions keeps.
  return name.starts_with(xattr_prefix_) || format::is_private_xattr(name);
}

Result<void> Overlay::set_opaque(int dirfd) {
  if (XattrPath(dirfd, nullptr).set(opaque_xattr_.c_str(), "y", 1, 0) != 0) return last_errno();
  return {};
}

Result<void> Overlay::make_whiteout(int dirfd, const char* name) {
  if (::mknodat(dirfd, name, S_IFCHR | 0, makedev(0, 0)) == 0) return {};
  if (errno != EPERM) return last_errno();
  // Without CAP_MKNOD: the kernel's xattr whiteout.
  auto fd = sys::open_at(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0);
  if (!fd) return Errno{fd.error()};
  const char* wh = format::names(opts_.userxattr ? format::XattrNamespace::kUser
                                                 : format::XattrNamespace::kTrusted)
                       .whiteout.data();
  if (::fsetxattr(fd.value().get(), wh, "", 0, 0) != 0) {
    int e = errno;
    ::unlinkat(dirfd, name, 0);
    return Errno{e};
  }
  return {};
}

Result<void> Overlay::move_name(int fromdir, const char* from, int todir, const char* to,
                                bool whiteout) {
  if (::renameat2(fromdir, from, todir, to, whiteout ? RENAME_WHITEOUT : 0) == 0) return {};
  // No RENAME_WHITEOUT on this filesystem (EINVAL) or without CAP_MKNOD
  // (EPERM): the rename, then our own whiteout.
  if (!whiteout || (errno != EINVAL && errno != EPERM)) return last_errno();
  if (::renameat(fromdir, from, todir, to) != 0) return last_errno();
  return make_whiteout(fromdir, from);
}

Result<bool> Overlay::is_upper_whiteout(int dirfd, const char* name) {
  struct stat st;
  if (::fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
    return errno == ENOENT ? Result<bool>(false) : Result<bool>(last_errno());
  if (format::is_whiteout(dirfd, name, st)) return true;
  return Errno{EEXIST};  // a real object: the caller's merged lookup missed it
}

Result<void> Overlay::write_perm_override(int dirfd, const char* name, uid_t uid, gid_t gid,
                                          mode_t mode) {
  char buf[64];
  int len = std::snprintf(buf, sizeof(buf), "%u:%u:%o", static_cast<unsigned>(uid),
                          static_cast<unsigned>(gid), static_cast<unsigned>(mode & 07777));
  if (XattrPath(dirfd, name).set(perm_xattr_.c_str(), buf, static_cast<size_t>(len), 0) != 0)
    return last_errno();
  return {};
}

Result<void> Overlay::set_owner(int dirfd, const char* name, const Caller& c,
                                const struct stat& pst, mode_t mode) {
  uid_t uid = opts_.uid_map.to_outside(c.uid);
  gid_t gid = opts_.gid_map.to_outside(c.gid);
  if (pst.st_mode & S_ISGID) {
    gid = pst.st_gid;
    if (S_ISDIR(mode)) mode |= S_ISGID;
  }
  if (perm_in_xattr(mode)) return write_perm_override(dirfd, name, uid, gid, mode);
  // Usually the daemon's own ids are the caller's (root in a container):
  // then the object already has them, and a chown would only cost a write.
  struct stat made;
  if (::fstatat(dirfd, name, &made, AT_SYMLINK_NOFOLLOW) == 0 && made.st_uid == uid &&
      made.st_gid == gid)
    return {};
  if (::fchownat(dirfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) != 0) return last_errno();
  // chown clears the set-id bits: put back what was asked for.
  if (!S_ISLNK(mode) && (mode & (S_ISUID | S_ISGID)) &&
      ::fchmodat(dirfd, name, mode & 07777, 0) != 0)
    return last_errno();
  return {};
}

// Before making `name` in `parent`: EEXIST if the merged view has it, else
// the parent copied up and its upper directory's fd (open while *keep is).
Result<int> Overlay::dir_for_new_name(Node* parent, std::string_view name,
                                      std::shared_ptr<const DirStack>* keep) {
  if (!parent->is_dir()) return Errno{ENOTDIR};
  auto existing = lookup_node(parent, name);
  if (existing) {
    unref(existing.value());
    return Errno{EEXIST};
  }
  if (existing.error() != ENOENT) return Errno{existing.error()};
  if (auto r = copy_up(parent); !r) return Errno{r.error()};
  return upper_dirfd(parent, keep);
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

  auto wh = is_upper_whiteout(ufd, name.c_str());
  if (!wh) return Errno{wh.error()};
  if (!wh.value()) {
    if (auto r = make(ufd, name.c_str()); !r) return Errno{r.error()};
    if (auto r = set_owner(ufd, name.c_str(), c, pst, mode); !r) {
      if (S_ISDIR(mode))
        ::unlinkat(ufd, name.c_str(), AT_REMOVEDIR);
      else
        ::unlinkat(ufd, name.c_str(), 0);
      return Errno{r.error()};
    }
  } else {
    std::string tmp = temp_name();
    const char* tn = tmp.c_str();
    if (auto r = make(work_.get(), tn); !r) return Errno{r.error()};
    auto undo = [&](int err) -> Result<Node*> {
      (void)remove_in_work(tn);
      return Errno{err};
    };
    if (auto r = set_owner(work_.get(), tn, c, pst, mode); !r) return undo(r.error());
    if (S_ISDIR(mode)) {
      auto fd = sys::open_at(work_.get(), tn, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
      if (!fd) return undo(fd.error());
      if (auto r = set_opaque(fd.value().get()); !r) return undo(r.error());
      if (::renameat2(work_.get(), tn, ufd, name.c_str(), RENAME_EXCHANGE) != 0) return undo(errno);
      (void)remove_in_work(tn);  // now the whiteout
    } else if (::renameat(work_.get(), tn, ufd, name.c_str()) != 0) {
      return undo(errno);
    }
  }
  invalidate_listing(parent);
  if (S_ISDIR(mode)) return lookup(parent, name_sv, st);
  // A new non-directory: in the upper layer, with no origin and nothing
  // below it to merge, so its name need not be resolved again.
  Found f;
  f.layer = kUpper;
  if (::fstatat(ufd, name.c_str(), &f.st, AT_SYMLINK_NOFOLLOW) != 0) return last_errno();
  Node* n = adopt(parent, name_sv, f, map_ino_raw(f.st.st_dev, f.st.st_ino));
  *st = f.st;
  fix_stat(n, st);
  return n;
}

Result<Node*> Overlay::mknod(Node* parent, std::string_view name, mode_t mode, dev_t rdev,
                             const Caller& c, struct stat* st) {
  if (S_ISCHR(mode) && rdev == makedev(0, 0)) return Errno{EPERM};  // a whiteout
  if (S_ISDIR(mode) || S_ISLNK(mode)) return Errno{EINVAL};
  if ((mode & S_IFMT) == 0) mode |= S_IFREG;
  mode &= ~c.umask | S_IFMT;
  return create_common(parent, name, mode, c, st, [&](int dfd, const char* n) -> Result<void> {
    if (::mknodat(dfd, n, mode, rdev) != 0) return last_errno();
    return {};
  });
}

Result<Node*> Overlay::mkdir(Node* parent, std::string_view name, mode_t mode, const Caller& c,
                             struct stat* st) {
  mode = S_IFDIR | (mode & ~c.umask & 07777);
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
  mode = S_IFREG | (mode & ~c.umask & 07777);
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
  auto ufd = upper_dirfd(parent, &keep);
  if (!ufd) return Errno{ufd.error()};
  struct stat pst;
  if (::fstat(ufd.value(), &pst) != 0) return last_errno();
  mode &= ~c.umask & 07777;
  // O_EXCL stays: such a file can never be given a name.
  int oflags = (flags & ~(O_CREAT | O_TRUNC | O_NOCTTY | O_TMPFILE)) | O_TMPFILE;
  auto f = sys::open_at(ufd.value(), ".", oflags, mode);
  if (!f) return Errno{f.error()};
  int tfd = f.value().get();
  uid_t uid = opts_.uid_map.to_outside(c.uid);
  gid_t gid = (pst.st_mode & S_ISGID) ? pst.st_gid : opts_.gid_map.to_outside(c.gid);
  if (::fchown(tfd, uid, gid) != 0) return last_errno();
  // chown clears the set-id bits: put back what was asked for.
  if ((mode & (S_ISUID | S_ISGID)) && ::fchmod(tfd, mode) != 0) return last_errno();
  auto anon = sys::open_at(AT_FDCWD, sys::proc_path(tfd).c_str(), O_PATH);
  if (!anon) return Errno{anon.error()};
  struct stat fst;
  if (::fstat(tfd, &fst) != 0) return last_errno();
  Node* n = new Node(S_IFREG, map_ino_raw(fst.st_dev, fst.st_ino));
  n->layer = kUpper;
  n->anon = std::move(anon).value();
  {
    std::lock_guard<std::mutex> g(tree_mu_);
    n->refs = 1;
    n->unlinked = true;  // in no directory: freed with its last reference
    detached_.insert(n);
    ++nodes_;
  }
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
  auto wh = is_upper_whiteout(ufd, nm.c_str());
  if (!wh) return Errno{wh.error()};
  if (!wh.value()) {
    if (link_src(ufd, nm.c_str()) != 0) return last_errno();
  } else {
    std::string tmp = temp_name();
    if (link_src(work_.get(), tmp.c_str()) != 0) return last_errno();
    if (::renameat(work_.get(), tmp.c_str(), ufd, nm.c_str()) != 0) {
      int e = errno;
      ::unlinkat(work_.get(), tmp.c_str(), 0);
      return Errno{e};
    }
  }
  invalidate_listing(parent);
  src->shared = true;
  auto r = lookup(parent, name, st);
  if (r) r.value()->shared = true;
  return r;
}

// ---------------------------------------------------------------- removal

Result<void> Overlay::unlink(Node* parent, std::string_view name) {
  if (!writable()) return Errno{EROFS};
  auto nr = lookup_node(parent, name);
  if (!nr) return Errno{nr.error()};
  NodeRef n(this, nr.value());
  if (n.get()->is_dir()) return Errno{EISDIR};
  if (auto r = copy_up(parent); !r) return r;
  if (n.get()->shared.load() && index_.valid()) {
    if (auto r = follow_index(n.get()); !r) return r;
    if (n.get()->layer.load() != kUpper) {
      // One name of a lower file with several leaves: the others count one less.
      struct stat lst;
      auto loc = locate(n.get());
      if (loc && stat_at_nofollow(loc->dirfd, loc->name.c_str(), &lst))
        (void)forget_lower_name(n.get()->ino, lst.st_nlink);
    } else {
      auto loc = locate(n.get());
      struct stat ust;
      if (loc && stat_at_nofollow(loc->dirfd, loc->name.c_str(), &ust) && ust.st_nlink == 1)
        (void)keep_last_link(n.get()->ino, loc->dirfd, loc->name.c_str());
    }
  }
  std::shared_ptr<const DirStack> pstack;
  auto ufd_r = upper_dirfd(parent, &pstack);
  if (!ufd_r) return Errno{ufd_r.error()};
  int ufd = ufd_r.value();
  std::string nm = to_string(name);
  bool lower = n.get()->layer.load() != kUpper;
  if (!lower) {
    auto lh = lower_has(*pstack, name);
    if (!lh) return Errno{lh.error()};
    lower = lh.value();
  }
  if (n.get()->layer.load() == kUpper) {
    if (lower) {
      std::string tmp = temp_name();
      if (auto r = move_name(ufd, nm.c_str(), work_.get(), tmp.c_str(), true); !r) return r;
      ::unlinkat(work_.get(), tmp.c_str(), 0);
    } else if (::unlinkat(ufd, nm.c_str(), 0) != 0) {
      return last_errno();
    }
  } else if (auto r = make_whiteout(ufd, nm.c_str()); !r) {
    return r;
  }
  detach_child(parent, name);
  invalidate_listing(parent);
  return {};
}

Result<void> Overlay::rmdir(Node* parent, std::string_view name) {
  if (!writable()) return Errno{EROFS};
  auto nr = lookup_node(parent, name);
  if (!nr) return Errno{nr.error()};
  NodeRef n(this, nr.value());
  if (!n.get()->is_dir()) return Errno{ENOTDIR};
  auto l = list(n.get());
  if (!l) return Errno{l.error()};
  if (!l.value()->entries.empty()) return Errno{ENOTEMPTY};
  if (auto r = copy_up(parent); !r) return r;
  std::shared_ptr<const DirStack> pstack;
  auto ufd_r = upper_dirfd(parent, &pstack);
  if (!ufd_r) return Errno{ufd_r.error()};
  int ufd = ufd_r.value();
  std::string nm = to_string(name);
  auto lh = lower_has(*pstack, name);
  if (!lh) return Errno{lh.error()};
  bool lower = lh.value();
  if (n.get()->layer.load() == kUpper) {
    // The upper directory may still hold whiteouts: move it to work/ (leaving
    // a whiteout if a lower layer has the name) and remove it there.
    std::string tmp = temp_name();
    if (lower || ::unlinkat(ufd, nm.c_str(), AT_REMOVEDIR) != 0) {
      if (auto r = move_name(ufd, nm.c_str(), work_.get(), tmp.c_str(), lower); !r) return r;
      (void)remove_in_work(tmp.c_str());
    }
  } else if (auto r = make_whiteout(ufd, nm.c_str()); !r) {
    return r;
  }
  detach_child(parent, name);
  invalidate_listing(parent);
  return {};
}

// ---------------------------------------------------------------- rename

Result<void> Overlay::remove_whiteouts(int dirfd) {
  auto fd = sys::open_at(dirfd, ".", O_RDONLY | O_DIRECTORY);
  if (!fd) return Errno{fd.error()};
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::fdopendir(fd.value().get()), &::closedir);
  if (!dir) return last_errno();
  fd.value().release();
  std::vector<std::string> victims;
  for (;;) {
    errno = 0;
    struct dirent* e = ::readdir(dir.get());
    if (!e) {
      if (errno != 0) return last_errno();
      break;
    }
    if (e->d_type != DT_CHR && e->d_type != DT_REG && e->d_type != DT_UNKNOWN) continue;
    std::string_view nm(e->d_name);
    if (nm == "." || nm == "..") continue;
    auto wh = is_upper_whiteout(dirfd, e->d_name);
    if (wh.ok() && wh.value()) victims.emplace_back(nm);
  }
  for (const auto& v : victims)
    if (::unlinkat(dirfd, v.c_str(), 0) != 0 && errno != ENOENT) return last_errno();
  return {};
}

Result<void> Overlay::copy_up_tree(Node* dir) {
  if (auto r = copy_up(dir); !r) return r;
  auto stack = stack_of(dir);
  if (stack->size() == 1) return {};  // upper only: nothing below to copy
  auto l = list(dir);
  if (!l) return Errno{l.error()};
  for (const auto& e : l.value()->entries) {
    auto c = lookup_node(dir, e.name);
    if (!c) {
      if (c.error() == ENOENT) continue;
      return Errno{c.error()};
    }
    NodeRef child(this, c.value());
    auto r = child.get()->is_dir() ? copy_up_tree(child.get()) : copy_up(child.get());
    if (!r) return r;
  }
  // Everything visible is in the upper directory now: make it opaque and stop
  // merging the lower directories into it.
  if (auto r = set_opaque(stack->front().fd.get()); !r) return r;
  // The kernel lists an opaque directory as it is, so whiteouts left in it
  // would show up there: they hide nothing now, remove them.
  if (auto r = remove_whiteouts(stack->front().fd.get()); !r) return r;
  int dup = ::fcntl(stack->front().fd.get(), F_DUPFD_CLOEXEC, 0);
  if (dup < 0) return last_errno();
  auto only = std::make_shared<DirStack>();
  only->push_back(LayerDir{kUpper, UniqueFd(dup)});
  std::lock_guard<std::mutex> g(dir->mu);
  dir->stack = std::move(only);
  ++dir->listing_gen;  // entries are the same, but their inode numbers were read below
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
  NodeRef src(this, sr.value());
  auto dr = lookup_node(p2, n2);
  if (!dr && dr.error() != ENOENT) return Errno{dr.error()};
  NodeRef dst(this, dr ? dr.value() : nullptr);
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
      auto l = list(d);
      if (!l) return Errno{l.error()};
      if (!l.value()->entries.empty()) return Errno{ENOTEMPTY};
    }
  }
  if (auto r = copy_up(p1); !r) return r;
  if (auto r = copy_up(p2); !r) return r;
  if (auto r = s->is_dir() ? copy_up_tree(s) : copy_up(s); !r) return r;
  if (exchange) {
    if (auto r = d->is_dir() ? copy_up_tree(d) : copy_up(d); !r) return r;
  }
  std::shared_ptr<const DirStack> k1, k2;
  auto u1r = upper_dirfd(p1, &k1);
  auto u2r = upper_dirfd(p2, &k2);
  if (!u1r || !u2r) return Errno{EIO};
  int u1 = u1r.value(), u2 = u2r.value();
  std::string a = to_string(n1), b = to_string(n2);
  auto l1 = lower_has(*k1, n1);
  auto l2 = lower_has(*k2, n2);
  if (!l1 || !l2) return Errno{!l1 ? l1.error() : l2.error()};
  bool src_lower = l1.value(), dst_lower = l2.value();

  // A directory arriving where a lower layer has the name must hide it.
  auto opaque_if = [&](Node* n, bool needed) -> Result<void> {
    if (!n->is_dir() || !needed) return {};
    return set_opaque(stack_of(n)->front().fd.get());
  };

  if (exchange) {
    if (auto r = opaque_if(s, dst_lower); !r) return r;
    if (auto r = opaque_if(d, src_lower); !r) return r;
    if (::renameat2(u1, a.c_str(), u2, b.c_str(), RENAME_EXCHANGE) != 0) return last_errno();
  } else {
    if (auto r = opaque_if(s, dst_lower); !r) return r;
    std::string moved_out;
    if (d && d->is_dir() && d->layer.load() == kUpper) {
      // The upper directory being replaced may hold whiteouts; move it away.
      moved_out = temp_name();
      if (auto r = move_name(u2, b.c_str(), work_.get(), moved_out.c_str(), dst_lower); !r)
        return r;
    }
    auto wh = is_upper_whiteout(u2, b.c_str());
    bool dst_is_wh = wh.ok() && wh.value();
    if (s->is_dir() && dst_is_wh) {
      if (::renameat2(u1, a.c_str(), u2, b.c_str(), RENAME_EXCHANGE) != 0) return last_errno();
      if (!src_lower) ::unlinkat(u1, a.c_str(), 0);  // the whiteout now at the old name
    } else if (auto r = move_name(u1, a.c_str(), u2, b.c_str(), src_lower); !r) {
      return r;
    }
    if (!moved_out.empty()) (void)remove_in_work(moved_out.c_str());
  }

  mark_impure(u2);
  if (exchange) mark_impure(u1);

  // The tree: move the nodes to their new names.
  std::vector<Node*> drop;  // parents that lost a child, unreferenced after the lock
  {
    std::lock_guard<std::mutex> g(tree_mu_);
    auto take = [&](Node* par, const std::string& nm, Node* want) {
      auto it = par->children.find(nm);
      if (it != par->children.end() && it->second == want) par->children.erase(it);
    };
    take(p1, a, s);
    if (d) take(p2, b, d);
    if (exchange) {
      p1->children[a] = d;
      d->name = a;
      if (d->parent != p1) {
        ++p1->refs;
        drop.push_back(d->parent);
        d->parent = p1;
      }
    } else if (d) {
      d->unlinked = true;
      detached_.insert(d);
    }
    auto old = p2->children.find(b);
    if (old != p2->children.end()) {
      old->second->unlinked = true;
      detached_.insert(old->second);
      p2->children.erase(old);
    }
    p2->children[b] = s;
    s->name = b;
    if (s->parent != p2) {
      ++p2->refs;
      drop.push_back(s->parent);
      s->parent = p2;
    }
  }
  for (Node* p : drop) unref(p);
  invalidate_listing(p1);
  if (p2 != p1) invalidate_listing(p2);
  return {};
}

// ---------------------------------------------------------------- open, setattr

Result<OpenFile> Overlay::open_file(Node* n, int flags) {
  if (n->is_dir()) return Errno{EISDIR};
  bool write = (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
  auto reopen = [flags](int fd) -> Result<OpenFile> {
    auto r = sys::open_at(AT_FDCWD, sys::proc_path(fd).c_str(), flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_NOFOLLOW));
    if (!r) return Errno{r.error()};
    return OpenFile{std::move(r).value(), false};  // an upper inode: never stale
  };
  if (n->anon.valid()) return reopen(n->anon.get());
  if (!write) {
    // Another name was copied up: read that copy, and write nothing.
    auto copy = indexed_copy(n);
    if (!copy) return Errno{copy.error()};
    if (copy->valid()) return reopen(copy->get());
  } else {
    if (!writable()) return Errno{EROFS};
    // O_TRUNC: the data is about to go, copy none of it.
    auto mode = (flags & O_TRUNC) && n->type == S_IFREG ? CopyData::kNone : CopyData::kAll;
    if (auto r = copy_up(n, mode); !r) return Errno{r.error()};
    if (flags & O_TRUNC) {
      if (auto p = partial_of(n)) {
        std::lock_guard<std::mutex> g(p->mu);
        if (auto r = lower_limit(*p, 0); !r) return Errno{r.error()};
      }
    }
  }
  auto loc = locate(n);
  if (!loc) return Errno{loc.error()};
  auto fd = open_in_layer(loc->layer, loc->dirfd, loc->name.c_str(),
                          (flags & ~(O_CREAT | O_EXCL | O_NOCTTY)) | O_NOFOLLOW);
  if (!fd) return Errno{fd.error()};
  if (loc->layer != kUpper && n->type == S_IFREG) {
    auto data = lower_data(std::move(fd).value());
    if (!data) return Errno{data.error()};
    return OpenFile{std::move(data).value(), true};
  }
  return OpenFile{std::move(fd).value(), loc->layer != kUpper};
}

Result<UniqueFd> Overlay::lower_data(UniqueFd fd) const {
  return store::data_of(std::move(fd), datadir_.valid() ? datadir_.get() : -1);
}

Result<UniqueFd> Overlay::reopen_upper(Node* n, int flags) {
  auto loc = locate(n);
  if (!loc) return Errno{loc.error()};
  return sys::open_at(loc->dirfd, loc->name.c_str(),
                      (flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC)) | O_NOFOLLOW);
}

Result<void> Overlay::setattr(Node* n, int fd, const SetAttr& a, const Caller& c, struct stat* st) {
  (void)c;
  if (!writable()) return Errno{EROFS};
  bool to_zero = (a.valid & SetAttr::kSize) && a.size == 0 && n->type == S_IFREG;
  if (auto r = copy_up(n, to_zero ? CopyData::kNone : CopyData::kAll); !r) return r;
  // The real object: a directory by its fd, anything else by (dirfd, name).
  auto real = real_of(n);
  if (!real) return Errno{real.error()};
  int dirfd = real->dirfd;
  const char* name = real->name.empty() ? nullptr : real->name.c_str();
  XattrPath path(dirfd, name);  // /proc/self/fd form, usable for every call below
  bool a_size_done = false;
  const char* p = path.path();
  if (perm_in_xattr(n->type) && (a.valid & (SetAttr::kMode | SetAttr::kUid | SetAttr::kGid))) {
    // Owner and mode change in the xattr only; the real inode keeps its own.
    struct stat cur;
    if ((name ? ::fstatat(dirfd, name, &cur, AT_SYMLINK_NOFOLLOW) : ::fstat(dirfd, &cur)) != 0)
      return last_errno();
    read_perm_override(path, &cur);
    uid_t uid = (a.valid & SetAttr::kUid) ? opts_.uid_map.to_outside(a.uid) : cur.st_uid;
    gid_t gid = (a.valid & SetAttr::kGid) ? opts_.gid_map.to_outside(a.gid) : cur.st_gid;
    mode_t mode = (a.valid & SetAttr::kMode) ? a.mode & 07777 : cur.st_mode & 07777;
    // As chown(2): a change of owner drops set-user-ID, and set-group-ID
    // where group execute is set, of a non-directory.
    if (!(a.valid & SetAttr::kMode) && n->type == S_IFREG) {
      mode &= ~S_ISUID;
      if (mode & S_IXGRP) mode &= ~S_ISGID;
    }
    if (auto w = write_perm_override(dirfd, name, uid, gid, mode); !w) return w;
  } else if (a.valid & SetAttr::kMode) {
    if (n->type == S_IFLNK) return Errno{EOPNOTSUPP};
    if (::chmod(p, a.mode & 07777) != 0) return last_errno();
  }
  if (!perm_in_xattr(n->type) && (a.valid & (SetAttr::kUid | SetAttr::kGid))) {
    uid_t uid =
        (a.valid & SetAttr::kUid) ? opts_.uid_map.to_outside(a.uid) : static_cast<uid_t>(-1);
    gid_t gid =
        (a.valid & SetAttr::kGid) ? opts_.gid_map.to_outside(a.gid) : static_cast<gid_t>(-1);
    int r = name ? ::fchownat(dirfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) : ::chown(p, uid, gid);
    if (r != 0) return last_errno();
  }
  if (a.valid & SetAttr::kSize) {
    if (n->type != S_IFREG) return Errno{n->is_dir() ? EISDIR : EINVAL};
    if (auto p = partial_of(n)) {
      // Lower bytes past the new size are not the file's any more, even if
      // it grows again later.
      std::lock_guard<std::mutex> g(p->mu);
      if (auto r = lower_limit(*p, a.size); !r) return r;
      if (::ftruncate(p->upper.get(), a.size) != 0) return last_errno();
      a_size_done = true;
    }
  }
  if ((a.valid & SetAttr::kSize) && !a_size_done) {
    if (fd >= 0) {
      if (::ftruncate(fd, a.size) != 0) return last_errno();
    } else {
      auto f = name ? sys::open_at(dirfd, name, O_WRONLY | O_NOFOLLOW)
                    : sys::open_at(AT_FDCWD, p, O_WRONLY);
      if (!f) return Errno{f.error()};
      if (::ftruncate(f.value().get(), a.size) != 0) return last_errno();
    }
  }
  if (a.valid & (SetAttr::kAtime | SetAttr::kMtime)) {
    struct timespec ts[2];
    ts[0] = (a.valid & SetAttr::kAtime) ? a.atime : timespec{0, UTIME_OMIT};
    ts[1] = (a.valid & SetAttr::kMtime) ? a.mtime : timespec{0, UTIME_OMIT};
    int r =
        name ? ::utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW) : ::utimensat(AT_FDCWD, p, ts, 0);
    if (r != 0) return last_errno();
  }
  return getattr(n, -1, st);
}

// ---------------------------------------------------------------- xattrs

Result<size_t> Overlay::getxattr(Node* n, const char* name, void* buf, size_t size) {
  std::string_view nm(name);
  std::string real;
  if (private_xattr(nm)) {
    // An image's own "<prefix>X" is stored escaped (format::escape_xattr_name).
    if (!nm.starts_with(xattr_prefix_)) return Errno{ENODATA};
    real = format::escape_xattr_name(nm);
    name = real.c_str();
  }
  auto t = real_of(n);
  if (!t) return Errno{t.error()};
  XattrPath t_path(t->dirfd, t->name.empty() ? nullptr : t->name.c_str());
  ssize_t r = t_path.get(name, buf, size);
  if (r < 0) return last_errno();
  return static_cast<size_t>(r);
}

Result<size_t> Overlay::listxattr(Node* n, char* buf, size_t size) {
  auto t = real_of(n);
  if (!t) return Errno{t.error()};
  XattrPath t_path(t->dirfd, t->name.empty() ? nullptr : t->name.c_str());
  std::vector<char> raw(1024);
  ssize_t len;
  for (;;) {
    len = t_path.list(raw.data(), raw.size());
    if (len >= 0) break;
    if (errno != ERANGE) return last_errno();
    ssize_t need = t_path.list(nullptr, 0);
    if (need < 0) return last_errno();
    raw.resize(static_cast<size_t>(need) + 256);
  }
  std::string out;
  for (ssize_t off = 0; off < len;) {
    std::string_view nm(raw.data() + off);
    off += static_cast<ssize_t>(nm.size()) + 1;
    if (escaped_xattr(nm)) {
      out += xattr_prefix_;
      out += nm.substr(xattr_prefix_.size() + 8);
      out += '\0';
    } else if (!private_xattr(nm)) {
      out += nm;
      out += '\0';
    }
  }
  if (size == 0) return out.size();
  if (out.size() > size) return Errno{ERANGE};
  std::memcpy(buf, out.data(), out.size());
  return out.size();
}

Result<void> Overlay::setxattr(Node* n, const char* name, const void* value, size_t size,
                               int flags) {
  if (!writable()) return Errno{EROFS};
  std::string_view nm(name);
  // The overlay's own xattrs cannot be set from inside (as in the kernel).
  if (private_xattr(nm)) return Errno{EPERM};
  if (auto r = copy_up(n); !r) return r;
  auto t = real_of(n);
  if (!t) return Errno{t.error()};
  XattrPath t_path(t->dirfd, t->name.empty() ? nullptr : t->name.c_str());
  if (t_path.set(name, value, size, flags) != 0) return last_errno();
  return {};
}

Result<void> Overlay::removexattr(Node* n, const char* name) {
  if (!writable()) return Errno{EROFS};
  std::string_view nm(name);
  if (private_xattr(nm)) {
    // Invisible, hence absent, as the kernel answers; one a kernel mount
    // stored escaped stays, as setting them is refused.
    auto g = getxattr(n, name, nullptr, 0);
    return Errno{g ? EPERM : ENODATA};
  }
  if (auto r = copy_up(n); !r) return r;
  auto t = real_of(n);
  if (!t) return Errno{t.error()};
  XattrPath t_path(t->dirfd, t->name.empty() ? nullptr : t->name.c_str());
  if (t_path.remove(name) != 0) return last_errno();
  return {};
}

}  // namespace layer::overlay
