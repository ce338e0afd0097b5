#include "commit/diff_writer.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <functional>
#include <set>
#include <string_view>

#include "commit/diff_util.hpp"
#include "format/overlay_format.hpp"
#include "store/object_ref.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"
#include "util/unique_fd.hpp"

namespace layer::commit {

using detail::join;
using detail::overlay_xattr;
using detail::sorted_names;

namespace {

using format::kOpaqueMarker;
using format::kWhiteoutPrefix;
constexpr size_t kChunk = 1 << 20;
constexpr uint64_t kProgressStep = 8 << 20;

struct EntryFree {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};
using Entry = std::unique_ptr<archive_entry, EntryFree>;

// A redirect value as a path below the layer roots ("a/b"), relative ones
// resolved against the parent's lower path. Empty: not a usable redirect.
std::string redirect_target(const std::string& value, const std::string& parent_lower) {
  if (value.empty() || value.find('\0') != std::string::npos) return {};
  std::string out;
  if (value[0] == '/') {
    size_t i = value.find_first_not_of('/');
    out = i == std::string::npos ? "" : value.substr(i);
  } else {
    if (value.find('/') != std::string::npos) return {};
    out = join(parent_lower, value);
  }
  for (size_t pos = 0; pos <= out.size();) {  // no "." or ".." components
    size_t slash = out.find('/', pos);
    if (slash == std::string::npos) slash = out.size();
    std::string_view c(out.data() + pos, slash - pos);
    if (c.empty() || c == "." || c == "..") return {};
    pos = slash + 1;
  }
  return out;
}

}  // namespace

void DiffWriter::ArchiveFree::operator()(archive* a) const {
  archive_write_free(a);
}

DiffWriter::DiffWriter(int top, std::vector<LowerDir> lowers, const DiffOptions& opt, TarSink sink,
                       std::string what)
    : top_(top),
      lowers_(std::move(lowers)),
      opt_(opt),
      sink_(std::move(sink)),
      what_(std::move(what)),
      a_(archive_write_new()) {
  archive* a = a_.get();
  if (!a) throw Error(what_ + ": archive_write_new failed");
  auto check = [&](int r, const char* step) {
    if (r != ARCHIVE_OK) {
      const char* msg = archive_error_string(a);
      throw Error(what_ + ": " + step + ": " + (msg ? msg : "libarchive error"));
    }
  };
  check(archive_write_set_format_pax_restricted(a), "pax format");
  // xattrs as SCHILY.xattr.* only, the way Go's archive/tar writes them.
  check(archive_write_set_format_option(a, "pax", "xattrheader", "SCHILY"), "xattrheader");
  check(archive_write_add_filter_none(a), "no filter");
  check(archive_write_set_bytes_in_last_block(a, 1), "last block");
  check(archive_write_open2(a, this, nullptr, &DiffWriter::on_write, nullptr, nullptr),
        "open tar writer");
}

DiffWriter::~DiffWriter() = default;

long DiffWriter::on_write(archive*, void* self, const void* buf, size_t n) {
  auto* w = static_cast<DiffWriter*>(self);
  try {
    w->sink_(buf, n);
  } catch (...) {
    w->sink_error_ = std::current_exception();
    return -1;
  }
  return static_cast<long>(n);
}

void DiffWriter::fail(const std::string& rel, const std::string& what, int err) const {
  if (sink_error_) std::rethrow_exception(sink_error_);
  std::string ctx = what_ + ": '" + (rel.empty() ? "." : rel) + "': " + what;
  if (err) throw Error(ctx, err);
  const char* msg = a_ ? archive_error_string(a_.get()) : nullptr;
  throw Error(msg && what.find("tar") != std::string::npos ? ctx + ": " + msg : ctx);
}

int64_t DiffWriter::clamp(int64_t t) const {
  return opt_.clamp_mtime && t > *opt_.clamp_mtime ? *opt_.clamp_mtime : t;
}

void DiffWriter::count_entry(const std::string& rel) {
  if (++stats_.entries > opt_.max_entries)
    fail(rel, "more than " + std::to_string(opt_.max_entries) + " entries");
}

void DiffWriter::header(void* entry, const std::string& rel) {
  count_entry(rel);
  auto* e = static_cast<archive_entry*>(entry);
  if (archive_write_header(a_.get(), e) < ARCHIVE_WARN) fail(rel, "write tar header");
}

DiffStats DiffWriter::write() {
  struct stat st;
  if (::fstat(top_, &st) != 0) fail("", "stat", errno);
  if (format::is_opaque(top_)) emit_opaque("", st);
  walk_upper("", top_);
  std::sort(lower_links_.begin(), lower_links_.end());
  for (const auto& [path, target] : lower_links_) {
    // As GNU tar and containers/storage write a link: the target's own
    // mode, owner and mtime (podman and Docker apply them to the file).
    struct stat ts;
    if (::fstatat(top_, target.c_str(), &ts, AT_SYMLINK_NOFOLLOW) != 0) fail(target, "stat", errno);
    Entry e(archive_entry_new());
    archive_entry_copy_stat(e.get(), &ts);
    archive_entry_copy_pathname(e.get(), path.c_str());
    archive_entry_copy_hardlink(e.get(), target.c_str());
    archive_entry_set_size(e.get(), 0);
    archive_entry_unset_atime(e.get());
    archive_entry_unset_ctime(e.get());
    archive_entry_unset_birthtime(e.get());
    int64_t m = clamp(ts.st_mtim.tv_sec);
    archive_entry_set_mtime(e.get(), m, m == ts.st_mtim.tv_sec ? ts.st_mtim.tv_nsec : 0);
    header(e.get(), path);
  }
  if (archive_write_close(a_.get()) != ARCHIVE_OK) fail("", "finish tar");
  if (opt_.progress) opt_.progress(stats_.file_bytes);
  return stats_;
}

void DiffWriter::walk_upper(const std::string& rel, int dirfd) {
  struct Item {
    std::string name;
    struct stat st;
  };
  std::vector<Item> whiteouts, rest;
  for (auto& name : sorted_names(dirfd, what_ + ": '" + (rel.empty() ? "." : rel) + "'")) {
    struct stat st;
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;  // removed meanwhile (a mounted container)
      fail(join(rel, name), "stat", errno);
    }
    (format::is_whiteout(dirfd, name.c_str(), st) ? whiteouts : rest)
        .push_back(Item{std::move(name), st});
  }
  // Whiteouts before their siblings, as the image spec asks.
  for (const auto& w : whiteouts) {
    ++stats_.whiteouts;
    emit_whiteout(join(rel, std::string(kWhiteoutPrefix) + w.name), w.st);
  }
  for (const auto& it : rest) {
    std::string child = join(rel, it.name);
    if (it.name.starts_with(kWhiteoutPrefix))
      fail(child, "a name starting with '.wh.' cannot be stored in an OCI layer");
    if (!S_ISDIR(it.st.st_mode)) {
      emit_node(child, dirfd, it.name, it.st, true, child);
      continue;
    }
    auto cfd = sys::open_at(dirfd, it.name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (!cfd) fail(child, "open directory", cfd.error());
    emit_dir(child, dirfd, it.name, it.st);
    if (auto redirect = overlay_xattr(cfd->get(), "", &format::XattrNames::redirect)) {
      // A directory the kernel moved here: what it shows is its upper
      // content merged with the lower directory it came from. The layer
      // gets all of it, in an opaque directory.
      std::string lower = redirect_target(*redirect, rel);
      if (lower.empty()) fail(child, "unusable overlay redirect '" + *redirect + "'");
      emit_opaque(child, it.st);
      std::vector<Source> srcs;
      srcs.push_back(Source{std::move(cfd).value(), -1, true});
      srcs.back().fd = srcs.back().owned.get();
      for (auto& s : lower_dirs(lower)) srcs.push_back(std::move(s));
      walk_merged(child, srcs, lower);
      continue;
    }
    if (format::is_opaque(cfd->get())) emit_opaque(child, it.st);
    walk_upper(child, cfd->get());
  }
}

// A merged directory (inside a redirected one, so its whole content is
// written and no whiteout is needed: an ancestor is opaque). srcs: top first.
void DiffWriter::walk_merged(const std::string& rel, const std::vector<Source>& srcs,
                             const std::string& lower_rel) {
  struct Child {
    size_t src;
    struct stat st;
  };
  std::map<std::string, Child> kids;
  std::set<std::string> gone;
  for (size_t i = 0; i < srcs.size(); ++i) {
    for (auto& name : sorted_names(srcs[i].fd, what_ + ": '" + rel + "'")) {
      if (kids.count(name) || gone.count(name)) continue;
      struct stat st;
      if (::fstatat(srcs[i].fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;
        fail(join(rel, name), "stat", errno);
      }
      if (format::is_whiteout(srcs[i].fd, name.c_str(), st)) {
        gone.insert(std::move(name));
        continue;
      }
      kids.emplace(std::move(name), Child{i, st});
    }
  }
  for (const auto& [name, c] : kids) {
    std::string child = join(rel, name);
    std::string child_lower = join(lower_rel, name);
    const Source& src = srcs[c.src];
    if (name.starts_with(kWhiteoutPrefix))
      fail(child, "a name starting with '.wh.' cannot be stored in an OCI layer");
    if (!S_ISDIR(c.st.st_mode)) {
      emit_node(child, src.fd, name, c.st, src.upper, child_lower);
      continue;
    }
    auto cfd = sys::open_at(src.fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (!cfd) fail(child, "open directory", cfd.error());
    emit_dir(child, src.fd, name, c.st);
    std::vector<Source> sub;
    bool opaque = format::is_opaque(cfd->get());
    std::optional<std::string> redirect;
    if (src.upper) redirect = overlay_xattr(cfd->get(), "", &format::XattrNames::redirect);
    sub.push_back(Source{std::move(cfd).value(), -1, src.upper});
    sub.back().fd = sub.back().owned.get();
    if (redirect) {
      child_lower = redirect_target(*redirect, lower_rel);
      if (child_lower.empty()) fail(child, "unusable overlay redirect '" + *redirect + "'");
      for (auto& s : lower_dirs(child_lower)) sub.push_back(std::move(s));
    } else if (!opaque) {
      // The same name in the sources below, while they are directories.
      for (size_t j = c.src + 1; j < srcs.size(); ++j) {
        struct stat st;
        if (::fstatat(srcs[j].fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
          if (errno == ENOENT) continue;
          fail(child, "stat below", errno);
        }
        if (!S_ISDIR(st.st_mode)) break;  // a file or whiteout hides the rest
        auto lfd = sys::open_at(srcs[j].fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        if (!lfd) fail(child, "open lower directory", lfd.error());
        bool stop = format::is_opaque(lfd->get());
        sub.push_back(Source{std::move(lfd).value(), -1, false});
        sub.back().fd = sub.back().owned.get();
        if (stop) break;
      }
    }
    walk_merged(child, sub, child_lower);
  }
}

void DiffWriter::add_xattrs(void* entry, int parent, const std::string& name) {
  auto* e = static_cast<archive_entry*>(entry);
  std::string path = sys::proc_path(parent, name);
  std::vector<char> buf(4096);
  ssize_t n;
  for (;;) {
    n = ::llistxattr(path.c_str(), buf.data(), buf.size());
    if (n >= 0) break;
    if (errno == ERANGE) {
      buf.resize(buf.size() * 4);
      if (buf.size() > (1u << 22)) fail(name, "xattr list too long");
      continue;
    }
    if (errno == ENOTSUP) return;
    fail(name, "list xattrs", errno);
  }
  std::vector<std::string> names;
  for (ssize_t i = 0; i < n;) {
    std::string x(buf.data() + i);
    i += static_cast<ssize_t>(x.size()) + 1;
    if (!x.empty()) names.push_back(std::move(x));
  }
  std::sort(names.begin(), names.end());
  std::vector<char> val(XATTR_SIZE_MAX);
  for (const auto& x : names) {
    auto out = format::unescape_xattr_name(x);
    if (!out) continue;
    ssize_t len = ::lgetxattr(path.c_str(), x.c_str(), val.data(), val.size());
    if (len < 0) {
      if (errno == ENODATA) continue;
      fail(name, "read xattr '" + x + "'", errno);
    }
    archive_entry_xattr_add_entry(e, out->c_str(), val.data(), static_cast<size_t>(len));
  }
}

void DiffWriter::emit_dir(const std::string& rel, int parent, const std::string& name,
                          const struct stat& st) {
  Entry e(archive_entry_new());
  archive_entry_copy_stat(e.get(), &st);
  archive_entry_copy_pathname(e.get(), (rel + "/").c_str());
  archive_entry_set_size(e.get(), 0);
  archive_entry_set_nlink(e.get(), 1);
  archive_entry_unset_atime(e.get());
  archive_entry_unset_ctime(e.get());
  archive_entry_unset_birthtime(e.get());
  archive_entry_set_mtime(e.get(), clamp(st.st_mtim.tv_sec),
                          clamp(st.st_mtim.tv_sec) == st.st_mtim.tv_sec ? st.st_mtim.tv_nsec : 0);
  add_xattrs(e.get(), parent, name);
  header(e.get(), rel);
}

void DiffWriter::emit_whiteout(const std::string& rel, const struct stat& st) {
  Entry e(archive_entry_new());
  archive_entry_copy_pathname(e.get(), rel.c_str());
  archive_entry_set_filetype(e.get(), AE_IFREG);
  archive_entry_set_perm(e.get(), 0644);
  archive_entry_set_size(e.get(), 0);
  archive_entry_set_mtime(e.get(), clamp(st.st_mtim.tv_sec), 0);
  header(e.get(), rel);
}

void DiffWriter::emit_opaque(const std::string& dir_rel, const struct stat& st) {
  ++stats_.opaque;
  emit_whiteout(join(dir_rel, kOpaqueMarker), st);
}

void DiffWriter::emit_node(const std::string& rel, int parent, const std::string& name,
                           const struct stat& st, bool upper, const std::string& lower_rel) {
  if (S_ISSOCK(st.st_mode)) return;  // a tar cannot hold a socket; the kernel recreates them
  Entry e(archive_entry_new());
  archive_entry_copy_stat(e.get(), &st);
  archive_entry_copy_pathname(e.get(), rel.c_str());
  archive_entry_unset_atime(e.get());
  archive_entry_unset_ctime(e.get());
  archive_entry_unset_birthtime(e.get());
  int64_t m = clamp(st.st_mtim.tv_sec);
  archive_entry_set_mtime(e.get(), m, m == st.st_mtim.tv_sec ? st.st_mtim.tv_nsec : 0);
  if (!S_ISREG(st.st_mode)) {
    archive_entry_set_size(e.get(), 0);
    if (S_ISLNK(st.st_mode)) {
      char target[PATH_MAX];
      ssize_t len = ::readlinkat(parent, name.c_str(), target, sizeof target - 1);
      if (len < 0) fail(rel, "readlink", errno);
      target[len] = '\0';
      archive_entry_copy_symlink(e.get(), target);
    }
    add_xattrs(e.get(), parent, name);
    header(e.get(), rel);
    return;
  }
  if (st.st_nlink > 1) {
    auto key = std::make_pair(st.st_dev, st.st_ino);
    auto it = links_.find(key);
    if (it != links_.end()) {
      archive_entry_copy_hardlink(e.get(), it->second.c_str());
      archive_entry_set_size(e.get(), 0);
      header(e.get(), rel);
      return;
    }
    links_.emplace(key, rel);
  }
  auto fd = sys::open_at(parent, name.c_str(), O_RDONLY | O_NOFOLLOW);
  if (!fd) fail(rel, "open", fd.error());
  UniqueFd lower;
  off_t limit = 0;
  UniqueFd data = std::move(fd).value();
  if (upper) {
    std::string p = sys::proc_path(parent, name);
    std::optional<std::string> marker;
    for (const format::XattrNames* ns : format::kNamespaces)
      if (!marker) marker = detail::get_xattr(p, std::string(ns->layerfs_partial));
    if (marker) {
      // lib/overlay's lazy copy-up, still being filled: the upper's holes
      // below `limit` are the lower file's bytes.
      lower.reset(partial_lower(*marker, &limit));
      if (!lower) fail(rel, "its data is still in a lower layer that cannot be found");
      ++stats_.from_lower;
    } else if (overlay_xattr(parent, name, &format::XattrNames::metacopy)) {
      std::optional<Digest> object;
      if (opt_.objects_dir >= 0) object = store::object_named_by(data.get());
      if (object) {
        // The store's own marker (a stored layer's diff/), or the kernel's
        // copy of it: the data is the content object.
        auto o = store::open_object(opt_.objects_dir, *object);
        if (!o) fail(rel, "content object " + object->str(), o.error());
        data = std::move(o).value();
      } else {
        // The kernel's metacopy: the upper holds metadata only.
        std::string from = lower_rel;
        if (auto r = overlay_xattr(parent, name, &format::XattrNames::redirect)) {
          from = redirect_target(*r, "");
          if (from.empty() || (*r)[0] != '/') fail(rel, "unusable overlay redirect '" + *r + "'");
        }
        struct stat lst;
        UniqueFd l(open_lower_file(from, &lst));
        if (!l) fail(rel, "metacopy file without its lower data ('" + from + "')");
        data = std::move(l);
      }
      ++stats_.from_lower;
    }
  } else if (opt_.objects_dir >= 0) {
    // A lower layer's entry (a redirected directory's content).
    auto d = store::data_of(std::move(data), opt_.objects_dir);
    if (!d) fail(rel, "content object", d.error());
    data = std::move(d).value();
  }
  add_xattrs(e.get(), parent, name);
  header(e.get(), rel);
  write_data(rel, data.get(), st, lower.get(), limit);
  if (upper && rel == lower_rel && !lower &&
      overlay_xattr(parent, name, &format::XattrNames::layerfs_origin))
    note_lower_links(rel);
}

void DiffWriter::write_data(const std::string& rel, int fd, const struct stat& st, int lower_fd,
                            off_t limit) {
  std::vector<char> buf(static_cast<size_t>(std::min<off_t>(st.st_size, kChunk)));
  off_t pos = 0;
  const off_t size = st.st_size;
  auto put = [&](const char* p, size_t n) {
    while (n > 0) {
      la_ssize_t w = archive_write_data(a_.get(), p, n);
      if (w <= 0) fail(rel, "write tar data");
      p += w;
      n -= static_cast<size_t>(w);
    }
  };
  auto copy = [&](int src, off_t from, off_t to) {  // src -1: zeros
    while (from < to) {
      size_t want = static_cast<size_t>(std::min<off_t>(to - from, kChunk));
      size_t got = 0;
      if (src >= 0) {
        while (got < want) {
          ssize_t n = sys::retry_eintr([&] {
            return ::pread(src, buf.data() + got, want - got, from + static_cast<off_t>(got));
          });
          if (n < 0) fail(rel, "read", errno);
          if (n == 0) break;
          got += static_cast<size_t>(n);
        }
        if (got < want && src == fd)
          fail(rel, "file shrank while being committed (pause writers during a commit)");
      }
      std::memset(buf.data() + got, 0, want - got);
      put(buf.data(), want);
      stats_.file_bytes += want;
      from += static_cast<off_t>(want);
      if (opt_.progress && stats_.file_bytes - reported_ >= kProgressStep) {
        reported_ = stats_.file_bytes;
        opt_.progress(stats_.file_bytes);
      }
    }
  };
  if (lower_fd < 0) {
    copy(fd, 0, size);
    return;
  }
  while (pos < size) {
    off_t d = ::lseek(fd, pos, SEEK_DATA);
    if (d < 0) d = size;  // ENXIO: no data from pos on
    d = std::min(d, size);
    if (d > pos) {  // the upper's hole: the lower's bytes below limit, zeros past it
      off_t split = std::clamp(limit, pos, d);
      copy(lower_fd, pos, split);
      copy(-1, split, d);
      pos = d;
      continue;
    }
    off_t h = ::lseek(fd, pos, SEEK_HOLE);
    if (h < 0) h = size;
    h = std::min(h, size);
    copy(fd, pos, h);
    pos = h;
  }
}

}  // namespace layer::commit
