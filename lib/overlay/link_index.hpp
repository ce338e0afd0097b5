// LinkIndex: workdir/index, so that hard links survive copy-up, in the
// format of the kernel's overlayfs with index=on (format::kIndexDir), so
// that the kernel mounting the upper afterwards links the names as layerfs
// does. When a lower file with several names is copied up through one, the
// entry named after its origin handle becomes a hard link to the copy; each
// other name becomes a link to that copy when it changes, and reads of it go
// to the copy at once (copy_of). The nlink xattr on the copy keeps the link
// count every name sees, relative to the upper inode's ("U+N"), so linking
// or removing an upper name leaves it alone.
//
// Entries of layerfs's older index (workdir/layerfs-index, named after the
// origin's inode number) move into the new one the first time their lower
// file is looked at (key_of).
//
// Thread-safe. mu_ serializes the changes of an entry and is held across a
// copy-up of a multiply linked file (see Copier): after Node::copy_mu,
// before the leaf locks (lock order: overlay.hpp).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <mutex>
#include <string>

#include "util/result.hpp"
#include "util/thread_annotations.hpp"
#include "util/unique_fd.hpp"

namespace layer::overlay {

class UpperDir;

// A lower file's place in the index.
struct IndexKey {
  std::string handle;  // its encoded origin handle (format::origin_handle)
  std::string name;    // the entry's name: the handle in hex
};

class LinkIndex {
 public:
  // `dir` is invalid for a read-only mount: then nothing is indexed.
  // `legacy`: workdir/layerfs-index when it exists. `upper` (for work/ and
  // the xattr names) is borrowed for the index's life.
  LinkIndex(UniqueFd dir, UniqueFd legacy, UpperDir& upper)
      : dir_(std::move(dir)), legacy_(std::move(legacy)), upper_(upper) {}

  bool valid() const { return dir_.valid(); }
  std::mutex& mu() { return mu_; }

  // The key of the lower file (dirfd, name), overlay inode `ino`, after
  // moving its entry of the older index into this one. EOPNOTSUPP: its
  // filesystem has no file handles, so it cannot be indexed.
  Result<IndexKey> key_of(uint64_t ino, int dirfd, const char* name) EXCLUDES(mu_);
  // Links the upper copy that entry `k` holds to (dirfd, name); ENOENT when
  // there is none.
  Result<void> link_to(const IndexKey& k, int dirfd, const char* name) REQUIRES(mu_);
  // After a copy-up of the file `k` (with `lower_nlink` names below)
  // published at (dirfd, name): marks its origin and links it into the
  // index for the other names. Without the entry the other names would get
  // copies of their own: a broken link, not a broken file, so a failure is
  // not reported.
  void record(const IndexKey& k, int dirfd, const char* name, nlink_t lower_nlink) REQUIRES(mu_);

  // The upper copy entry `k` holds, as an O_PATH fd; an invalid fd when there
  // is none. Reads of a lower name use it, so they see the copy without
  // writing the upper.
  Result<UniqueFd> copy_of(const IndexKey& k);
  // The link count that every name of the upper object (dirfd, name) (name
  // null: dirfd itself), whose stat is `st`, shows: an indexed copy's from
  // its nlink xattr, any other object's own.
  nlink_t union_nlink(int dirfd, const char* name, const struct stat& st);
  // Before the upper name (dirfd, name) of an indexed copy is removed: when
  // it is the file's last name, the entry goes too (the kernel's
  // ovl_cleanup_index), else the entry keeps the copy for the names left.
  void forget(int dirfd, const char* name) EXCLUDES(mu_);

 private:
  void migrate(uint64_t ino, const IndexKey& k) EXCLUDES(mu_);
  Result<void> set_nlink(int dirfd, const char* name, int upper_diff);

  const UniqueFd dir_;
  const UniqueFd legacy_;
  UpperDir& upper_;
  std::mutex mu_;
};

}  // namespace layer::overlay
