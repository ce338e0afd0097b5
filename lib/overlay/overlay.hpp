// Overlay: the union filesystem over real directories, free of FUSE. Holds the
// layers as directory fds (upper and work may be absent: read-only) and the
// tree of Nodes the kernel has looked up. Every path is resolved beneath a
// layer directory fd one component at a time with O_NOFOLLOW, so nothing done
// through it can escape the layers or change a lower layer.
//
// Thread-safe: any method may run on any thread at the same time. tree_mu_
// guards only the node tree (maps, parents, reference counts) and is never held
// across a syscall; per-node mutexes guard a node's layer state.
//
// Hot path: every method returns Result<T> and never throws, except open(),
// which is the cold path and throws layer::Error naming the directory at fault.
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "overlay/mount_options.hpp"
#include "overlay/node.hpp"
#include "util/result.hpp"
#include "util/unique_fd.hpp"

namespace layer {
class XattrPath;
}

namespace layer::overlay {

struct IndexEntry;

// Who asks: the ids are as seen inside the mount (before id mapping).
struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
  mode_t umask = 0;
};

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
// only; the node may be copied up later, see reopen()).
struct OpenFile {
  UniqueFd fd;
  bool lower = false;
};

// A name a program may use for one directory entry: not empty, ".", "..",
// too long, or holding '/' or NUL.
bool valid_name(std::string_view name);

// openat(2) of something in `layer`. Lower layers are opened O_NOATIME, as
// the kernel's overlayfs opens them: reading through the mount never writes
// to a lower layer (the store). O_NOATIME needs the owner or CAP_FOWNER;
// without them, the plain open.
Result<UniqueFd> open_in_layer(int layer, int dirfd, const char* name, int flags);

class Overlay {
 public:
  // Opens the layers named in `opts` (already validated) and prepares the
  // work directory. Throws layer::Error naming the unusable directory.
  static std::unique_ptr<Overlay> open(const MountOptions& opts);
  ~Overlay();
  Overlay(const Overlay&) = delete;
  Overlay& operator=(const Overlay&) = delete;

  Node* root() const { return root_; }
  bool writable() const { return upper_.valid(); }
  // Whether the markers are user.overlay.* xattrs: -o userxattr, or chosen
  // at open because trusted.* could not be set (rootless).
  bool user_xattrs() const { return opts_.userxattr; }

  // References: every Node* returned by lookup, create, mkdir, mknod, symlink
  // and link carries one reference for the caller, who hands it to the kernel
  // (lookup count) or drops it with unref().
  void ref(Node* n);
  void unref(Node* n, uint64_t count = 1);

  Result<Node*> lookup(Node* parent, std::string_view name, struct stat* st);
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
  // copy it up first.
  Result<OpenFile> open_file(Node* n, int flags);
  // Opens n's upper file again (after a copy-up made an open lower file stale).
  Result<UniqueFd> reopen_upper(Node* n, int flags);
  // A lower regular file's data: `fd` itself, or, with -o datadir, the
  // content object of a metadata-only entry the store wrote (its markers in
  // a lower layer only; the upper's are never followed).
  Result<UniqueFd> lower_data(UniqueFd fd) const;
  Result<Node*> create(Node* parent, std::string_view name, mode_t mode, int flags, const Caller& c,
                       struct stat* st, UniqueFd* fd);
  // An unnamed regular file in `parent`'s upper directory (open(2)'s O_TMPFILE):
  // a node with no name until link() gives it one; `fd` is open with `flags`.
  Result<Node*> tmpfile(Node* parent, mode_t mode, int flags, const Caller& c, struct stat* st,
                        UniqueFd* fd);
  // How much of a regular file's data a copy-up takes along.
  enum class CopyData {
    kAll,   // everything now (small files), or the rest in the background (big ones)
    kNone,  // nothing: the file is about to be truncated to zero
  };
  // Copies n up if it is not in the upper layer yet.
  Result<void> copy_up(Node* n, CopyData data = CopyData::kAll);

  // Files copied up with their data still partly below (see Partial). The
  // daemon reads them through read_partial, holds begin_write's lock across
  // each write, and fills them before operations that need all data.
  std::shared_ptr<Partial> partial_of(Node* n);   // until complete (durable)
  std::shared_ptr<Partial> unfilled_of(Node* n);  // until all data is in the upper
  Result<size_t> read_partial(Partial& p, char* buf, size_t size, off_t off);
  Result<std::unique_lock<std::mutex>> begin_write(Partial& p, off_t off, size_t size);
  // Copies the rest of the lower's data now, in the kernel; the fsync and the
  // marker's removal are left to the background thread. Until then a crash
  // leaves it partial, and recovery fills its holes again from the lower.
  Result<void> fill(Partial& p);
  // fill, fsync, marker removed: from here on a plain upper file, also after a
  // crash. Needed before anything that makes holes in the file.
  Result<void> complete(Partial& p);
  // An open that may write p (counted until drop_writer): the background
  // thread completes p only once no such open is left.
  void add_writer(Partial& p);
  void drop_writer(const std::shared_ptr<Partial>& p);
  // Starts the thread that fills partial files (after any fork: a daemon
  // calls it once it runs in the background). Without it they are completed
  // by complete() or at destruction.
  void start_background();
  // Completes every partial file (called at unmount; the destructor does too).
  void finish_partials();
  // Files at least this big are copied up lazily.
  static constexpr off_t kPartialMin = 1 << 20;

