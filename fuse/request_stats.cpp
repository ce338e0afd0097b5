// RequestStats: the opcode names are the kernel's (<linux/fuse.h>), without
// the FUSE_ prefix.
#include "request_stats.hpp"

#include <algorithm>
#include <utility>
#include <vector>

namespace layer::fuse {

namespace {

const char* const kNames[] = {
    "0",
    "LOOKUP",
    "FORGET",
    "GETATTR",
    "SETATTR",
    "READLINK",
    "SYMLINK",
    "7",
    "MKNOD",
    "MKDIR",
    "UNLINK",
    "RMDIR",
    "RENAME",
    "LINK",
    "OPEN",
    "READ",
    "WRITE",
    "STATFS",
    "RELEASE",
    "19",
    "FSYNC",
    "SETXATTR",
    "GETXATTR",
    "LISTXATTR",
    "REMOVEXATTR",
    "FLUSH",
    "INIT",
    "OPENDIR",
    "READDIR",
    "RELEASEDIR",
    "FSYNCDIR",
    "GETLK",
    "SETLK",
    "SETLKW",
    "ACCESS",
    "CREATE",
    "INTERRUPT",
    "BMAP",
    "DESTROY",
    "IOCTL",
    "POLL",
    "NOTIFY_REPLY",
    "BATCH_FORGET",
    "FALLOCATE",
    "READDIRPLUS",
    "RENAME2",
    "LSEEK",
    "COPY_FILE_RANGE",
    "SETUPMAPPING",
    "REMOVEMAPPING",
    "SYNCFS",
    "TMPFILE",
    "STATX",
    "COPY_FILE_RANGE_64",
};
constexpr uint32_t kNamed = sizeof kNames / sizeof kNames[0];

}  // namespace

std::string RequestStats::summary() const {
  std::vector<std::pair<uint64_t, uint32_t>> seen;
  uint64_t total = 0;
  for (uint32_t op = 0; op <= kSlots; ++op) {
    uint64_t n = counts_[op].load(std::memory_order_relaxed);
    if (n == 0) continue;
    seen.emplace_back(n, op);
    total += n;
  }
  std::stable_sort(seen.begin(), seen.end(), [](auto& a, auto& b) { return a.first > b.first; });
  std::string s = "requests: " + std::to_string(total) + " (";
  for (size_t i = 0; i < seen.size(); ++i) {
    uint32_t op = seen[i].second;
    if (i) s += ", ";
    s += op == kOther ? "other" : op < kNamed ? kNames[op] : std::to_string(op);
    s += " " + std::to_string(seen[i].first);
  }
  return s + ")";
}

}  // namespace layer::fuse
