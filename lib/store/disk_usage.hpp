// DiskUsage: counts the disk space of trees as du(1) does: allocated blocks
// (st_blocks * 512), every inode once however many names or trees it
// appears under. Symlinks are not followed. Holds only the set of inodes
// seen; not thread-safe.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <unordered_set>

namespace layer::store {

class DiskUsage {
 public:
  // Bytes below dirfd/name (name itself included) not counted before by this
  // object. A missing name counts 0; unreadable parts are skipped.
  uint64_t add(int dirfd, const std::string& name);

 private:
  bool first_time(dev_t dev, ino_t ino);

  std::unordered_set<uint64_t> seen_dev0_;  // inodes of the first device seen
  std::unordered_set<std::string> seen_other_;
  dev_t dev0_ = 0;
  bool have_dev0_ = false;
};

}  // namespace layer::store
