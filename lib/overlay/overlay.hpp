// Overlay: the union filesystem over real directories, free of FUSE. A thin
// front, in the way of LevelDB's DBImpl: it owns the pieces below and runs
// each operation through them; every path is resolved beneath a layer
// directory fd one component at a time with O_NOFOLLOW, so nothing done
// through it can escape the layers or change a lower layer.
//
//   NodeTable  the tree of Nodes the kernel has looked up (node_table.hpp)
//   Resolver   names across layers: whiteouts, opaque dirs, redirects, inode
//              numbers (resolver.hpp)
//   Listings   merged directory listings, cached (listings.hpp)
//   UpperDir   the upper and work dirs and the format's writes there
//   Owners     id maps, squashing, xattr_permissions (owners.hpp)
//   LinkIndex  hard links across copy-up (link_index.hpp)
//   LazyCopy   lazy copy-up of big files: partial files, the fill thread,
//              recovery (lazy_copy.hpp)
//   Copier     copy-up itself (copier.hpp)
//
// Every member is constant after open() returns (the pieces are built there
// and only their own state changes). Thread-safe: any method may run on any
// thread at the same time.
//
// Lock order, for every mutex of the overlay core (docs/overlay-core.md):
//   OpenFile::mu_ -> Node::copy_mu -> LinkIndex::mu_
//                 -> { NodeTable::mu_ | Node::mu | LazyCopy::mu_ }
// - OpenFile::mu_: one open file's fd; held across the core calls that use
//   that fd (getattr, setattr), never while waiting for another open file.
// - Node::copy_mu: one node's copy-up, held across its syscalls. A thread
//   holds at most one: the parents are copied up before the child's is taken.
// - LinkIndex::mu_: across the copy-up of a multiply linked file, and each
//   update of an index entry's name count.
// - NodeTable::mu_, Node::mu, LazyCopy::mu_: leaves, held for a few memory
//   operations (Node::mu also across the fd dups of a new stack), never two
//   of them at once.
// - Partial::mu: one lazily copied file's writes, fill steps and truncation,
//   held across those syscalls with no other overlay mutex held.
// No overlay mutex is held when the daemon replies to the kernel.
//
// Hot path: every method returns Result<T> and never throws, except open(),
// which is the cold path and throws layer::Error naming the directory at fault.
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "overlay/config.hpp"
#include "overlay/copier.hpp"
#include "overlay/lazy_copy.hpp"
#include "overlay/link_index.hpp"
#include "overlay/listings.hpp"
#include "overlay/node.hpp"
#include "overlay/node_table.hpp"
#include "overlay/owners.hpp"
#include "overlay/resolver.hpp"
#include "overlay/upper_dir.hpp"
#include "util/result.hpp"
#include "util/unique_fd.hpp"

namespace layer::overlay {

class OpenFile;

// A metadata change; only the fields named in `valid` are used.
struct SetAttr {
  enum : unsigned {
    kMode = 1,
    kUid = 2,
    kGid = 4,
    kSize = 8,
    kAtime = 16,
    kMtime = 32,
    kCtime = 64
  };
  unsigned valid = 0;
  mode_t mode = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  off_t size = 0;
  struct timespec atime {};  // tv_nsec may be UTIME_NOW
  struct timespec mtime {};
};

// An open real file. `lower` is true when it is a lower layer's file (read
// only; the node may be copied up later). OpenFile (open_file.hpp) is what a
// program's open holds; this is the real file under it.
struct RealFile {
  UniqueFd fd;
  bool lower = false;
};

class Overlay {
 public:
  // Opens the layers named in `c` (already validated) and prepares the
  // work directory. Throws layer::Error naming the unusable directory.
  static std::unique_ptr<Overlay> open(const Config& c);
  ~Overlay();
  Overlay(const Overlay&) = delete;
  Overlay& operator=(const Overlay&) = delete;

  Node* root() const { return nodes_.root(); }
  bool writable() const { return upper_.valid(); }
  // Whether the markers are user.* xattrs: -o userxattr, or chosen at open
  // because trusted.* could not be set (rootless).
  bool user_xattrs() const { return config_.userxattr; }
  const Config& config() const { return config_; }

  // References: every Node* returned by lookup, create, mkdir, mknod, symlink
  // and link carries one reference for the caller, who hands it to the kernel
  // (lookup count) or drops it with unref().
  void ref(Node* n) { nodes_.ref(n); }
  void unref(Node* n, uint64_t count = 1) { nodes_.unref(n, count); }

  Result<Node*> lookup(Node* parent, std::string_view name, struct stat* st);
  // lookup() of `e`, an entry of parent's listing (READDIRPLUS), with less
  // work where the listing did it: a lower non-directory of one link is
  // stat'ed in its own layer only, once the upper is seen not to have taken
  // the name since the listing was made. Anything else is a lookup().
  Result<Node*> lookup_listed(Node* parent, const DirEntry& e, struct stat* st);
  // Whether parent's child `name` has a node now: the kernel holds it (or an
  // open file does), so it knows the name and its attributes already.
  bool has_node(Node* parent, std::string_view name) {
    Node* c = nodes_.find_child(parent, name);
    if (c) nodes_.unref(c);
    return c != nullptr;
  }
  // `fd` is an open file of n or -1.
  Result<void> getattr(Node* n, int fd, struct stat* st);
  Result<void> setattr(Node* n, int fd, const SetAttr& a, const Caller& c, struct stat* st);
  Result<std::string> readlink(Node* n);

