#include "store/store_usage.hpp"

#include <fcntl.h>
#include <sys/stat.h>

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

  // Objects: disk bytes of each, and the images whose layers name it.
  std::map<Digest, uint64_t> object_size;
  std::map<Digest, std::set<std::string>> object_images;
  std::map<Digest, std::vector<Digest>> layer_objects;
  for (const auto& info : st.layers()) {
    layer_objects[info.diff_id] = st.layer_objects(info.diff_id);
    u.object_entry_bytes += info.object_bytes;
  }
  for (const auto& im : images)
    for (const auto& d : im.diff_ids)
      for (const auto& o : layer_objects[d]) object_images[o].insert(im.ref);
  for (const auto& o : st.objects()) {
    struct stat ost;
    std::string rel = Layout::object_redirect(o).substr(1);
    if (::fstatat(st.objects_fd(), rel.c_str(), &ost, AT_SYMLINK_NOFOLLOW) == 0)
      object_size[o] = static_cast<uint64_t>(ost.st_blocks) * 512;
  }
  uint64_t image_objects = 0;
  for (const auto& [o, refs] : object_images) image_objects += object_size[o];

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
    std::set<Digest> objects;
    for (const auto& d : im.diff_ids)
      objects.insert(layer_objects[d].begin(), layer_objects[d].end());
    for (const auto& o : objects) {
      (object_images[o].size() > 1 ? iu.shared : iu.own) += object_size[o];
      u.unshared += object_size[o];
    }
    u.images.push_back(std::move(iu));
  }
  uint64_t image_layers = 0;
  for (const auto& d : used_by_images) image_layers += u.layers[index[d]].bytes;
  u.saved = u.unshared - image_layers - image_objects;

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
  u.object_bytes = DiskUsage().add(root, Layout::objects_dir());
  u.total = DiskUsage().add(root, ".");
  uint64_t known = u.layer_bytes + u.blob_bytes + u.container_bytes + u.object_bytes;
  u.other_bytes = u.total > known ? u.total - known : 0;
  return u;
}

}  // namespace layer::store
