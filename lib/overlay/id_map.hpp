// IdMap: a uid or gid mapping in fuse-overlayfs form ("cid:hostid:count[:...]"),
// translating ids between the mount (container side) and the layers on disk
// (host side). Immutable after parse; safe to share between threads.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace layer::overlay {

class IdMap {
 public:
  struct Range {
    uint32_t inside;
    uint32_t outside;
    uint32_t count;
  };

  // Throws Error naming `what` for malformed input.
  static IdMap parse(const std::string& spec, const std::string& what);

  bool empty() const { return ranges_.empty(); }
  // Host id on disk -> id shown in the mount; unmapped ids show as `overflow`.
  uint32_t to_inside(uint32_t outside, uint32_t overflow = 65534) const;
  // Id from a request -> host id to store; unmapped ids become `overflow`.
  uint32_t to_outside(uint32_t inside, uint32_t overflow = 65534) const;

 private:
  std::vector<Range> ranges_;
};

}  // namespace layer::overlay
