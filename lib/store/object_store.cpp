// Store: content objects (docs/store-format-2.md).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/layout.hpp"
#include "store/records.hpp"
#include "store/store.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::store {

namespace detail {

void write_object_list(int dirfd, const std::set<Digest>& objects) {
  std::string text;
  text.reserve(objects.size() * 72);
  for (const auto& d : objects) text += d.str() + "\n";
  UniqueFd fd = sys::xopen_at(dirfd, "objects.list", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW,
                              0644, "staging objects.list");
  if (auto w = sys::write_all(fd.get(), text.data(), text.size()); !w)
    throw Error("write staging objects.list", w.error());
}

std::vector<Digest> parse_object_list(std::string_view text, const std::string& what) {
  std::vector<Digest> out;
  size_t line = 0;
  while (!text.empty()) {
    ++line;
    auto nl = text.find('\n');
    if (nl == std::string_view::npos) throw Error(what + ": truncated at line " + std::to_string(line));
    std::string_view s = text.substr(0, nl);
    text.remove_prefix(nl + 1);
    if (!Digest::valid(s)) throw Error(what + ": line " + std::to_string(line) + " is not a digest");
    out.push_back(Digest::parse(s));
  }
  return out;
}

}  // namespace detail

bool Store::is_lazy_layer(const Digest& diff_id) const {
  return sys::exists_at(root_fd_.get(), Layout::layer_lazy(diff_id));
}

std::optional<Store::LazyPresence> Store::lazy_presence(const Digest& diff_id) const {
  if (!is_lazy_layer(diff_id)) return std::nullopt;
  LazyPresence p;
  for (const auto& o : layer_objects(diff_id)) {
    ++p.total;
    if (has_object(o)) ++p.present;
  }
  return p;
}

bool Store::has_object(const Digest& d) const {
  return sys::exists_at(root_fd_.get(), Layout::object(d));
}

std::vector<Digest> Store::layer_objects(const Digest& diff_id) const {
  std::string path = Layout::layer_objects(diff_id);
  if (!sys::exists_at(root_fd_.get(), path)) return {};
  std::string text =
      sys::xread_file(root_fd_.get(), path, size_t{1} << 30, root_ + "/" + path);
  return detail::parse_object_list(text, root_ + "/" + path);
}

std::vector<Digest> Store::objects() const {
  std::vector<Digest> out;
  std::string alg_dir = Layout::objects_alg_dir("sha256");
  for (const auto& fan : sys::xlist_dir(root_fd_.get(), alg_dir)) {
    if (fan.size() != 2) continue;
    for (const auto& rest : sys::xlist_dir(root_fd_.get(), alg_dir + "/" + fan)) {
      std::string s = "sha256:" + fan + rest;
      if (Digest::valid(s)) out.push_back(Digest::parse(s));
    }
  }
  return out;
}

void Store::publish_objects(int staging, bool sync) {
  std::set<std::string> fanouts_made;
  bool any = false;
  for (const auto& hex : sys::xlist_dir(staging, ".")) {
    std::string s = "sha256:" + hex;
    if (!Digest::valid(s)) continue;  // a temporary left by a failed entry
    Digest d = Digest::parse(s);
    std::string fan = Layout::object_fanout(d);
    if (!fanouts_made.count(fan)) {
      detail::mkdir_at(root_fd_.get(), fan, 0755);
      fanouts_made.insert(fan);
    }
    if (::renameat2(staging, hex.c_str(), root_fd_.get(), Layout::object(d).c_str(),
                    RENAME_NOREPLACE) < 0) {
      if (errno == EEXIST) continue;  // published meanwhile by a concurrent unpack
      throw_errno("publish object " + d.str());
    }
    any = true;
  }
  // The objects' data was made durable by the caller; this makes their names
  // durable before any layer that names them is published.
  if (any && sync && ::syncfs(objects_fd_.get()) < 0) throw_errno("syncfs " + root_);
}

}  // namespace layer::store
