#include "store/store_usage.hpp"

#include <fcntl.h>

#include <algorithm>
#include <map>
#include <set>

#include "store/disk_usage.hpp"
#include "store/layout.hpp"
#include "util/sys.hpp"

namespace layer::store {

StoreUsage StoreUsage::measure(const Store& st) {
  StoreUsage u;
  int root = st.root_fd();
  auto images = st.images();
  auto containers = st.containers();
  std::sort(images.begin(), images.end(), [](auto& a, auto& b) { return a.ref < b.ref; });

  // Layers: every directory under layers/, each measured on its own (a
  // layer's hardlinks stay within it).
  std::map<Digest, size_t> index;
  for (const auto& info : st.layers()) {
    LayerUsage l;
    l.diff_id = info.diff_id;
    l.bytes = DiskUsage().add(root, Layout::layer_dir(info.diff_id));
    index[l.diff_id] = u.layers.size();
    u.layers.push_back(std::move(l));
  }
  for (const auto& im : images) {
    std::set<Digest> once(im.diff_ids.begin(), im.diff_ids.end());
    for (const auto& d : once)
      if (auto it = index.find(d); it != index.end()) u.layers[it->second].images.push_back(im.ref);
  }
  for (const auto& c : containers) {
    std::set<Digest> once(c.diff_ids.begin(), c.diff_ids.end());
    for (const auto& d : once)
      if (auto it = index.find(d); it != index.end())
        u.layers[it->second].containers.push_back(c.id);
  }

  std::set<Digest> used_by_images;
  for (const auto& im : images) {
    ImageUsage iu;
    iu.ref = im.ref;
    std::set<Digest> once(im.diff_ids.begin(), im.diff_ids.end());
    for (const auto& d : once) {
      auto it = index.find(d);
      if (it == index.end()) continue;
      const LayerUsage& l = u.layers[it->second];
      (l.images.size() > 1 ? iu.shared : iu.own) += l.bytes;
      u.unshared += l.bytes;
      used_by_images.insert(d);
    }
    u.images.push_back(std::move(iu));
  }
  uint64_t image_layers = 0;
  for (const auto& d : used_by_images) image_layers += u.layers[index[d]].bytes;
  u.saved = u.unshared - image_layers;

  for (const auto& c : containers) {
    ContainerUsage cu;
    cu.id = c.id;
    cu.name = c.name;
    cu.image = c.image;
    cu.own = DiskUsage().add(root, Layout::container_dir(c.id));
    u.container_bytes += cu.own;
    std::set<Digest> once(c.diff_ids.begin(), c.diff_ids.end());
    for (const auto& d : once) {
      auto it = index.find(d);
      if (it == index.end()) continue;
      const LayerUsage& l = u.layers[it->second];
      bool only_mine = l.images.empty() && l.containers.size() == 1;
      (only_mine ? cu.own : cu.shared) += l.bytes;
    }
    u.containers.push_back(std::move(cu));
  }

  for (const auto& l : u.layers) u.layer_bytes += l.bytes;
  {
    DiskUsage blobs;
    u.blob_bytes = blobs.add(root, "blobs");
  }
  u.total = DiskUsage().add(root, ".");
  uint64_t known = u.layer_bytes + u.blob_bytes + u.container_bytes;
  u.other_bytes = u.total > known ? u.total - known : 0;
  return u;
}

}  // namespace layer::store
