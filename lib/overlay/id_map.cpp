#include "overlay/id_map.hpp"

#include <cerrno>
#include <cstdlib>
#include <vector>

#include "util/error.hpp"

namespace layer::overlay {

namespace {
std::vector<std::string> split_colons(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  for (;;) {
    size_t c = s.find(':', pos);
    out.push_back(s.substr(pos, c == std::string::npos ? std::string::npos : c - pos));
    if (c == std::string::npos) return out;
    pos = c + 1;
  }
}

uint32_t parse_u32(const std::string& s, const std::string& what) {
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos)
    throw Error(what + ": '" + s + "' is not a number");
  errno = 0;
  unsigned long long v = std::strtoull(s.c_str(), nullptr, 10);
  if (errno != 0 || v > UINT32_MAX) throw Error(what + ": '" + s + "' is out of range");
  return static_cast<uint32_t>(v);
}
}  // namespace

IdMap IdMap::parse(const std::string& spec, const std::string& what) {
  IdMap m;
  auto parts = split_colons(spec);
  if (parts.empty() || parts.size() % 3 != 0)
    throw Error(what + ": expected triples 'disk:mount:count', got '" + spec + "'");
  for (size_t i = 0; i < parts.size(); i += 3) {
    // fuse-overlayfs's order (its "host:to:len"): the id on disk first, the
    // id the mount shows second; containers/storage writes them so.
    Range r{};
    r.outside = parse_u32(parts[i], what);
    r.inside = parse_u32(parts[i + 1], what);
    r.count = parse_u32(parts[i + 2], what);
    if (r.count == 0) throw Error(what + ": empty range in '" + spec + "'");
    if (uint64_t{r.inside} + r.count - 1 > UINT32_MAX ||
        uint64_t{r.outside} + r.count - 1 > UINT32_MAX)
      throw Error(what + ": range overflows in '" + spec + "'");
    m.ranges_.push_back(r);
  }
  return m;
}

uint32_t IdMap::to_inside(uint32_t outside, uint32_t overflow) const {
  if (ranges_.empty()) return outside;
  for (const auto& r : ranges_)
    if (outside >= r.outside && outside - r.outside < r.count)
      return r.inside + (outside - r.outside);
  return overflow;
}

uint32_t IdMap::to_outside(uint32_t inside, uint32_t overflow) const {
  if (ranges_.empty()) return inside;
  for (const auto& r : ranges_)
    if (inside >= r.inside && inside - r.inside < r.count) return r.outside + (inside - r.inside);
  return overflow;
}

}  // namespace layer::overlay
