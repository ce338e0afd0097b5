// Test helpers for lib/lazy: a blob in memory as a RangeReader (counting the
// bytes it hands out), gzip/gunzip of whole strings with zlib, eStargz blobs
// with a hand-written TOC for the hostile-input tables, a sample layer tar,
// and decoding of one entry from its own byte range.
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <zlib.h>

#include <catch2/catch.hpp>
#include <map>

#include <stdexcept>
#include <string>

#include "../unpack/tar_builder.hpp"
#include "lazy/frame_decoder.hpp"
#include "lazy/toc_reader.hpp"

namespace layer::testing {

class MemReader : public lazy::RangeReader {
 public:
  explicit MemReader(std::string blob) : blob_(std::move(blob)) {}
  std::string read(uint64_t offset, uint64_t length) override {
    if (offset > blob_.size() || length > blob_.size() - offset)
      throw Error("range beyond the blob");
    served += length;
    return blob_.substr(offset, length);
  }
  std::string blob_;
  uint64_t served = 0;
};

// One gzip member holding `data`.
inline std::string gzip_member(const std::string& data) {
  z_stream z{};
  if (deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("deflateInit2");
  std::string out(deflateBound(&z, data.size()) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) throw std::runtime_error("deflate");
  out.resize(out.size() - z.avail_out);
  deflateEnd(&z);
  return out;
}

// Every member of a multi-member gzip stream, concatenated, as gunzip does.
inline std::string gunzip_all(const std::string& in) {
  z_stream z{};
  inflateInit2(&z, 16 + MAX_WBITS);
  std::string out;
  char buf[1 << 16];
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  for (;;) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    int rc = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof buf - z.avail_out);
    if (rc == Z_STREAM_END) {
      if (z.avail_in == 0) break;
      inflateReset(&z);
      continue;
    }
    if (rc != Z_OK) {
      inflateEnd(&z);
      throw std::runtime_error("gunzip failed");
    }
  }
  inflateEnd(&z);
  return out;
}

// An eStargz blob whose payload is `payload_tar` (one member) and whose TOC
// is `json` as given, with the descriptor that names it.
struct HandBlob {
  std::string bytes;
  oci::Descriptor desc;
};
inline HandBlob estargz_with_toc(const std::string& payload_tar, const std::string& json) {
  HandBlob b;
  b.bytes = gzip_member(payload_tar);
  uint64_t toc_offset = b.bytes.size();
  b.bytes += gzip_member(TarBuilder().file("stargz.index.json", json).finish());
  b.bytes += lazy::estargz_footer(toc_offset);
  b.desc.media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
  b.desc.digest = Hasher::of(b.bytes);
  b.desc.size = static_cast<int64_t>(b.bytes.size());
  b.desc.annotations[lazy::kEstargzTocDigest] = Hasher::of(json).str();
  return b;
}

inline std::string pattern(size_t n, unsigned seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (auto& c : s) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

inline std::string decode(const lazy::Toc& toc, size_t i, lazy::RangeReader& r) {
  auto [lo, hi] = toc.blob_range(i);
  std::string bytes = r.read(lo, hi - lo);
  std::string out;
  lazy::decode_entry(toc, i, bytes, lo, [&](const char* p, size_t n) { out.append(p, n); });
  return out;
}

// name -> content of each regular file, as libarchive reads the stream.
inline std::map<std::string, std::string> read_tar(const std::string& bytes) {
  std::map<std::string, std::string> out;
  struct archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_tar(a);
  REQUIRE(archive_read_open_memory(a, bytes.data(), bytes.size()) == ARCHIVE_OK);
  archive_entry* e;
  while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
    std::string data;
    char buf[8192];
    la_ssize_t n;
    while ((n = archive_read_data(a, buf, sizeof buf)) > 0) data.append(buf, n);
    out[archive_entry_pathname(e)] = data;
  }
  archive_read_free(a);
  return out;
}

inline std::string sample_tar() {
  EntryOpts x;
  x.xattrs = {{"user.note", std::string("v\0al", 4)}, {"security.capability", "\x01\x02"}};
  x.uid = 1000;
  x.gid = 50;
  x.mode = 04755;
  return TarBuilder()
      .dir("./")
      .dir("usr/")
      .dir("usr/lib")
      .file("usr/lib/small.txt", "hello\n")
      .file("usr/lib/empty", "")
      .file("usr/lib/big.bin", pattern(300000, 1), x)
      .file("usr/lib/exact", pattern(65536, 2))
      .symlink("usr/lib/link", "big.bin")
      .hardlink("usr/lib/hard", "usr/lib/small.txt")
      .fifo("usr/fifo")
      .device("usr/null", true, 1, 3)
      .file("usr/lib/.wh.gone", "")
      .finish();
}

}  // namespace layer::testing