  Result<Node*> mknod(Node* parent, std::string_view name, mode_t mode, dev_t rdev, const Caller& c,
                      struct stat* st);
  Result<Node*> mkdir(Node* parent, std::string_view name, mode_t mode, const Caller& c,
                      struct stat* st);
  Result<Node*> symlink(Node* parent, std::string_view name, const char* target, const Caller& c,
                        struct stat* st);
  Result<Node*> link(Node* src, Node* parent, std::string_view name, struct stat* st);
  Result<void> unlink(Node* parent, std::string_view name);
  Result<void> rmdir(Node* parent, std::string_view name);
  // flags: 0, RENAME_NOREPLACE or RENAME_EXCHANGE.
  Result<void> rename(Node* parent, std::string_view name, Node* newparent,
                      std::string_view newname, unsigned flags);

  // Opens n's real file; flags that may write (O_WRONLY, O_RDWR, O_TRUNC)
  // copy it up first. Programs' opens go through OpenFile::open.
  Result<RealFile> open_real(Node* n, int flags);
  Result<Node*> create(Node* parent, std::string_view name, mode_t mode, int flags, const Caller& c,
                       struct stat* st, UniqueFd* fd);
  // An unnamed regular file in `parent`'s upper directory (open(2)'s O_TMPFILE):
  // a node with no name until link() gives it one; `fd` is open with `flags`.
  Result<Node*> tmpfile(Node* parent, mode_t mode, int flags, const Caller& c, struct stat* st,
                        UniqueFd* fd);
  // Copies n up if it is not in the upper layer yet.
  Result<void> copy_up(Node* n, CopyData data = CopyData::kAll) { return copier_.copy_up(n, data); }

  // Files copied up with their data still partly below: see LazyCopy.
  LazyCopy& lazy() { return lazy_; }
  // Starts the thread that fills partial files (after any fork: a daemon
  // calls it once it runs in the background).
  void start_background() { lazy_.start(); }
  // Completes every partial file (called at unmount; the destructor does too).
  void finish_partials() { lazy_.finish(); }

  // The merged directory's entries; the snapshot stays valid while held.
  Result<std::shared_ptr<const Listing>> list(Node* dir) { return listings_.list(dir); }

  Result<size_t> getxattr(Node* n, const char* name, void* buf, size_t size);
  Result<size_t> listxattr(Node* n, char* buf, size_t size);
  Result<void> setxattr(Node* n, const char* name, const void* value, size_t size, int flags);
  Result<void> removexattr(Node* n, const char* name);

  Result<struct statvfs> statfs();
  // fsyncs the directory's upper directory (nothing for a lower-only one).
  Result<void> fsync_dir(Node* dir, bool datasync);

 private:
  friend class OpenFile;  // switches an open lower file to its upper copy (locate)

  struct Dirs;  // what open() prepared
  Overlay(const Config& c, Dirs&& d);

  struct Located {  // a non-directory's real place: (dir fd of its layer, name)
    std::shared_ptr<const DirStack> stack;  // keeps fd alive
    int dirfd = -1;
    std::string name;
    int layer = 0;
  };
  // `data`: where n's data is, which for a metadata-only copy is below.
  Result<Located> locate(Node* n, bool data = false);
  struct Real {                            // a node's real object, for calls that take a path
    std::shared_ptr<const DirStack> keep;  // keeps dirfd open
    std::string name;                      // empty for a directory (dirfd is the object)
    int dirfd = -1;
    UniqueFd own;  // the object itself, when it has no name of its own (indexed copy)
  };
  Result<Real> real_of(Node* n);
  // The upper copy another name of n's lower file made (LinkIndex), as an
  // O_PATH fd; an invalid fd when there is none or n is not such a name.
  Result<UniqueFd> indexed_copy(Node* n);
  // Before a name of n goes (unlink, a rename over it): the index's part.
  Result<void> unindex_name(Node* n);
  // The umask to apply to what the caller makes in parent: none where the
  // parent has a default ACL.
  mode_t umask_for(Node* parent, const Caller& c);
  // Before n's name is removed: an O_PATH fd of its object, for
  // set_orphan once the name is gone (null for a directory, or on failure:
  // the node's open files then get ENOENT).
  std::shared_ptr<const UniqueFd> hold_object(Node* n);
  static void set_orphan(Node* n, std::shared_ptr<const UniqueFd> kept);
  Result<Node*> lookup_node(Node* parent, std::string_view name);
  // The node for what resolve() found as `name` in parent, with inode number
  // `ino`; referenced.
  Node* adopt(Node* parent, std::string_view name, Found& f, uint64_t ino);
  // st as the mount shows it: inode number, owner (and the xattr_permissions
  // override).
  void fix_stat(Node* n, struct stat* st);
  // Before making `name` in `parent`: EEXIST if the merged view has it, else
  // the parent copied up and its upper directory's fd (open while *keep is).
  Result<int> dir_for_new_name(Node* parent, std::string_view name,
                               std::shared_ptr<const DirStack>* keep);
  template <typename MakeFn>
  Result<Node*> create_common(Node* parent, std::string_view name, mode_t type, const Caller& c,
                              struct stat* st, MakeFn make);
  // Copies a directory and everything below it up, then makes it opaque.
  Result<void> copy_up_tree(Node* dir);
  // The redirect xattr of dir's upper directory, or empty.
  std::string upper_redirect(Node* dir);
  // Before dir (copied up, with lower parts) moves away from `name` in
  // parent: records where its lower directories are, as the kernel does.
  Result<void> set_redirect(Node* dir, Node* parent, const std::string& name, bool samedir);

  // Constant after construction: the members below only change inside.
  const Config config_;
  // -o datadir: a layerfs store's objects/ (docs/store-format-2.md); invalid
  // when not given.
  const UniqueFd datadir_;
  UpperDir upper_;
  Resolver resolver_;
  NodeTable nodes_;
  Listings listings_;
  Owners owners_;
  LinkIndex index_;
  LazyCopy lazy_;
  Copier copier_;
};

}  // namespace layer::overlay
