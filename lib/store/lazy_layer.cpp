// Store: completing a lazily pulled layer (docs/lazy-pull.md).
#include <fcntl.h>
#include <unistd.h>

#include <set>

#include "format/overlay_format.hpp"
#include "store/file_list.hpp"
#include "store/layout.hpp"
#include "store/records.hpp"
#include "store/store.hpp"
#include "unpack/unpacker.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::store {

bool Store::complete_lazy_layer(const unpack::LayerSpec& spec, ByteSource& src,
                                const unpack::Options& opt, const unpack::ProgressFn& progress) {
  detail::LayerLock lock(root_fd_.get(), spec.diff_id);
  if (!is_lazy_layer(spec.diff_id)) return false;
  const std::string what = "layer " + spec.diff_id.str();
  std::optional<FileList> recorded = file_list(spec.diff_id);
  std::optional<LayerInfo> info = layer_info(spec.diff_id);
  if (!recorded || !info) throw Error(what + ": a lazy layer without its file list or record");
  Staging st = make_staging("complete-");
  try {
    detail::StagingTree tree = detail::make_staging_tree(st.fd.get());
    UniqueFd diff = std::move(tree.diff), staged = std::move(tree.objects);
    // Every file with content an object, as the lazy tree has them.
    unpack::Options uopt = opt;
    uopt.objects_dir = objects_fd_.get();
    uopt.object_staging = staged.get();
    uopt.inline_max = 0;
    uopt.record_digests = true;
    unpack::Stats stats = unpack::unpack_layer(diff.get(), spec, src, uopt, progress);
    FileList got = FileList::scan(diff.get(), stats.content_digests);
    auto diffs = FileList::compare(*recorded, got);
    // What no tar entry gives a time takes the time it was made, in both
    // trees differently: the root (usually), implicit directories, whiteouts.
    std::set<std::string> untimed;
    for (const FileEntry& e : got.entries) {
      bool whiteout = (e.type == FileType::CharDevice && e.rdev_major == 0 && e.rdev_minor == 0);
      for (const auto& [name, value] : e.xattrs)
        for (const format::XattrNames* ns : format::kNamespaces)
          whiteout = whiteout || name == ns->whiteout;
      if (whiteout || e.path == "." ||
          (info->implicit_dirs.count(e.path) && stats.implicit_dirs.count(e.path)))
        untimed.insert(e.path);
    }
    std::erase_if(diffs, [&](const FileDiff& f) {
      return f.what == "mtime changed" && untimed.count(f.path);
    });
    if (!diffs.empty())
      throw Error(what + ": its blob does not unpack to the tree its table of contents made ('" +
                  diffs.front().path + "': " + diffs.front().what + "; " +
                  std::to_string(diffs.size()) + " difference" + (diffs.size() == 1 ? "" : "s") +
                  "): remove the image and pull it again without --lazy");
    if (opt.sync && ::syncfs(st.fd.get()) < 0) throw_errno("syncfs " + root_);
    publish_objects(staged.get(), opt.sync);
    info->compressed = {spec.digest};
    if (spec.size >= 0) info->compressed_sizes[spec.digest] = spec.size;
    write_record(Layout::layer_json(spec.diff_id), detail::layer_to_json(*info).dump(2) + "\n");
    // lazy.json last but one: while it is there the layer counts as lazy.
    UniqueFd dir = sys::xopen_at(root_fd_.get(), Layout::layer_dir(spec.diff_id),
                                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, what);
    if (::unlinkat(dir.get(), Layout::kLazyJson, 0) < 0) throw_errno(what + ": remove lazy.json");
    if (::unlinkat(dir.get(), Layout::kTocBlob, 0) < 0 && errno != ENOENT)
      throw_errno(what + ": remove toc.blob");
    sys::xfsync(dir.get(), Layout::layer_dir(spec.diff_id));
  } catch (...) {
    detail::drop_staging(tmp_fd_.get(), st.name);
    throw;
  }
  detail::drop_staging(tmp_fd_.get(), st.name);
  return true;
}

}  // namespace layer::store
