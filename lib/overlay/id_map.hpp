// IdMap: a uid or gid mapping in fuse-overlayfs's form and direction
// ("disk:mount:count[:disk:mount:count...]": uidmapping=0:1000:1 shows an
// on-disk uid 0 as 1000 and stores a 1000 written through the mount as 0),
// translating ids between the layers on disk (outside) and the mount
// (inside). Immutable after parse; safe to share between threads.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace layer::overlay {

class IdMap {
 public:
  struct Range {
    uint32_t inside;   // as the mount shows it
    uint32_t outside;  // as stored on disk
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
