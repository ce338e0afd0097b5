#include "unpack/layer_stream.hpp"

#include <zlib.h>
#include <zstd.h>

#include <cstring>
#include <memory>

#include "util/error.hpp"

namespace layer::unpack {

namespace {

constexpr size_t kInSize = 1 << 20;
constexpr size_t kOutSize = 4 << 20;
constexpr size_t kBuffers = 5;  // the consumer holds two

struct ZstdFree {
  void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
};

bool is_gzip(const char* p, size_t n) {
  return n >= 2 && static_cast<unsigned char>(p[0]) == 0x1f &&
         static_cast<unsigned char>(p[1]) == 0x8b;
}

bool is_zstd(const char* p, size_t n) {
  if (n < 4) return false;
  uint32_t m = static_cast<uint32_t>(static_cast<unsigned char>(p[0])) |
               static_cast<uint32_t>(static_cast<unsigned char>(p[1])) << 8 |
               static_cast<uint32_t>(static_cast<unsigned char>(p[2])) << 16 |
               static_cast<uint32_t>(static_cast<unsigned char>(p[3])) << 24;
  return m == 0xFD2FB528u || (m & 0xFFFFFFF0u) == 0x184D2A50u;
}

const char* name_of(Compression c) {
  switch (c) {
    case Compression::None:
      return "uncompressed tar";
    case Compression::Gzip:
      return "gzip";
    case Compression::Zstd:
      return "zstd";
  }
  return "?";
}

}  // namespace

Compression compression_of(std::string_view mt) {
  static constexpr std::string_view kTar[] = {
      "application/vnd.oci.image.layer.v1.tar",
      "application/vnd.oci.image.layer.nondistributable.v1.tar",
      "application/vnd.docker.image.rootfs.diff.tar",
  };
  static constexpr std::string_view kGzip[] = {
      "application/vnd.oci.image.layer.v1.tar+gzip",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
      "application/vnd.docker.image.rootfs.diff.tar.gzip",
      "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
  };
  static constexpr std::string_view kZstd[] = {
      "application/vnd.oci.image.layer.v1.tar+zstd",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
      "application/vnd.docker.image.rootfs.diff.tar.zstd",
  };
  for (auto t : kTar)
    if (mt == t) return Compression::None;
  for (auto t : kGzip)
    if (mt == t) return Compression::Gzip;
  for (auto t : kZstd)
    if (mt == t) return Compression::Zstd;
  throw Error("unsupported layer media type '" + std::string(mt.substr(0, 200)) + "'");
}

LayerStream::LayerStream(const LayerSpec& spec, ByteSource& src, const Limits& limits,
                         std::string context)
    : spec_(spec),
      src_(src),
      limits_(limits),
      context_(std::move(context)),
      compression_(compression_of(spec.media_type)),
      buffers_(kBuffers) {
  for (auto& b : buffers_) {
    b.data.resize(kOutSize);
    free_.push_back(&b);
  }
  if (compression_ != Compression::None) in_.resize(kInSize);
  thread_ = std::thread([this] { run(); });
}

LayerStream::~LayerStream() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    cancelled_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void LayerStream::run() {
  try {
    produce();
  } catch (...) {
    std::lock_guard<std::mutex> lk(mu_);
    error_ = std::current_exception();
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    done_ = true;
  }
  cv_.notify_all();
}

// Thrown on the producer thread when the consumer has gone away.
struct Cancelled {};

LayerStream::Buffer* LayerStream::take_free() {
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait(lk, [&] { return cancelled_ || !free_.empty(); });
  if (cancelled_) throw Cancelled{};
  Buffer* b = free_.front();
  free_.pop_front();
  b->len = 0;
  return b;
}

void LayerStream::push_ready(Buffer* b) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    ready_.push_back(b);
  }
  cv_.notify_all();
}

std::string_view LayerStream::next() {
  std::unique_lock<std::mutex> lk(mu_);
  // The consumer keeps its last two buffers, so peek() can look back at a
  // header that straddles them.
  if (previous_) {
    free_.push_back(previous_);
    cv_.notify_all();
  }
  previous_ = current_;
  previous_offset_ = current_offset_;
  current_ = nullptr;
  if (previous_) current_offset_ = previous_offset_ + previous_->len;
  cv_.wait(lk, [&] { return !ready_.empty() || done_; });
  if (!ready_.empty()) {
    current_ = ready_.front();
    ready_.pop_front();
    return {current_->data.data(), current_->len};
  }
  if (error_) std::rethrow_exception(error_);
  return {};
}

