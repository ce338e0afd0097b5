#include "lazy/toc_tree.hpp"

#include <archive_entry.h>
#include <unistd.h>

#include <memory>

#include "unpack/tree_writer.hpp"
#include "util/error.hpp"

namespace layer::lazy {

namespace {

struct EntryFree {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};

// The tar entry the TOC entry stands for (no data).
std::unique_ptr<archive_entry, EntryFree> to_archive_entry(const Entry& t) {
  std::unique_ptr<archive_entry, EntryFree> e(archive_entry_new());
  if (!e) throw Error("archive_entry_new", ENOMEM);
  archive_entry_set_pathname(e.get(), t.path.empty() ? "." : t.path.c_str());
  archive_entry_set_perm(e.get(), t.mode & 07777);
  archive_entry_set_uid(e.get(), t.uid);
  archive_entry_set_gid(e.get(), t.gid);
  archive_entry_set_mtime(e.get(), t.mtime.tv_sec, t.mtime.tv_nsec);
  switch (t.type) {
    case EntryType::Dir:
      archive_entry_set_filetype(e.get(), AE_IFDIR);
      break;
    case EntryType::Reg:
      archive_entry_set_filetype(e.get(), AE_IFREG);
      archive_entry_set_size(e.get(), static_cast<la_int64_t>(t.size));
      break;
    case EntryType::Symlink:
      archive_entry_set_filetype(e.get(), AE_IFLNK);
      archive_entry_set_symlink(e.get(), t.link.c_str());
      break;
    case EntryType::Hardlink:
      archive_entry_set_filetype(e.get(), AE_IFREG);
      archive_entry_set_hardlink(e.get(), t.link.c_str());
      break;
    case EntryType::Char:
    case EntryType::Block:
      archive_entry_set_filetype(e.get(), t.type == EntryType::Char ? AE_IFCHR : AE_IFBLK);
      archive_entry_set_rdevmajor(e.get(), t.dev_major);
      archive_entry_set_rdevminor(e.get(), t.dev_minor);
      break;
    case EntryType::Fifo:
      archive_entry_set_filetype(e.get(), AE_IFIFO);
      break;
  }
  for (const auto& [name, value] : t.xattrs)
    archive_entry_xattr_add_entry(e.get(), name.c_str(), value.data(), value.size());
  return e;
}

}  // namespace

unpack::Stats write_toc_tree(int staging_dir, const Toc& toc, const unpack::Options& opt,
                             const std::string& context) {
  if (opt.objects_dir < 0) throw Error(context + ": a lazy layer needs content objects");
  if (toc.entries.size() > opt.limits.max_entries)
    throw Error(context + ": more than " + std::to_string(opt.limits.max_entries) + " entries");
  unpack::Options effective = opt;
  if (::geteuid() != 0) effective.rootless = true;
  unpack::TreeWriter writer(staging_dir, effective, context);
  unpack::Stats stats;
  for (const Entry& t : toc.entries) {
    ++stats.entries;
    auto e = to_archive_entry(t);
    writer.apply_lazy(e.get(), t.digest ? &*t.digest : nullptr);
  }
  writer.finish();
  stats.file_bytes = writer.file_bytes();
  stats.content_digests = std::move(writer.content_digests());
  stats.implicit_dirs = writer.implicit_dirs();
  stats.objects = writer.objects();
  stats.object_bytes = writer.object_bytes();
  return stats;
}

}  // namespace layer::lazy
