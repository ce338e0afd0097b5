#include "lazy/tar_converter.hpp"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include <openssl/evp.h>
#include <time.h>

#include "unpack/tree_writer.hpp"
#include "util/error.hpp"

namespace layer::lazy {

namespace {

// The input tar as libarchive reads it, keeping every byte it hands over in
// `spool` until it has been copied out.
class TarFeed {
 public:
  explicit TarFeed(ByteSource& src) : src_(src), buf_(256 << 10, '\0') {}

  static la_ssize_t read_cb(archive*, void* self, const void** out) {
    auto* f = static_cast<TarFeed*>(self);
    size_t n = f->src_.read(f->buf_.data(), f->buf_.size());
    f->spool_.append(f->buf_.data(), n);
    *out = f->buf_.data();
    return static_cast<la_ssize_t>(n);
  }
  // Copies input bytes [emitted, upto) out.
  void emit(FrameSink& out, uint64_t upto) {
    if (upto < emitted_ || upto > base_ + spool_.size())
      throw Error("tar position " + std::to_string(upto) + " outside the bytes read");
    out.write(spool_.data() + (emitted_ - base_), upto - emitted_);
    emitted_ = upto;
    if (emitted_ - base_ >= (1u << 20)) {
      spool_.erase(0, emitted_ - base_);
      base_ = emitted_;
    }
  }
  // True if `data` is the input's next bytes (regular data is stored as is).
  bool next_is(const char* data, size_t n) const {
    return emitted_ >= base_ && emitted_ + n <= base_ + spool_.size() &&
           std::memcmp(spool_.data() + (emitted_ - base_), data, n) == 0;
  }
  uint64_t emitted() const { return emitted_; }
  uint64_t read_end() const { return base_ + spool_.size(); }