bool LayerStream::peek(uint64_t offset, size_t n, char* out) const {
  for (const Buffer* b : {previous_, current_}) {
    if (!b || n == 0) continue;
    uint64_t start = b == previous_ ? previous_offset_ : current_offset_;
    if (offset < start || offset >= start + b->len) continue;
    size_t k = std::min<uint64_t>(n, start + b->len - offset);
    std::memcpy(out, b->data.data() + (offset - start), k);
    out += k;
    offset += k;
    n -= k;
  }
  return n == 0;
}

void LayerStream::finish() {
  while (!next().empty()) {
  }
  thread_.join();
  if (spec_.size >= 0 && compressed_bytes() != static_cast<uint64_t>(spec_.size))
    throw Error(context_ + ": blob is " + std::to_string(compressed_bytes()) +
                " bytes, the descriptor says " + std::to_string(spec_.size));
  if (digest_ != spec_.digest)
    throw Error(context_ + ": blob digest mismatch: got " + digest_.str());
  if (diff_id_ != spec_.diff_id)
    throw Error(context_ + ": diff_id mismatch: uncompressed content is " + diff_id_.str() +
                ", the image config says " + spec_.diff_id.str());
}

void LayerStream::read_input() {
  size_t n = src_.read(in_.data(), in_.size());
  in_pos_ = 0;
  in_len_ = n;
  if (n == 0) {
    in_eof_ = true;
    return;
  }
  uint64_t total = compressed_.fetch_add(n, std::memory_order_relaxed) + n;
  if (spec_.size >= 0 && total > static_cast<uint64_t>(spec_.size))
    throw Error(context_ + ": blob is larger than the descriptor's " + std::to_string(spec_.size) +
                " bytes");
}

void LayerStream::check_magic() {
  const char* p = compression_ == Compression::None ? out_->data.data() : in_.data() + in_pos_;
  size_t n = compression_ == Compression::None ? out_->len : in_len_ - in_pos_;
  bool gz = is_gzip(p, n), zs = is_zstd(p, n);
  bool ok = compression_ == Compression::Gzip   ? gz
            : compression_ == Compression::Zstd ? zs
                                                : !gz && !zs;
  if (!ok) {
    const char* seen = gz ? "gzip" : zs ? "zstd" : n == 0 ? "empty" : "not compressed";
    throw Error(context_ + ": media type " + spec_.media_type + " says " + name_of(compression_) +
                " but the data is " + seen);
  }
}

