#include "overlay/listings.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <string_view>
#include <unordered_set>

#include "format/overlay_format.hpp"
#include "overlay/resolver.hpp"

namespace layer::overlay {

namespace {

bool stat_at(int dirfd, const char* name, struct stat* st) {
  return ::fstatat(dirfd, name, st, AT_SYMLINK_NOFOLLOW) == 0;
}

}  // namespace

void Listings::invalidate(Node* dir) {
  std::lock_guard<std::mutex> g(dir->mu);
  dir->listing.reset();
  ++dir->listing_gen;
}

Result<uint32_t> Listings::merged_nlink(Node* dir) {
  auto l = list(dir);
  if (!l) return Errno{l.error()};
  return 2 + l.value()->subdirs;
}

Result<std::shared_ptr<const Listing>> Listings::build(const DirStack& stack) {
  auto out = std::make_shared<Listing>();
  std::unordered_set<std::string> seen;  // names decided by an upper layer
  for (const auto& ld : stack) {
    // Names are unique within one directory: the first layer need not look
    // in `seen`, the last need not add to it (a new directory, one layer
    // only, hashes no name).
    const bool check_seen = &ld != &stack.front();
    const bool add_seen = &ld != &stack.back();
    auto dfd = open_in_layer(ld.layer, ld.fd.get(), ".", O_RDONLY | O_DIRECTORY);
    if (!dfd) return Errno{dfd.error()};
    struct stat dst;
    if (::fstat(dfd.value().get(), &dst) != 0) return last_errno();
    std::vector<std::string> hidden_below;  // names this layer's OCI whiteouts remove
    const bool origins = ld.layer == kUpper && resolver_.may_hold_origins(stack, dfd.value().get());
    // Regular files are stat'ed only where they may be xattr whiteouts: a
    // lower directory marked for them (see LayerDir::xwhiteouts), an upper
    // one with lower directories under it or opaque (a whiteout hides a
    // lower name; a directory with none holds none). A new directory's
    // files cost no syscall each.
    const bool xwhiteouts = ld.layer != kUpper
                                ? ld.may_hold_xwhiteouts()
                                : stack.size() > 1 || format::is_opaque(dfd.value().get());
    // getdents64 straight into a buffer: no DIR stream and its extra calls.
    alignas(struct dirent64) char buf[32768];
    ssize_t len = 0, pos = 0;
    for (;;) {
      if (pos >= len) {
        len = ::getdents64(dfd.value().get(), buf, sizeof buf);
        if (len < 0) return last_errno();
        if (len == 0) break;
        pos = 0;
      }
      auto* e = reinterpret_cast<struct dirent64*>(buf + pos);
      pos += e->d_reclen;
      std::string_view name(e->d_name);
      if (name == "." || name == ".." || name == format::kOpaqueMarker) continue;
      if (ld.layer != kUpper && format::classify_name(name) != format::Whiteout::kNone) {
        if (format::classify_name(name) == format::Whiteout::kOciName)
          hidden_below.emplace_back(name.substr(format::kWhiteoutPrefix.size()));
        continue;
      }
      if (check_seen && seen.count(std::string(name))) continue;
      unsigned char type = e->d_type;
      struct stat st;
      st.st_dev = dst.st_dev;
      st.st_ino = e->d_ino;
      if (type == DT_UNKNOWN || type == DT_CHR || (type == DT_REG && xwhiteouts)) {
        if (!stat_at(ld.fd.get(), e->d_name, &st)) {
          if (errno == ENOENT) continue;
          return last_errno();
        }
        type = static_cast<unsigned char>(IFTODT(st.st_mode));
        if (format::is_whiteout(ld.fd.get(), e->d_name, st)) {
          if (add_seen) seen.emplace(name);
          continue;
        }
      }
      if (add_seen) seen.emplace(name);
      uint64_t ino = resolver_.map_ino(ld.layer, st, ld.fd.get(), e->d_name, origins);
      out->entries.push_back(DirEntry{std::string(name), ino, type, 0, ld.layer});
      if (type == DT_DIR) ++out->subdirs;
    }
    if (add_seen)
      for (auto& h : hidden_below) seen.insert(std::move(h));
  }
  // Offsets 1 and 2 are "." and ".."; names hash into [3, 2^62 + 3).
  // Sorted through (offset, index) pairs: cheaper to move than entries.
  auto& es = out->entries;
  std::vector<std::pair<uint64_t, uint32_t>> order;
  order.reserve(es.size());
  for (size_t i = 0; i < es.size(); ++i) {
    es[i].off = (std::hash<std::string_view>{}(es[i].name) >> 2) + 3;
    order.emplace_back(es[i].off, static_cast<uint32_t>(i));
  }
  std::sort(order.begin(), order.end(), [&es](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : es[a.second].name < es[b.second].name;
  });
  std::vector<DirEntry> sorted;
  sorted.reserve(es.size());
  for (const auto& o : order) sorted.push_back(std::move(es[o.second]));
  es = std::move(sorted);
  for (size_t i = 1; i < out->entries.size(); ++i)  // a collision: the next free value
    if (out->entries[i].off <= out->entries[i - 1].off)
      out->entries[i].off = out->entries[i - 1].off + 1;
  return std::shared_ptr<const Listing>(std::move(out));
}

Result<std::shared_ptr<const Listing>> Listings::list(Node* dir) {
  if (!dir->is_dir()) return Errno{ENOTDIR};
  std::shared_ptr<const DirStack> stack;
  uint64_t gen;
  {
    std::lock_guard<std::mutex> g(dir->mu);
    if (dir->listing) return dir->listing;
    stack = dir->stack;
    gen = dir->listing_gen;
  }
  auto l = build(*stack);
  if (!l) return l;
  std::lock_guard<std::mutex> g(dir->mu);
  // Keep it only if the directory did not change meanwhile (a change drops
  // the cache; a racing change could otherwise be hidden by this older list).
  if (dir->listing_gen == gen && dir->stack == stack) dir->listing = l.value();
  return l;
}

}  // namespace layer::overlay
