#include "lazy/toc.hpp"

#include <algorithm>

namespace layer::lazy {

std::optional<size_t> Toc::find(std::string_view path) const {
  auto it = by_path.find(std::string(path));
  if (it == by_path.end()) return std::nullopt;
  return it->second;
}

std::pair<uint64_t, uint64_t> Toc::blob_range(size_t i) const {
  const Entry& e = entries.at(i);
  if (e.chunks.empty()) return {0, 0};
  uint64_t lo = e.chunks.front().blob_offset, hi = e.chunks.front().blob_end;
  for (const Chunk& c : e.chunks) {
    lo = std::min(lo, c.blob_offset);
    hi = std::max(hi, c.blob_end);
  }
  return {lo, hi};
}

}  // namespace layer::lazy
