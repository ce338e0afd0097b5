#include "commit/blob_writer.hpp"

#include <archive.h>
#include <archive_entry.h>

#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::commit {

oci::Compression parse_compression(std::string_view name) {
  if (name == "gzip") return oci::Compression::Gzip;
  if (name == "zstd") return oci::Compression::Zstd;
  if (name == "none") return oci::Compression::None;
  throw Error("unknown compression '" + std::string(name) + "' (gzip, zstd or none)");
}

std::string_view layer_media_type(oci::Compression c) {
  switch (c) {
    case oci::Compression::Gzip:
      return oci::kOciLayerGzip;
    case oci::Compression::Zstd:
      return oci::kOciLayerZstd;
    case oci::Compression::None:
      break;
  }
  return oci::kOciLayer;
}

void BlobWriter::ArchiveFree::operator()(archive* a) const {
  archive_write_free(a);
}

void BlobWriter::fail(const std::string& what) const {
  if (write_errno_) throw Error(what_ + ": write", write_errno_);
  const char* msg = archive_error_string(a_.get());
  throw Error(what_ + ": " + what + ": " + (msg ? msg : "libarchive error"));
}

BlobWriter::BlobWriter(int fd, oci::Compression c, int level, std::string what)
    : fd_(fd), what_(std::move(what)), a_(archive_write_new()) {
  archive* a = a_.get();
  if (!a) throw Error(what_ + ": archive_write_new failed");
  // The "raw" format takes the tar stream as the data of one entry; the
  // filter compresses it.
  if (archive_write_set_format_raw(a) != ARCHIVE_OK) fail("raw format");
  int r = ARCHIVE_OK;
  switch (c) {
    case oci::Compression::Gzip:
      r = archive_write_add_filter_gzip(a);
      // No name or time in the gzip header: the same tar gives the same blob.
      if (r == ARCHIVE_OK) archive_write_set_filter_option(a, "gzip", "timestamp", nullptr);
      break;
    case oci::Compression::Zstd:
      r = archive_write_add_filter_zstd(a);
      break;
    case oci::Compression::None:
      r = archive_write_add_filter_none(a);
      break;
  }
  if (r != ARCHIVE_OK) fail("compressor");
  if (level >= 0 && c != oci::Compression::None) {
    std::string lv = std::to_string(level);
    if (archive_write_set_filter_option(a, nullptr, "compression-level", lv.c_str()) != ARCHIVE_OK)
      fail("compression level " + lv);
  }
  if (archive_write_set_bytes_per_block(a, 0) != ARCHIVE_OK) fail("block size");
  if (archive_write_open2(a, this, nullptr, &BlobWriter::on_write, nullptr, nullptr) != ARCHIVE_OK)
    fail("open compressor");
  std::unique_ptr<archive_entry, void (*)(archive_entry*)> e(archive_entry_new(),
                                                             &archive_entry_free);
  archive_entry_set_pathname(e.get(), "layer.tar");
  archive_entry_set_filetype(e.get(), AE_IFREG);
  archive_entry_set_perm(e.get(), 0644);
  if (archive_write_header(a, e.get()) != ARCHIVE_OK) fail("raw header");
}

BlobWriter::~BlobWriter() = default;

long BlobWriter::on_write(archive*, void* self, const void* buf, size_t n) {
  auto* w = static_cast<BlobWriter*>(self);
  if (auto r = sys::write_all(w->fd_, buf, n); !r) {
    w->write_errno_ = r.error();
    return -1;
  }
  w->blob_hash_.update(buf, n);
  w->size_ += n;
  return static_cast<long>(n);
}

void BlobWriter::write(const void* data, size_t n) {
  tar_hash_.update(data, n);
  tar_bytes_ += n;
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    la_ssize_t w = archive_write_data(a_.get(), p, n);
    if (w <= 0) fail("compress");
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void BlobWriter::finish() {
  if (finished_) return;
  finished_ = true;
  if (archive_write_close(a_.get()) != ARCHIVE_OK) fail("finish compressor");
  diff_id_ = tar_hash_.finish();
  digest_ = blob_hash_.finish();
}

}  // namespace layer::commit
