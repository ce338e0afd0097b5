// Test helpers: TarBuilder writes tar layers in memory with libarchive's
// writer (pax format, optional gzip/zstd filter), StringSource serves bytes
// as a ByteSource, TempDir is a scratch directory removed at scope end.
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "unpack/unpacker.hpp"
#include "util/byte_source.hpp"
#include "util/digest.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::testing {

enum class Filter { None, Gzip, Zstd };

inline const char* media_type(Filter f) {
  switch (f) {
    case Filter::None:
      return "application/vnd.oci.image.layer.v1.tar";
    case Filter::Gzip:
      return "application/vnd.oci.image.layer.v1.tar+gzip";
    case Filter::Zstd:
      return "application/vnd.oci.image.layer.v1.tar+zstd";
  }
  return "";
}

struct EntryOpts {
  unsigned mode = 0644;
  long uid = 0;
  long gid = 0;
  time_t mtime = 1600000000;
  long mtime_nsec = 0;
  std::vector<std::pair<std::string, std::string>> xattrs;
};

class TarBuilder {
 public:
  explicit TarBuilder(int format = ARCHIVE_FORMAT_TAR_PAX_RESTRICTED) : a_(archive_write_new()) {
    archive_write_set_format(a_.get(), format);
    archive_write_set_bytes_in_last_block(a_.get(), 1);
    if (archive_write_open(a_.get(), this, nullptr, write_cb, nullptr) != ARCHIVE_OK)
      throw std::runtime_error("archive_write_open");
  }

  TarBuilder& file(const std::string& name, const std::string& data, EntryOpts o = {}) {
    auto e = entry(name, AE_IFREG, o);
    archive_entry_set_size(e.get(), static_cast<la_int64_t>(data.size()));
    header(e.get());
    if (!data.empty() && archive_write_data(a_.get(), data.data(), data.size()) < 0)
      throw std::runtime_error(archive_error_string(a_.get()));
    return *this;
  }
  TarBuilder& dir(const std::string& name, EntryOpts o = {}) {
    if (o.mode == 0644) o.mode = 0755;
    auto e = entry(name, AE_IFDIR, o);
    header(e.get());
    return *this;
  }
  TarBuilder& symlink(const std::string& name, const std::string& target, EntryOpts o = {}) {
    if (o.mode == 0644) o.mode = 0777;
    auto e = entry(name, AE_IFLNK, o);
    archive_entry_set_symlink(e.get(), target.c_str());
    header(e.get());
    return *this;
  }
  TarBuilder& hardlink(const std::string& name, const std::string& target, EntryOpts o = {}) {
    auto e = entry(name, AE_IFREG, o);
    archive_entry_set_hardlink(e.get(), target.c_str());
    archive_entry_set_size(e.get(), 0);
    header(e.get());
    return *this;
  }
  TarBuilder& device(const std::string& name, bool chr, uint64_t maj, uint64_t min,
                     EntryOpts o = {}) {
    auto e = entry(name, chr ? AE_IFCHR : AE_IFBLK, o);
    archive_entry_set_rdevmajor(e.get(), maj);
    archive_entry_set_rdevminor(e.get(), min);
    header(e.get());
    return *this;
  }
  TarBuilder& fifo(const std::string& name, EntryOpts o = {}) {
    auto e = entry(name, AE_IFIFO, o);
    header(e.get());
    return *this;
  }
  // A sparse file: `size` bytes, data only at the given (offset, bytes).
  TarBuilder& sparse(const std::string& name, int64_t size,
                     const std::vector<std::pair<int64_t, std::string>>& chunks, EntryOpts o = {}) {
    auto e = entry(name, AE_IFREG, o);
    archive_entry_set_size(e.get(), size);
    for (const auto& [off, data] : chunks)
      archive_entry_sparse_add_entry(e.get(), off, static_cast<la_int64_t>(data.size()));
    header(e.get());
    int64_t pos = 0;
    std::string zeros;
    for (const auto& [off, data] : chunks) {
      // libarchive's writer takes the logical stream and skips the holes.
      zeros.assign(static_cast<size_t>(off - pos), '\0');
      if (!zeros.empty()) archive_write_data(a_.get(), zeros.data(), zeros.size());
      archive_write_data(a_.get(), data.data(), data.size());
      pos = off + static_cast<int64_t>(data.size());
    }
    zeros.assign(static_cast<size_t>(size - pos), '\0');
    if (!zeros.empty()) archive_write_data(a_.get(), zeros.data(), zeros.size());
    return *this;
  }
  // Any entry, for odd cases.
  TarBuilder& raw(archive_entry* e, const std::string& data = {}) {
    header(e);
    if (!data.empty()) archive_write_data(a_.get(), data.data(), data.size());
    return *this;
  }

  // The tar bytes (closes the archive).
  std::string finish() {
    if (a_) {
      archive_write_close(a_.get());
      a_.reset();
    }
    return out_;
  }

  struct EntryFree {
    void operator()(archive_entry* e) const { archive_entry_free(e); }
  };
  using EntryPtr = std::unique_ptr<archive_entry, EntryFree>;

