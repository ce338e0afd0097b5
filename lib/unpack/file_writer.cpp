// TreeWriter: regular files. A file is written inline into the layer tree, or
// (store format 2, Options::objects_dir) its content becomes a content object
// and the layer gets a metadata-only entry that redirects to it
// (docs/store-format-2.md).
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "store/layout.hpp"
#include "format/overlay_format.hpp"
#include "unpack/tree_writer.hpp"
#include "unpack/tree_writer_util.hpp"
#include "util/digest.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::unpack {

namespace {

// A layer is published only after a syncfs has put all of it on disk. Left to
// the kernel, writeback would start only at that syncfs (dirty limits are far
// above a layer's size), and the disk would sit idle while the tar is
// decompressed and written. So the writer starts writeback itself, without
// waiting for it, every kWritebackChunk bytes of a large file and for the
// rest of it when it is complete: the disk then works alongside
// decompression and the final syncfs has little left. `flushed` moves to `to`.
constexpr int64_t kWritebackChunk = 8 << 20;

// A shared file up to this size is gathered in memory and hashed before
// anything is written: when its object exists already (the common case for a
// second image of the same files) nothing reaches the disk at all. Larger
// ones stream to a temporary file in the object staging dir.
constexpr int64_t kBufferMax = 1 << 20;

void start_writeback(int fd, int64_t& flushed, int64_t to) {
  // Only a hint: an error here (ESPIPE, EINVAL on odd file systems) changes
  // nothing, the syncfs before publishing still reports real write errors.
  (void)::sync_file_range(fd, flushed, to - flushed, SYNC_FILE_RANGE_WRITE);
  flushed = to;
}

// Feeds n zero bytes (a hole of a sparse file) to `h`.
void hash_zeros(Hasher& h, uint64_t n) {
  static const char kZeros[64 << 10] = {};
  while (n > 0) {
    size_t k = static_cast<size_t>(std::min<uint64_t>(n, sizeof kZeros));
    h.update(kZeros, k);
    n -= k;
  }
}

}  // namespace

UniqueFd TreeWriter::create_file(const std::string& path, const std::string& parent,
                                 const std::string& base, mode_t create_mode) {
  const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW;
  // Fast path: one openat2 resolves the parent beneath the root without
  // symlinks and creates the file in it. Anything unusual (a missing parent,
  // an existing name, a symlink on the way) takes the slow path, which
  // resolves the parent afresh and reports precisely.
  auto r = sys::open_beneath(root_, path.c_str(), flags, create_mode, RESOLVE_NO_SYMLINKS);
  if (r) return std::move(r).value();
  Dir p = open_parent(parent, true);
  for (int attempt = 0;; ++attempt) {
    auto c = sys::open_at(p.fd, base.c_str(), flags, create_mode);
    if (c) return std::move(c).value();
    if (c.error() != EEXIST || attempt > 0) fail_errno("create", c.error());
    make_room(p.fd, base, S_IFREG);
  }
}

