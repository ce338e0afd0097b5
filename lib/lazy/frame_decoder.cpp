#include "lazy/frame_decoder.hpp"

#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <memory>

#include "util/error.hpp"

namespace layer::lazy {

namespace {

constexpr size_t kOutBuf = 256 << 10;

// Hands decoded bytes on, dropping the first `skip` and stopping at `want`.
class Window {
 public:
  Window(uint64_t skip, uint64_t want, const Sink& sink) : skip_(skip), left_(want), sink_(sink) {}
  void put(const char* p, size_t n) {
    if (skip_ > 0) {
      size_t k = static_cast<size_t>(std::min<uint64_t>(skip_, n));
      skip_ -= k;
      p += k;
      n -= k;
    }
    n = static_cast<size_t>(std::min<uint64_t>(left_, n));
    if (n > 0) sink_(p, n);
    left_ -= n;
  }
  bool done() const { return left_ == 0; }
  uint64_t left() const { return left_; }

 private:
  uint64_t skip_;
  uint64_t left_;
  const Sink& sink_;
};

struct InflateEnd {
  void operator()(z_stream* z) const {
    inflateEnd(z);
    delete z;
  }
};
struct DCtxFree {
  void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
};

[[noreturn]] void ended_early(const std::string& what, uint64_t left) {
  throw Error(what + ": compressed data ends " + std::to_string(left) + " bytes short");
}

}  // namespace

void gunzip_range(std::string_view in, uint64_t skip, uint64_t want, const Sink& sink,
                  const std::string& what) {
  Window w(skip, want, sink);
  if (w.done()) return;
  std::unique_ptr<z_stream, InflateEnd> z(new z_stream{});
  if (inflateInit2(z.get(), 16 + MAX_WBITS) != Z_OK) {
    delete z.release();
    throw Error(what + ": inflateInit2", ENOMEM);
  }
  std::unique_ptr<char[]> out(new char[kOutBuf]);
  const char* next = in.data();
  size_t avail = in.size();
  while (!w.done()) {
    // zlib takes uInt counts: feed at most 1 GiB at a time.
    uInt feed = static_cast<uInt>(std::min<size_t>(avail, 1u << 30));
    z->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(next));
    z->avail_in = feed;
    z->next_out = reinterpret_cast<Bytef*>(out.get());
    z->avail_out = kOutBuf;
    int rc = inflate(z.get(), Z_NO_FLUSH);
    size_t used = feed - z->avail_in;
    next += used;
    avail -= used;
    w.put(out.get(), kOutBuf - z->avail_out);
    if (rc == Z_STREAM_END) {
      if (w.done()) break;
      if (avail == 0) ended_early(what, w.left());
      inflateReset(z.get());  // the next gzip member
      continue;
    }
    if (rc == Z_BUF_ERROR && avail == 0) ended_early(what, w.left());
    if (rc != Z_OK && rc != Z_BUF_ERROR)
      throw Error(what + ": corrupt gzip data" + (z->msg ? std::string(": ") + z->msg : ""));
  }
}

void unzstd_range(std::string_view in, uint64_t skip, uint64_t want, const Sink& sink,
                  const std::string& what) {
  Window w(skip, want, sink);
  if (w.done()) return;
  std::unique_ptr<ZSTD_DCtx, DCtxFree> ctx(ZSTD_createDCtx());
  if (!ctx) throw Error(what + ": ZSTD_createDCtx", ENOMEM);
  std::unique_ptr<char[]> out(new char[kOutBuf]);
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  while (!w.done()) {
    ZSTD_outBuffer ob{out.get(), kOutBuf, 0};
    size_t rc = ZSTD_decompressStream(ctx.get(), &ob, &ib);
    if (ZSTD_isError(rc)) throw Error(what + ": corrupt zstd data: " + ZSTD_getErrorName(rc));
    w.put(out.get(), ob.pos);
    if (ob.pos == 0 && ib.pos == ib.size) ended_early(what, w.left());
  }
}

void decode_entry(const Toc& toc, size_t i, std::string_view bytes, uint64_t bytes_offset,
                  const Sink& sink) {
  const Entry& e = toc.entries.at(i);
  std::string what = "'" + e.path + "'";
  Hasher file_hash(e.digest ? e.digest->algorithm : "sha256");
  for (const Chunk& c : e.chunks) {
    if (c.blob_offset < bytes_offset || c.blob_end - bytes_offset > bytes.size())
      throw Error(what + ": fetched bytes do not cover the chunk at " +
                  std::to_string(c.blob_offset));
    std::string_view part = bytes.substr(c.blob_offset - bytes_offset, c.blob_end - c.blob_offset);
    std::optional<Hasher> chunk_hash;
    if (c.digest) chunk_hash.emplace(c.digest->algorithm);
    Sink tee = [&](const char* p, size_t n) {
      file_hash.update(p, n);
      if (chunk_hash) chunk_hash->update(p, n);
      sink(p, n);
    };
    std::string at = what + " at " + std::to_string(c.file_offset);
    if (toc.format == Format::Estargz)
      gunzip_range(part, c.inner_offset, c.size, tee, at);
    else
      unzstd_range(part, c.inner_offset, c.size, tee, at);
    if (chunk_hash && chunk_hash->finish() != *c.digest)
      throw Error(at + ": chunk does not match its digest " + c.digest->str());
  }
  if (e.digest) {
    Digest got = file_hash.finish();
    if (got != *e.digest)
      throw Error(what + ": content is " + got.str() + ", its TOC says " + e.digest->str());
  }
}

}  // namespace layer::lazy
