// LinkIndex: workdir/layerfs-index, so that hard links survive copy-up (the
// kernel's index=on idea). When a lower file with several names is copied up
// through one name, an entry named after its inode number records the upper
// copy (by file handle: it survives renames and adds no link the kernel
// would count) and, in an xattr, how many of its names are still only
// below; each other name then becomes a link to that copy when it changes,
// and reads of it go to the copy at once (indexed_copy).
//
// Thread-safe. mu_ serializes each read-modify-write of an entry's name
// count, and is held across a copy-up of a multiply linked file (see
// Copier): after Node::copy_mu, before the leaf locks (lock order:
// overlay.hpp).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <mutex>

#include "overlay/node.hpp"
#include "util/result.hpp"
#include "util/thread_annotations.hpp"
#include "util/unique_fd.hpp"

namespace layer::overlay {

class UpperDir;
struct IndexEntry;

class LinkIndex {
 public:
  // `dir` is invalid for a read-only mount: then nothing is indexed.
  // `upper` (for work/ and file handles) is borrowed for the index's life.
  LinkIndex(UniqueFd dir, UpperDir& upper, const char* names_xattr)
      : dir_(std::move(dir)), upper_(upper), names_xattr_(names_xattr) {}

  bool valid() const { return dir_.valid(); }
  std::mutex& mu() { return mu_; }

  // Links the upper copy that the entry of `ino` names to (dirfd, name);
  // ENOENT when there is none.
  Result<void> link_to(uint64_t ino, int dirfd, const char* name) REQUIRES(mu_);
  // After a copy-up of `ino` (with `lower_nlink` names below) published at
  // (dirfd, name): records it for the other names. Without the entry the
  // other names would get copies of their own: a broken link, not a broken
  // file, so a failure is not reported.
  void record(uint64_t ino, int dirfd, const char* name, nlink_t lower_nlink) REQUIRES(mu_);

  // The upper copy of a lower node whose other name was copied up, as an
  // O_PATH fd; an invalid fd when there is none. Reads of the node use it,
  // so they see the copy without writing the upper.
  Result<UniqueFd> indexed_copy(Node* n);
  // Whether `ino` has an entry (a copy, or a count only).
  bool has(uint64_t ino);
  // The names of `ino` still only below (UINT32_MAX: no entry).
  uint32_t count(uint64_t ino);
  // Names of an indexed file still only in a lower layer; UINT32_MAX when
  // upper_st is not an indexed copy.
  uint32_t lower_names(uint64_t ino, const struct stat& upper_st);
  // The link count of an indexed upper copy `upper_st` as every name sees it.
  nlink_t indexed_nlink(uint64_t ino, const struct stat& upper_st);
  // A lower-only name of a multiply linked file is removed.
  Result<void> forget_lower_name(uint64_t ino, nlink_t lower_nlink) EXCLUDES(mu_);
  // The last upper name of a copy whose other names are still below is
  // removed: the index keeps the inode (and its data) for them.
  Result<void> keep_last_link(uint64_t ino, int dirfd, const char* name) EXCLUDES(mu_);

 private:
  Result<void> write(uint64_t ino, int dirfd, const char* name, uint32_t others);
  Result<void> write_entry(uint64_t ino, const IndexEntry& e, uint32_t others);
  Result<UniqueFd> open_entry(uint64_t ino, uint64_t* upper_ino);

  const UniqueFd dir_;
  UpperDir& upper_;
  const char* const names_xattr_;
  std::mutex mu_;
};

}  // namespace layer::overlay