// Whether object d is in the store already (published by an earlier pull).
bool TreeWriter::object_present(const Digest& d) const {
  struct stat st;
  std::string rel = store::Layout::object_redirect(d).substr(1);
  return ::fstatat(opt_.objects_dir, rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

// Stages object d from `data` (in memory) or from the temporary file `temp`
// in the staging dir, unless it is present already; then the temporary goes.
void TreeWriter::stage_object(const Digest& d, std::string_view data, const std::string& temp,
                              int temp_fd, uint64_t size) {
  // Staged by this layer already (objects_ is what its staging dir holds),
  // or in the store.
  const bool staged = !objects_.insert(d).second;
  object_bytes_ += size;
  if (staged || object_present(d)) {
    if (!temp.empty() && ::unlinkat(opt_.object_staging, temp.c_str(), 0) < 0)
      fail_errno("remove temporary object", errno);
    return;
  }
  new_object_bytes_ += size;
  if (temp.empty()) {
    auto fd = sys::open_at(opt_.object_staging, d.hex.c_str(),
                           O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0444);
    if (!fd) fail_errno("create object " + d.str(), fd.error());
    if (auto w = sys::write_all(fd->get(), data.data(), data.size()); !w)
      fail_errno("write object " + d.str(), w.error());
    // Created 0444 unless the umask takes bits from that. No writeback hint:
    // like a small inline file, it goes to disk with the rest of the layer
    // at the syncfs before publishing.
    if ((umask_ & 0444) != 0 && ::fchmod(fd->get(), 0444) < 0) fail_errno("chmod object", errno);
    return;
  }
  if (::fchmod(temp_fd, 0444) < 0) fail_errno("chmod object", errno);
  if (::renameat(opt_.object_staging, temp.c_str(), opt_.object_staging, d.hex.c_str()) < 0)
    fail_errno("stage object " + d.str(), errno);
}

void TreeWriter::apply_file(archive* a, archive_entry* e, const std::string& path,
                            const std::string& parent, const std::string& base) {
  int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : -1;
  if (size > 0 && static_cast<uint64_t>(size) > opt_.limits.max_bytes)
    fail("file size " + std::to_string(size) + " exceeds the limit");
  const mode_t perm = archive_entry_perm(e) & 07777;
  // Created with its final permission bits where the umask (and no default
  // ACL) lets them through unchanged; set-id and sticky bits always need the
  // fchmod below, after the fchown that would clear them.
  const mode_t create_mode = perm & 0777;
  bool need_chmod = mode_unknown_ || (perm & 07000) != 0 || (create_mode & umask_) != 0;
  const uid_t uid = static_cast<uid_t>(archive_entry_uid(e));
  const gid_t gid = static_cast<gid_t>(archive_entry_gid(e));
  // Where the data goes: the entry itself, a memory buffer or a temporary
  // file that may become a content object.
  const bool shared = opt_.objects_dir >= 0 && size > static_cast<int64_t>(opt_.inline_max);
  const bool in_memory = shared && size <= kBufferMax;
  std::string buffer;
  std::string temp;
  UniqueFd fd;
  if (in_memory) {
    buffer.assign(static_cast<size_t>(size), '\0');
  } else if (shared) {
    temp = "t" + std::to_string(temp_seq_++);
    auto t = sys::open_at(opt_.object_staging, temp.c_str(),
                          O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
    if (!t) fail_errno("create temporary object", t.error());
    fd = std::move(t).value();
  } else {
    fd = create_file(path, parent, base, create_mode);
  }
  int64_t pos = 0;
  int64_t flushed = 0;  // bytes before this offset are already on their way to disk
  std::optional<Hasher> hash;
  if ((opt_.record_digests || shared) && !in_memory) hash.emplace("sha256");
  for (;;) {
    const void* buf;
    size_t n;
    la_int64_t off;
    int r = archive_read_data_block(a, &buf, &n, &off);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK) {
      const char* msg = archive_error_string(a);
      fail(std::string("reading data: ") + (msg ? msg : "tar error"));
    }
    if (in_memory) {
      if (off < 0 || off > size || n > static_cast<uint64_t>(size - off))
        fail("data beyond the file's size");
      std::memcpy(buffer.data() + off, buf, n);
      pos = off + static_cast<int64_t>(n);
      file_bytes_ += n;
      continue;
    }
    if (off != pos) {
      // A hole in a sparse file: skip it, the file system keeps it unallocated.
      if (off < 0 || ::lseek(fd.get(), off, SEEK_SET) < 0)
        fail_errno("seek", errno ? errno : EINVAL);
      if (hash && off > pos) hash_zeros(*hash, static_cast<uint64_t>(off - pos));
      if (off < pos) hash.reset();  // rewrites earlier bytes: not a stream any more
      pos = off;
    }
    if (auto w = sys::write_all(fd.get(), buf, n); !w) fail_errno("write", w.error());
    if (hash) hash->update(buf, n);
    pos += static_cast<int64_t>(n);
    file_bytes_ += n;
    if (opt_.sync && pos - flushed >= kWritebackChunk) start_writeback(fd.get(), flushed, pos);
  }
  std::optional<Digest> digest;
  if (in_memory) {
    digest = Hasher::of(buffer);
  } else {
    if (opt_.sync && flushed > 0 && pos > flushed) start_writeback(fd.get(), flushed, pos);
    if (size >= 0 && pos != size) {
      if (::ftruncate(fd.get(), size) < 0) fail_errno("truncate", errno);
      if (hash && size > pos) hash_zeros(*hash, static_cast<uint64_t>(size - pos));
    }
    // A file whose bytes did not arrive as one stream (truncated below the
    // data, rewound) gets no digest: the file list reads it instead, and it
    // stays inline.
    if (hash && !(size >= 0 && size < pos)) digest = hash->finish();
  }
  bool new_inode = true;  // owner and group as create_file leaves them
  if (shared && digest) {
    stage_object(*digest, buffer, temp, fd.get(), static_cast<uint64_t>(size));
    // The entry: a sparse file of the right size whose data is the object.
    fd = create_file(path, parent, base, create_mode);
    if (::ftruncate(fd.get(), size) < 0) fail_errno("truncate", errno);
    const format::XattrNames& m = format::names(opt_.rootless ? format::XattrNamespace::kUser : format::XattrNamespace::kTrusted);
    std::string redirect = store::Layout::object_redirect(*digest);
    if (::fsetxattr(fd.get(), m.metacopy.data(), "", 0, 0) < 0) fail_errno("mark metacopy", errno);
    if (::fsetxattr(fd.get(), m.redirect.data(), redirect.data(), redirect.size(), 0) < 0)
      fail_errno("mark redirect", errno);
  } else if (shared) {
    // Not hashable as a stream: the temporary becomes the inline entry.
    Dir p = open_parent(parent, true);
    for (int attempt = 0;; ++attempt) {
      if (::renameat2(opt_.object_staging, temp.c_str(), p.fd, base.c_str(), RENAME_NOREPLACE) ==
          0)
        break;
      if (errno != EEXIST || attempt > 0) fail_errno("place file", errno);
      make_room(p.fd, base, S_IFREG);
    }
    new_inode = false;
    need_chmod = true;
  }
  if (opt_.record_digests) {
    if (digest)
      digests_[path] = *digest;
    else
      digests_.erase(path);
  }
  // A new file is owned by our euid and, with no setgid directory in the tree
  // and its parent in our egid, by our egid (under grpid mounts too). Decided
  // after the create: open_parent may have made directories.
  const bool need_chown =
      chown_ && (!new_inode || uid != euid_ || gid != egid_ || group_unknown_ ||
                 foreign_group_.count(parent) != 0);
  if (need_chown && ::fchown(fd.get(), uid, gid) < 0) fail_errno("chown", errno);
  if (need_chmod && ::fchmod(fd.get(), perm) < 0) fail_errno("chmod", errno);
  set_xattrs_fd(fd.get(), e);
  DirMeta m = dir_meta(e);
  if (m.has_times && ::futimens(fd.get(), m.times) < 0) fail_errno("set times", errno);
}

}  // namespace layer::unpack