  static EntryPtr entry(const std::string& name, mode_t type, const EntryOpts& o) {
    EntryPtr e(archive_entry_new());
    archive_entry_set_pathname(e.get(), name.c_str());
    archive_entry_set_filetype(e.get(), type);
    archive_entry_set_perm(e.get(), o.mode);
    archive_entry_set_uid(e.get(), o.uid);
    archive_entry_set_gid(e.get(), o.gid);
    archive_entry_set_mtime(e.get(), o.mtime, o.mtime_nsec);
    for (const auto& [k, v] : o.xattrs)
      archive_entry_xattr_add_entry(e.get(), k.c_str(), v.data(), v.size());
    return e;
  }

 private:
  struct ArchiveFree {
    void operator()(archive* a) const { archive_write_free(a); }
  };
  void header(archive_entry* e) {
    if (archive_write_header(a_.get(), e) != ARCHIVE_OK)
      throw std::runtime_error(std::string("archive_write_header: ") +
                               archive_error_string(a_.get()));
  }
  static la_ssize_t write_cb(archive*, void* self, const void* buf, size_t n) {
    static_cast<TarBuilder*>(self)->out_.append(static_cast<const char*>(buf), n);
    return static_cast<la_ssize_t>(n);
  }
  std::unique_ptr<archive, ArchiveFree> a_;
  std::string out_;
};

// Compresses `data` with libarchive's raw writer and a filter.
inline std::string compress(const std::string& data, Filter f) {
  if (f == Filter::None) return data;
  struct Free {
    void operator()(archive* a) const { archive_write_free(a); }
  };
  std::unique_ptr<archive, Free> a(archive_write_new());
  archive_write_set_format_raw(a.get());
  if (f == Filter::Gzip)
    archive_write_add_filter_gzip(a.get());
  else
    archive_write_add_filter_zstd(a.get());
  archive_write_set_bytes_in_last_block(a.get(), 1);
  std::string out;
  auto cb = [](archive*, void* self, const void* buf, size_t n) -> la_ssize_t {
    static_cast<std::string*>(self)->append(static_cast<const char*>(buf), n);
    return static_cast<la_ssize_t>(n);
  };
  if (archive_write_open(a.get(), &out, nullptr, cb, nullptr) != ARCHIVE_OK)
    throw std::runtime_error(archive_error_string(a.get()));
  struct EntryFree {
    void operator()(archive_entry* e) const { archive_entry_free(e); }
  };
  std::unique_ptr<archive_entry, EntryFree> e(archive_entry_new());
  archive_entry_set_pathname(e.get(), "data");
  archive_entry_set_filetype(e.get(), AE_IFREG);
  archive_entry_set_size(e.get(), static_cast<la_int64_t>(data.size()));
  archive_write_header(a.get(), e.get());
  archive_write_data(a.get(), data.data(), data.size());
  archive_write_close(a.get());
  return out;
}

// A layer blob with its descriptor fields filled in.
struct Blob {
  std::string bytes;
  unpack::LayerSpec spec;
};

inline Blob make_blob(const std::string& tar, Filter f, const std::string& image = "test-image") {
  Blob b;
  b.bytes = compress(tar, f);
  b.spec.media_type = media_type(f);
  b.spec.digest = Hasher::of(b.bytes);
  b.spec.size = static_cast<int64_t>(b.bytes.size());
  b.spec.diff_id = Hasher::of(tar);
  b.spec.image = image;
  return b;
}

class StringSource : public ByteSource {
 public:
  explicit StringSource(std::string data, size_t chunk = 1 << 20)
      : data_(std::move(data)), chunk_(chunk) {}
  size_t read(void* buf, size_t n) override {
    n = std::min({n, chunk_, data_.size() - pos_});
    std::memcpy(buf, data_.data() + pos_, n);
    pos_ += n;
    return n;
  }
  size_t consumed() const { return pos_; }

 private:
  std::string data_;
  size_t chunk_;
  size_t pos_ = 0;
};

// n bytes of a fixed pseudo-random sequence (a linear congruential
// generator from `seed`): incompressible test content, the same every run.
inline std::string pseudo_random(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) {
    seed = seed * 1664525 + 1013904223;
    s[i] = static_cast<char>(seed >> 24);
  }
  return s;
}

struct TempDir {
  std::string path;
  UniqueFd fd;
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string t = std::string(base && *base ? base : "/tmp") + "/layerfs-test-XXXXXX";
    std::vector<char> buf(t.begin(), t.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp");
    path = buf.data();
    fd = sys::xopen_dir(path);
  }
  ~TempDir() {
    fd.reset();
    auto slash = path.rfind('/');
    auto parent = sys::xopen_dir(path.substr(0, slash));
    // Directories made read-only by a test must stay removable.
    std::string cmd = "chmod -R u+rwx '" + path + "' 2>/dev/null";
    if (std::system(cmd.c_str()) != 0) {
    }
    try {
      sys::xremove_tree(parent.get(), path.substr(slash + 1));
    } catch (...) {
    }
  }
  std::string operator/(const std::string& rel) const { return path + "/" + rel; }
};

}  // namespace layer::testing
