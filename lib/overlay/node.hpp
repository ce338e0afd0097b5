// Node: one name in the merged tree, as the kernel knows it (a FUSE inode).
// Owned by the NodeTable, which keeps it while it has references (kernel
// lookups, children, open handles, internal users). Fields say which lock
// guards them; the lock order of all the overlay's mutexes is in overlay.hpp.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "util/result.hpp"
#include "util/unique_fd.hpp"

namespace layer::overlay {

// Layer index 0 is the upper directory; lower layers are 1..n, top first.
constexpr int kUpper = 0;

// One real directory contributing to a merged directory.
struct LayerDir {
  int layer;
  UniqueFd fd;  // O_RDONLY|O_DIRECTORY (O_PATH where unreadable)
  // A lower directory marked as holding xattr whiteouts (the opaque mark "x"):
  // the kernel's readdir looks for them only there (its lookup everywhere),
  // and so does ours, which spares a stat of every lower regular file. The
  // upper layer is always checked.
  bool xwhiteouts = false;
  bool may_hold_xwhiteouts() const { return layer == kUpper || xwhiteouts; }
};
// A merged directory's real directories, top first. Immutable once built; a
// copy-up publishes a new one.
using DirStack = std::vector<LayerDir>;

struct DirEntry {
  std::string name;
  uint64_t ino;
  unsigned char type;  // DT_*
  uint64_t off = 0;    // its readdir offset: a hash of the name (see Listing)
  int layer = -1;      // the layer whose object the name is (kUpper or a lower)
};
// A merged directory's entries (no ".", "..", whiteouts or internal names).
// Immutable once built; any change to the directory drops the cached one.
// Entries are sorted by `off`, a hash of the name (>= 3, strictly
// increasing), as ext4 does for its hashed directories: an offset stays
// valid across listings, so a reader that resumes (the next READDIR, or
// seekdir to a telldir value) after entries were added or removed neither
// repeats nor skips the entries that stayed, with no per-open snapshot.
struct Listing {
  std::vector<DirEntry> entries;
  uint32_t subdirs = 0;
};

struct Partial;  // lazy_copy.hpp

struct Node {
  Node(mode_t t, uint64_t i) : type(t & S_IFMT), ino(i) {}
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  bool is_dir() const { return type == S_IFDIR; }

  const mode_t type;   // S_IFMT bits; a name replaced by another type is a new Node
  const uint64_t ino;  // st_ino in the mount, stable across copy-up

  // Guarded by NodeTable::mu_ (reads of parent/name may also hold mu).
  Node* parent = nullptr;  // holds a reference on the parent
  std::string name;
  uint64_t refs = 0;
  bool unlinked = false;
  std::unordered_map<std::string, Node*> children;

  // Topmost layer holding the object. Written under mu (after copy-up), read
  // without a lock: once 0 (upper) it never changes again.
  std::atomic<int> layer{0};
  // A metadata-only copy-up (the kernel's metacopy): the upper object has the
  // metadata, its data is still the same name's in this lower layer of the
  // parent's stack; -1 where no lower data was found (opens fail with EIO).
  // 0 otherwise. Set before `layer` becomes 0 by the copy-up, back to 0 (and
  // never set again) once the data has been copied in.
  std::atomic<int> data_layer{0};
  // A regular file with other names (each name is a Node of its own): the
  // kernel must not cache its attributes or data across opens.
  std::atomic<bool> shared{false};

  std::mutex mu;  // guards stack, listing, listing_gen, partial, orphan; after NodeTable::mu_
  std::shared_ptr<const DirStack> stack;   // directories only
  std::shared_ptr<const Listing> listing;  // cached merged listing, or null
  uint64_t listing_gen = 0;                // bumped by every change of the directory
  std::shared_ptr<Partial> partial;        // regular files still being filled, or null
  // A non-directory whose name was removed (unlink, or a rename over it):
  // an O_PATH fd of its object, taken before the name went, so that fstat,
  // ftruncate, fchmod and futimens of its open files still reach it (the
  // kernel sends GETATTR and most SETATTRs without the file handle).
  std::shared_ptr<const UniqueFd> orphan;

  std::mutex copy_mu;  // serializes copy-up of this node; held across syscalls

  // A file made without a name (O_TMPFILE): an O_PATH fd of it, set before the
  // node is published and constant after; invalid for every other node.
  UniqueFd anon;
};

// A directory's current stack (a snapshot: a copy-up publishes a new one).
inline std::shared_ptr<const DirStack> stack_of(Node* dir) {
  std::lock_guard<std::mutex> g(dir->mu);
  return dir->stack;
}

// The object of a node whose name was removed (see Node::orphan), or null.
inline std::shared_ptr<const UniqueFd> orphan_of(Node* n) {
  std::lock_guard<std::mutex> g(n->mu);
  return n->orphan;
}

// dir's upper directory (dir is copied up), open while *keep is held; EIO
// if it has none.
inline Result<int> upper_fd(Node* dir, std::shared_ptr<const DirStack>* keep) {
  *keep = stack_of(dir);
  if ((*keep)->empty() || (*keep)->front().layer != kUpper) return Errno{EIO};
  return (*keep)->front().fd.get();
}

class NodeTable;

// One reference on a Node (or none: null), dropped with NodeTable::unref when
// it goes out of scope. A value on the stack of one thread.
class NodeRef {
 public:
  NodeRef(NodeTable* t, Node* n) : t_(t), n_(n) {}
  NodeRef(const NodeRef&) = delete;
  NodeRef& operator=(const NodeRef&) = delete;
  ~NodeRef();  // in node_table.cpp
  Node* get() const { return n_; }
  Node* release() { return std::exchange(n_, nullptr); }

 private:
  NodeTable* t_;
  Node* n_;
};

}  // namespace layer::overlay