void LayerStream::produce() {
  Hasher blob_hash(spec_.digest.algorithm);
  Hasher tar_hash(spec_.diff_id.algorithm);
  bool same_hash =
      compression_ == Compression::None && spec_.digest.algorithm == spec_.diff_id.algorithm;
  const uint64_t max = limits_.max_bytes;
  auto count_tar = [&](size_t n) {
    uint64_t t = tar_.fetch_add(n, std::memory_order_relaxed) + n;
    if (t > max)
      throw Error(context_ + ": uncompressed layer exceeds the limit of " + std::to_string(max) +
                  " bytes (decompression bomb?)");
  };

  if (compression_ == Compression::None) {
    bool first = true;
    for (;;) {
      out_ = take_free();
      // Fill the buffer, so the consumer gets large chunks.
      while (out_->len < out_->data.size()) {
        size_t n = src_.read(out_->data.data() + out_->len, out_->data.size() - out_->len);
        if (n == 0) {
          in_eof_ = true;
          break;
        }
        uint64_t total = compressed_.fetch_add(n, std::memory_order_relaxed) + n;
        if (spec_.size >= 0 && total > static_cast<uint64_t>(spec_.size))
          throw Error(context_ + ": blob is larger than the descriptor's " +
                      std::to_string(spec_.size) + " bytes");
        out_->len += n;
      }
      if (first) check_magic();
      first = false;
      blob_hash.update(out_->data.data(), out_->len);
      if (!same_hash) tar_hash.update(out_->data.data(), out_->len);
      count_tar(out_->len);
      if (out_->len > 0)
        push_ready(out_);
      else {
        std::lock_guard<std::mutex> lk(mu_);
        free_.push_back(out_);
      }
      out_ = nullptr;
      if (in_eof_) break;
    }
    digest_ = blob_hash.finish();
    diff_id_ = same_hash ? digest_ : tar_hash.finish();
    if (same_hash) diff_id_.algorithm = spec_.diff_id.algorithm;
    return;
  }

  read_input();
  check_magic();
  blob_hash.update(in_.data(), in_len_);

  // Hands out_ to the consumer (or back to the pool if empty).
  auto ship = [&] {
    tar_hash.update(out_->data.data(), out_->len);
    count_tar(out_->len);
    if (out_->len > 0) {
      push_ready(out_);
    } else {
      std::lock_guard<std::mutex> lk(mu_);
      free_.push_back(out_);
    }
    out_ = nullptr;
  };
  // Refills the input; false at the end of the blob.
  auto refill = [&] {
    read_input();
    blob_hash.update(in_.data(), in_len_);
    return !in_eof_;
  };

  if (compression_ == Compression::Gzip) {
    z_stream z{};
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) throw Error(context_ + ": zlib init", ENOMEM);
    std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&z, inflateEnd);
    bool member_end = false;
    bool end = false;
    while (!end) {
      out_ = take_free();
      while (out_->len < out_->data.size()) {
        if (member_end) {
          // Concatenated gzip members are one stream; anything else after a
          // member is corrupt data and fails in inflate below.
          if (in_pos_ == in_len_ && !refill()) {
            end = true;
            break;
          }
          if (inflateReset(&z) != Z_OK) throw Error(context_ + ": zlib reset failed");
          member_end = false;
        }
        z.next_in = reinterpret_cast<Bytef*>(in_.data() + in_pos_);
        z.avail_in = static_cast<uInt>(in_len_ - in_pos_);
        z.next_out = reinterpret_cast<Bytef*>(out_->data.data() + out_->len);
        z.avail_out = static_cast<uInt>(out_->data.size() - out_->len);
        int r = inflate(&z, Z_NO_FLUSH);
        out_->len = out_->data.size() - z.avail_out;
        in_pos_ = in_len_ - z.avail_in;
        if (r == Z_STREAM_END) {
          member_end = true;
        } else if (r == Z_BUF_ERROR && in_pos_ < in_len_) {
          throw Error(context_ + ": corrupt gzip stream");
        } else if (r == Z_BUF_ERROR || (r == Z_OK && in_pos_ == in_len_)) {
          // Starved of input (output has room).
          if (in_pos_ == in_len_ && !refill()) throw Error(context_ + ": truncated gzip stream");
        } else if (r != Z_OK) {
          throw Error(context_ + ": corrupt gzip stream: " + (z.msg ? z.msg : "inflate failed"));
        }
      }
      ship();
    }
  } else {
    std::unique_ptr<ZSTD_DCtx, ZstdFree> dctx(ZSTD_createDCtx());
    if (!dctx) throw Error(context_ + ": zstd init", ENOMEM);
    size_t last = 1;       // 0 exactly when a frame is complete and flushed
    bool starved = false;  // the last call left room in the output
    bool end = false;
    while (!end) {
      out_ = take_free();
      while (out_->len < out_->data.size()) {
        if (in_pos_ == in_len_ && starved) {
          if (!refill()) {
            if (last != 0) throw Error(context_ + ": truncated zstd stream");
            end = true;
            break;
          }
        }
        ZSTD_inBuffer in{in_.data(), in_len_, in_pos_};
        ZSTD_outBuffer out{out_->data.data(), out_->data.size(), out_->len};
        last = ZSTD_decompressStream(dctx.get(), &out, &in);
        if (ZSTD_isError(last))
          throw Error(context_ + ": corrupt zstd stream: " + ZSTD_getErrorName(last));
        in_pos_ = in.pos;
        out_->len = out.pos;
        starved = out.pos < out.size;
      }
      ship();
    }
  }
  digest_ = blob_hash.finish();
  diff_id_ = tar_hash.finish();
}

}  // namespace layer::unpack