  // The merged directory's entries; the snapshot stays valid while held.
  Result<std::shared_ptr<const Listing>> list(Node* dir);

  Result<size_t> getxattr(Node* n, const char* name, void* buf, size_t size);
  Result<size_t> listxattr(Node* n, char* buf, size_t size);
  Result<void> setxattr(Node* n, const char* name, const void* value, size_t size, int flags);
  Result<void> removexattr(Node* n, const char* name);

  Result<struct statvfs> statfs();
  // fsyncs the directory's upper directory (nothing for a lower-only one).
  Result<void> fsync_dir(Node* dir, bool datasync);

  // Exposed for tests and the daemon's diagnostics.
  size_t node_count() const;
  const MountOptions& options() const { return opts_; }

 private:
  explicit Overlay(const MountOptions& opts);

  struct Located {  // a non-directory's real place: (dir fd of its layer, name)
    std::shared_ptr<const DirStack> stack;  // keeps fd alive
    int dirfd = -1;
    std::string name;
    int layer = 0;
  };
  struct Found {  // the result of resolving one name in a merged directory
    int layer = -1;
    struct stat st {};
    std::shared_ptr<const DirStack> stack;  // directories
    bool opaque = false;
  };

  Node* parent_of(Node* n, std::string* name);  // referenced; null for the root
  Result<Located> locate(Node* n);
  std::shared_ptr<const DirStack> stack_of(Node* dir);
  Result<Found> resolve(const DirStack& parent, std::string_view name, bool want_stack);
  Result<bool> lower_has(const DirStack& parent, std::string_view name);
  // The kernel's redirect_dir xattr of a directory, checked; empty if none.
  Node* insert_child(Node* parent, std::string_view name, Node* fresh);
  Node* find_child(Node* parent, std::string_view name);
  Result<Node*> lookup_node(Node* parent, std::string_view name);
  // The node for what resolve() found as `name` in parent, with inode number
  // `ino`; referenced.
  Node* adopt(Node* parent, std::string_view name, Found& f, uint64_t ino);
  void detach_child(Node* parent, std::string_view name);
  void invalidate_listing(Node* dir);
  Result<std::shared_ptr<const Listing>> build_listing(const DirStack& stack);
  uint64_t map_ino(int layer, const struct stat& st, int dirfd, const char* name,
                   bool upper_origin);
  uint64_t map_ino_raw(dev_t dev, ino_t ino) const;
  void fix_stat(Node* n, struct stat* st);
  // xattr_permissions=1|2 (fuse-overlayfs's option): owner and mode of
  // regular files and directories live in the perm_xattr_ xattr,
  // "UID:GID:MODE" (host ids, octal mode), not in the real inode, for
  // daemons that cannot chown. read_ overrides st from it if present.
  void read_perm_override(const XattrPath& p, struct stat* st) const;
  Result<void> write_perm_override(int dirfd, const char* name, uid_t uid, gid_t gid, mode_t mode);
  bool perm_in_xattr(mode_t type) const {
    return !perm_xattr_.empty() && (S_ISREG(type) || S_ISDIR(type));
  }
  Result<uint32_t> merged_nlink(Node* dir);

