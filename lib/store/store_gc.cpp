// Store: garbage collection and quarantine.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>

#include "oci/image.hpp"
#include "store/disk_usage.hpp"
#include "store/layout.hpp"
#include "store/records.hpp"
#include "store/store.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::store {

using detail::kMaxRecordBytes;
using detail::mkdir_at;
using detail::now_rfc3339;

GcReport Store::gc(bool dry_run, bool quarantine) {
  if (mode_ != LockMode::Exclusive)
    throw Error("store " + root_ + ": gc needs the exclusive store lock");
  std::set<Digest> used_layers, used_blobs;
  for (const auto& im : images()) {
    used_layers.insert(im.diff_ids.begin(), im.diff_ids.end());
    used_blobs.insert(im.manifest);
    used_blobs.insert(im.config);
    // Layer blobs kept in the store (layerctl commit keeps its own) stay
    // while an image's manifest names them.
    try {
      if (auto m = read_blob(im.manifest, kMaxRecordBytes))
        for (const auto& l : oci::parse_manifest(*m).layers) used_blobs.insert(l.digest);
    } catch (const Error&) {
      // A corrupt or unreadable manifest is fsck's to report; keep what we know.
    }
  }
  for (const auto& c : containers()) used_layers.insert(c.diff_ids.begin(), c.diff_ids.end());

  GcReport report;
  auto remove = [&](GcItem::Kind kind, const std::string& dir, const std::string& name,
                    const std::string& shown) {
    std::string from = dir + "/" + name;
    GcItem item{kind, shown, 0};
    {
      UniqueFd d = sys::xopen_at(root_fd_.get(), dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0,
                                 root_ + "/" + dir);
      item.bytes = DiskUsage().add(d.get(), name);
    }
    if (!dry_run) {
      // Renamed into tmp/ first: a crash leaves the whole thing visible or
      // none of it, and the sweep finishes what was moved.
      Staging junk = make_staging("rm-");
      if (::renameat(root_fd_.get(), from.c_str(), junk.fd.get(), "old") < 0)
        throw_errno("remove " + root_ + "/" + from);
      sys::xfsync(root_fd_.get(), dir);
      sys::xremove_tree(tmp_fd_.get(), junk.name);
    }
    report.bytes += item.bytes;
    report.items.push_back(std::move(item));
  };
  for (const char* alg : {"sha256", "sha512"}) {
    std::string dir = Layout::layers_dir(alg);
    for (const auto& hex : sys::xlist_dir(root_fd_.get(), dir)) {
      std::string s = std::string(alg) + ":" + hex;
      bool valid = Digest::valid(s);
      if (valid && used_layers.count(Digest::parse(s))) continue;
      remove(GcItem::Kind::Layer, dir, hex, valid ? s : dir + "/" + hex);
    }
    std::string bdir = Layout::blobs_dir(alg);
    for (const auto& hex : sys::xlist_dir(root_fd_.get(), bdir)) {
      std::string s = std::string(alg) + ":" + hex;
      bool valid = Digest::valid(s);
      if (valid && used_blobs.count(Digest::parse(s))) continue;
      remove(GcItem::Kind::Blob, bdir, hex, valid ? s : bdir + "/" + hex);
    }
  }
  // Objects: those no remaining layer names. A pull that found an object
  // present (and wrote none) holds the shared lock until its image record
  // names the layer, so under the exclusive lock every needed object is
  // named by a published layer.
  std::set<Digest> used_objects;
  for (const auto& l : used_layers)
    if (has_layer(l))
      for (auto& o : layer_objects(l)) used_objects.insert(std::move(o));
  for (const auto& o : objects()) {
    if (used_objects.count(o)) continue;
    std::string path = Layout::object(o);
    struct stat st;
    if (::fstatat(root_fd_.get(), path.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) continue;
    GcItem item{GcItem::Kind::Object, o.str(), static_cast<uint64_t>(st.st_blocks) * 512};
    // One unlink: an object is there or not, never half-removed.
    if (!dry_run && ::unlinkat(root_fd_.get(), path.c_str(), 0) < 0)
      throw_errno("remove " + root_ + "/" + path);
    report.bytes += item.bytes;
    report.items.push_back(std::move(item));
  }
  if (quarantine && sys::exists_at(root_fd_.get(), Layout::quarantine_dir()))
    for (const auto& name : sys::xlist_dir(root_fd_.get(), Layout::quarantine_dir()))
      remove(GcItem::Kind::Quarantined, Layout::quarantine_dir(), name, name);
  for (auto& item : sweep_tmp(dry_run)) {
    report.bytes += item.bytes;
    report.items.push_back(std::move(item));
  }
  return report;
}

std::string Store::quarantine(const std::string& from, const std::string& kind, const Digest& d) {
  if (mode_ != LockMode::Exclusive)
    throw Error("store " + root_ + ": quarantine needs the exclusive store lock");
  mkdir_at(root_fd_.get(), Layout::quarantine_dir(), 0700);
  std::string stamp = now_rfc3339();
  for (char& c : stamp)
    if (c == ':') c = '-';
  std::string to =
      Layout::quarantine_dir() + "/" + kind + "-" + d.algorithm + "-" + d.hex + "-" + stamp;
  for (int n = 1; sys::exists_at(root_fd_.get(), to); ++n)
    to = Layout::quarantine_dir() + "/" + kind + "-" + d.algorithm + "-" + d.hex + "-" + stamp +
         "." + std::to_string(n);
  if (::renameat(root_fd_.get(), from.c_str(), root_fd_.get(), to.c_str()) < 0)
    throw_errno("move " + root_ + "/" + from + " to " + to);
  sys::xfsync(root_fd_.get(), Layout::quarantine_dir());
  return to;
}

std::string Store::quarantine_layer(const Digest& diff_id) {
  std::string dir = Layout::layer_dir(diff_id);
  std::string to = quarantine(dir, "layer", diff_id);
  sys::xfsync(root_fd_.get(), Layout::layers_dir(diff_id.algorithm));
  return to;
}

std::string Store::quarantine_object(const Digest& d) {
  std::string to = quarantine(Layout::object(d), "object", d);
  sys::xfsync(root_fd_.get(), Layout::object_fanout(d));
  return to;
}

std::string Store::quarantine_blob(const Digest& d) {
  std::string to = quarantine(Layout::blob(d), "blob", d);
  sys::xfsync(root_fd_.get(), Layout::blobs_dir(d.algorithm));
  return to;
}

}  // namespace layer::store