 private:
  ByteSource& src_;
  std::string buf_;
  std::string spool_;  // input bytes [base_, base_ + spool_.size())
  uint64_t base_ = 0;
  uint64_t emitted_ = 0;
};

struct ArchiveFree {
  void operator()(archive* a) const { archive_read_free(a); }
};

using ojson = nlohmann::ordered_json;

std::string base64(std::string_view v) {
  std::string out(4 * ((v.size() + 2) / 3) + 1, '\0');
  int n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(v.data()), static_cast<int>(v.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

// RFC 3339 in UTC; with `nanos`, Go's RFC3339Nano (fraction without
// trailing zeros), as containers/storage writes time.Time.
std::string rfc3339(time_t t, long nsec, bool nanos) {
  struct tm tm;
  gmtime_r(&t, &tm);
  char s[64];
  strftime(s, sizeof s, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out = s;
  if (nanos && nsec > 0) {
    char f[32];
    std::snprintf(f, sizeof f, ".%09ld", nsec);
    std::string frac = f;
    while (frac.back() == '0') frac.pop_back();
    out += frac;
  }
  return out + "Z";
}

}  // namespace

nlohmann::ordered_json toc_entry_json(archive_entry* e, bool nanos) {
  ojson j;
  j["name"] = archive_entry_pathname(e) ? archive_entry_pathname(e) : "";
  const char* hardlink = archive_entry_hardlink(e);
  mode_t type = archive_entry_filetype(e);
  const char* t = hardlink           ? "hardlink"
                  : type == AE_IFREG ? "reg"
                  : type == AE_IFDIR ? "dir"
                  : type == AE_IFLNK ? "symlink"
                  : type == AE_IFCHR ? "char"
                  : type == AE_IFBLK ? "block"
                  : type == AE_IFIFO ? "fifo"
                                     : nullptr;
  if (!t) throw Error("tar entry '" + j["name"].get<std::string>() + "': unsupported entry type");
  j["type"] = t;
  if (!hardlink && type == AE_IFREG && archive_entry_size(e) > 0) j["size"] = archive_entry_size(e);
  if (nanos || archive_entry_mtime(e) != 0)
    j["modtime"] = rfc3339(archive_entry_mtime(e), archive_entry_mtime_nsec(e), nanos);
  if (hardlink) j["linkName"] = hardlink;
  if (type == AE_IFLNK && archive_entry_symlink(e)) j["linkName"] = archive_entry_symlink(e);
  if (unsigned mode = archive_entry_mode(e) & 07777) j["mode"] = mode;
  if (archive_entry_uid(e)) j["uid"] = archive_entry_uid(e);
  if (archive_entry_gid(e)) j["gid"] = archive_entry_gid(e);
  if (const char* u = archive_entry_uname(e); u && *u) j["userName"] = u;
  if (const char* g = archive_entry_gname(e); g && *g) j["groupName"] = g;
  if (type == AE_IFCHR || type == AE_IFBLK) {
    j["devMajor"] = archive_entry_rdevmajor(e);
    j["devMinor"] = archive_entry_rdevminor(e);
  }
  if (archive_entry_xattr_reset(e) > 0) {
    ojson x = ojson::object();
    const char* name;
    const void* value;
    size_t size;
    while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK)
      x[name] = base64(std::string_view(static_cast<const char*>(value), size));
    j["xattrs"] = x;
  }
  return j;
}

ConvertStats convert_tar(ByteSource& tar, FrameSink& out, uint64_t chunk_size,
                         bool end_after_content, const std::string& reserved,
                         const EntryFn& on_entry) {
  if (chunk_size == 0) throw Error("chunk size 0");
  TarFeed feed(tar);
  std::unique_ptr<archive, ArchiveFree> a(archive_read_new());
  archive_read_support_format_tar(a.get());
  if (archive_read_open(a.get(), &feed, nullptr, TarFeed::read_cb, nullptr) != ARCHIVE_OK)
    throw Error(std::string("reading the tar: ") + archive_error_string(a.get()));
  std::string data(256 << 10, '\0');
  ConvertStats stats;
  std::vector<ChunkOut> chunks;
  for (;;) {
    archive_entry* e = nullptr;
    int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN)
      throw Error(std::string("reading the tar: ") + archive_error_string(a.get()));
    std::string name = archive_entry_pathname(e) ? archive_entry_pathname(e) : "";
    std::string ctx = "tar entry '" + name + "'";
    if (std::string clean, why;
        !reserved.empty() && unpack::normalize_entry_path(name, clean, why) && clean == reserved)
      throw Error(ctx + ": the tar was converted before (it holds " + reserved + ")");
    // The header (and the previous entry's padding) goes into the current frame.
    feed.emit(out, static_cast<uint64_t>(archive_filter_bytes(a.get(), 0)));
    ++stats.entries;
    int64_t size = archive_entry_size(e);
    bool content = !archive_entry_hardlink(e) && archive_entry_filetype(e) == AE_IFREG && size > 0;
    if (!content) {
      on_entry(e, {}, nullptr);
      continue;
    }
    if (archive_entry_sparse_count(e) > 0) throw Error(ctx + ": sparse files are not supported");
    Hasher file;
    chunks.clear();
    for (uint64_t done = 0; done < static_cast<uint64_t>(size);) {
      out.end_frame();
      if (!chunks.empty()) chunks.back().end = out.offset();
      ChunkOut c;
      c.offset = out.offset();
      c.file_offset = done;
      c.size = std::min<uint64_t>(chunk_size, static_cast<uint64_t>(size) - done);
      Hasher chunk;
      for (uint64_t left = c.size; left > 0;) {
        la_ssize_t k = archive_read_data(
            a.get(), data.data(), static_cast<size_t>(std::min<uint64_t>(left, data.size())));
        if (k < 0) throw Error(ctx + ": " + archive_error_string(a.get()));
        if (k == 0) throw Error(ctx + ": the tar ends inside the file");
        if (!feed.next_is(data.data(), static_cast<size_t>(k)))
          throw Error(ctx + ": the tar's data bytes are not the file's content");
        file.update(data.data(), static_cast<size_t>(k));
        chunk.update(data.data(), static_cast<size_t>(k));
        feed.emit(out, feed.emitted() + static_cast<uint64_t>(k));
        left -= static_cast<uint64_t>(k);
      }
      c.digest = chunk.finish();
      done += c.size;
      chunks.push_back(std::move(c));
    }
    if (end_after_content) {
      out.end_frame();
      chunks.back().end = out.offset();
    }
    Digest d = file.finish();
    on_entry(e, chunks, &d);
  }
  // The tar's end-of-archive and anything after it, as they are.
  feed.emit(out, feed.read_end());
  stats.tar_bytes = feed.emitted();
  for (;;) {
    size_t n = tar.read(data.data(), data.size());
    if (n == 0) break;
    out.write(data.data(), n);
    stats.tar_bytes += n;
  }
  out.end_frame();
  return stats;
}

}  // namespace layer::lazy