  Result<void> copy_up_locked(Node* n, Node* parent, const std::string& name, CopyData data);
  Result<void> fill_range(Partial& p, off_t from, off_t to);  // REQUIRES: p.mu held
  // The file is cut to `size`: lower bytes past it are not its own any more,
  // even if it grows again (memory and marker). REQUIRES: p.mu held.
  Result<void> lower_limit(Partial& p, off_t size);
  std::string path_of(Node* n);  // relative to the root, for the partial marker
  void attach_partial(Node* n, const struct stat& upper_st);
  bool attach_partial_only(Node* n, const struct stat& upper_st);
  Result<void> follow_index(Node* n);
  // The upper copy of a lower node whose other name was copied up (hard links
  // survive copy-up), as an O_PATH fd; an invalid fd when there is none. Reads
  // of the node use it, so they see the copy without writing the upper.
  Result<UniqueFd> indexed_copy(Node* n);
  // The link count of an indexed upper copy `upper_st` as every name sees it.
  nlink_t indexed_nlink(uint64_t ino, const struct stat& upper_st);
  void partial_worker();
  void recover_partials();  // cold path: completes what a crash left
  static std::string index_name(uint64_t ino);
  // Links the upper copy that the index entry of `ino` names to (dirfd,
  // name); ENOENT when there is none. The _locked form REQUIRES index_mu_.
  Result<void> link_from_index(uint64_t ino, int dirfd, const char* name);
  Result<void> link_from_index_locked(uint64_t ino, int dirfd, const char* name);
  Result<void> write_index(uint64_t ino, int dirfd, const char* name, uint32_t others);
  Result<UniqueFd> open_index(uint64_t ino, uint64_t* upper_ino);
  Result<void> write_index_entry(uint64_t ino, const struct IndexEntry& e, uint32_t others);
  // The names of `ino` still only below (UINT32_MAX: no entry). REQUIRES: index_mu_
  // for a consistent read-modify-write.
  uint32_t index_count(uint64_t ino);
  // A lower-only name of a multiply linked file is removed.
  Result<void> forget_lower_name(uint64_t ino, nlink_t lower_nlink);
  Result<void> keep_last_link(uint64_t ino, int dirfd, const char* name);
  bool has_index(uint64_t ino);
  // Names of an indexed file still only in a lower layer; UINT32_MAX when
  // upper_st is not an indexed copy.
  uint32_t lower_names(uint64_t ino, const struct stat& upper_st);
  Result<void> copy_up_tree(Node* dir);
  Result<void> remove_whiteouts(int dirfd);
  void mark_impure(int dirfd);
  Result<void> copy_up_dir_chain(Node* dir);
  Result<int> upper_dirfd(Node* dir, std::shared_ptr<const DirStack>* keep);
  Result<void> copy_xattrs(int sfd, const char* sname, int dfd, const char* dname);
  Result<void> copy_data(int src, int dst, off_t size);
  std::string temp_name();
  Result<void> make_whiteout(int dirfd, const char* name);
  // Renames (fromdir, from) to (todir, to), leaving a whiteout at the old name
  // if `whiteout` (RENAME_WHITEOUT, or a rename and make_whiteout without it).
  Result<void> move_name(int fromdir, const char* from, int todir, const char* to, bool whiteout);
  Result<bool> is_upper_whiteout(int dirfd, const char* name);
  Result<void> remove_in_work(const char* name);
  Result<void> set_owner(int dirfd, const char* name, const Caller& c, const struct stat& pst,
                         mode_t mode);
  struct Real {                            // a node's real object, for calls that take a path
    std::shared_ptr<const DirStack> keep;  // keeps dirfd open
    std::string name;                      // empty for a directory (dirfd is the object)
    int dirfd = -1;
    UniqueFd own;  // the object itself, when it has no name of its own (indexed copy)
  };
  Result<Real> real_of(Node* n);
  Result<int> dir_for_new_name(Node* parent, std::string_view name,
                               std::shared_ptr<const DirStack>* keep);
  template <typename MakeFn>
  Result<Node*> create_common(Node* parent, std::string_view name, mode_t type, const Caller& c,
                              struct stat* st, MakeFn make);
  // The overlay's own xattrs (hidden and refused), and the escaped form
  // "<prefix>overlay.X" that the mount shows as "<prefix>X".
  bool private_xattr(std::string_view name) const;
  bool escaped_xattr(std::string_view name) const;
  Result<void> set_opaque(int dirfd);

  void name_xattrs();  // the marker xattrs' names, from opts_.userxattr

  MountOptions opts_;
  std::vector<UniqueFd> layer_roots_;  // [0] upper (may be invalid), [1..] lowers
  std::vector<dev_t> devs_;            // distinct st_dev of the layers; index = ino tag
  UniqueFd upper_;
  UniqueFd work_;  // workdir/work, our scratch directory on the upper filesystem
  // workdir/layerfs-index: one hard link per copied-up lower file that had
  // several names, named after its inode number, so that its other names link
  // to the same upper copy when they are looked up (the kernel's index=on idea).
  UniqueFd index_;
  UniqueFd partial_dir_;  // workdir/layerfs-partial: a link to every partial file
  // -o datadir: a layerfs store's objects/ (docs/store-format-2.md); invalid
  // when not given. Constant after open().
  UniqueFd datadir_;
  std::string partial_xattr_;
  std::mutex partial_mu_;  // guards partials_, partial_queue_, stop_
  std::condition_variable partial_cv_;
  std::unordered_map<ino_t, std::shared_ptr<Partial>> partials_;  // by upper inode
  std::deque<std::shared_ptr<Partial>> partial_queue_;
  bool stop_ = false;
  std::thread partial_thread_;
  std::mutex index_mu_;       // serializes updates of an index entry's name count
  std::string xattr_prefix_;  // "trusted.overlay." or "user.overlay."
  std::string origin_xattr_;
  std::string opaque_xattr_;
  std::string names_xattr_;
  std::string perm_xattr_;    // xattr_permissions: where owner and mode live ("" = off)
  std::string impure_xattr_;  // on an index entry: its names still only below
  std::atomic<uint64_t> temp_counter_{0};

  mutable std::mutex tree_mu_;  // guards every Node's parent, name, refs, unlinked, children
  Node* root_ = nullptr;
  size_t nodes_ = 0;                    // guarded by tree_mu_
  std::unordered_set<Node*> detached_;  // guarded by tree_mu_: unlinked, still referenced
};

}  // namespace layer::overlay
