// Node: one name in the merged tree, as the kernel knows it (a FUSE inode).
// Owned by Overlay, which keeps it while it has references (kernel lookups,
// children, open handles, internal users). Fields say which lock guards them.
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

// A copied-up regular file whose data is still partly in its lower file:
// the upper file has the lower's size, and its holes below `limit` read from
// the lower file until a background fill (or unmount, or the next mount
// after a crash) copies them. Blocks are data in the upper file exactly when
// they are the file's own, because writes first fill the blocks they touch.
struct Partial {
  std::mutex mu;                  // held across every write, fill step and truncation
  UniqueFd lower;                 // read-only
  UniqueFd upper;                 // read-write
  off_t limit = 0;                // guarded by mu: lower data at or past it is not the file's
  // Written under mu. filled: all of the lower's data is in the upper file,
  // only its fsync and the marker's removal are left; done: those too.
  std::atomic<bool> filled{false};
  std::atomic<bool> done{false};
  ino_t upper_ino = 0;
  std::string reg_name;                   // its entry in workdir/layerfs-partial
  std::string marker;                     // the partial xattr: limit, NUL, lowerdir, NUL, path
  std::atomic<int64_t> last_write_ns{0};  // CLOCK_MONOTONIC of the last write
  // Opens that may write (see Overlay::add_writer): the background thread
  // leaves the fsync and the marker's removal until the last one closes, so
  // that writing a filled file back does not stall its writers.
  std::atomic<int> writers{0};
  // The last of them has closed: the background fill need not wait for
  // writes to pause. Not before: the open that made the copy-up is counted
  // only after it, and its first write comes next.
  std::atomic<bool> writers_gone{false};
};

struct Node {
  Node(mode_t t, uint64_t i) : type(t & S_IFMT), ino(i) {}
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  bool is_dir() const { return type == S_IFDIR; }

  const mode_t type;   // S_IFMT bits; a name replaced by another type is a new Node
  const uint64_t ino;  // st_ino in the mount, stable across copy-up

  // Guarded by Overlay::tree_mu_ (reads of parent/name may also hold mu).
  Node* parent = nullptr;  // holds a reference on the parent
  std::string name;
  uint64_t refs = 0;
  bool unlinked = false;
  std::unordered_map<std::string, Node*> children;

  // Topmost layer holding the object. Written under mu (after copy-up), read
  // without a lock: once 0 (upper) it never changes again.
  std::atomic<int> layer{0};
  // A regular file with other names (each name is a Node of its own): the
  // kernel must not cache its attributes or data across opens.
  std::atomic<bool> shared{false};

  std::mutex mu;  // guards stack, listing, partial; lock order: tree_mu_ before mu
  std::shared_ptr<const DirStack> stack;   // directories only
  std::shared_ptr<const Listing> listing;  // cached merged listing, or null
  uint64_t listing_gen = 0;                // bumped by every change of the directory
  std::shared_ptr<Partial> partial;        // regular files still being filled, or null

  std::mutex copy_mu;  // serializes copy-up of this node; held across syscalls

  // A file made without a name (O_TMPFILE): an O_PATH fd of it, set before the
  // node is published and constant after; invalid for every other node.
  UniqueFd anon;
};

class Overlay;

// One reference on a Node (or none: null), dropped with Overlay::unref when it
// goes out of scope. A value on the stack of one thread.
class NodeRef {
 public:
  NodeRef(Overlay* ov, Node* n) : ov_(ov), n_(n) {}
  NodeRef(const NodeRef&) = delete;
  NodeRef& operator=(const NodeRef&) = delete;
  ~NodeRef();  // in overlay.cpp, which knows Overlay
  Node* get() const { return n_; }
  Node* release() { return std::exchange(n_, nullptr); }

 private:
  Overlay* ov_;
  Node* n_;
};

}  // namespace layer::overlay
