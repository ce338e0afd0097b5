// LayerStream: the producer half of unpacking. A thread of its own reads the
// layer blob from a ByteSource, checks its size and compressed digest while
// streaming, decompresses it (gzip or zstd, as the media type says and the
// magic bytes confirm), hashes the tar bytes for the diff_id and hands them
// out in large buffers through a small bounded queue. One consumer thread
// calls next()/finish(); the object owns its thread and joins it on
// destruction.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "oci/media_types.hpp"
#include "unpack/unpacker.hpp"
#include "util/byte_source.hpp"

namespace layer::unpack {

using oci::Compression;

// The compression a layer media type declares. Throws Error for a media
// type that is not a layer we can unpack.
Compression compression_of(std::string_view media_type);

class LayerStream {
 public:
  // `context`: "image X: layer sha256:..." for error messages.
  LayerStream(const LayerSpec& spec, ByteSource& src, const Limits& limits, std::string context);
  ~LayerStream();
  LayerStream(const LayerStream&) = delete;
  LayerStream& operator=(const LayerStream&) = delete;

  // The next chunk of tar bytes, valid until the next call; size 0 at the end
  // of the stream. Throws the producer's Error.
  std::string_view next();
  // Consumes the rest of the stream (the bytes after the tar end count toward
  // the diff_id), waits for the producer and checks size, digest and diff_id.
  // Throws Error on any mismatch.
  void finish();

  // Copies n tar bytes at stream `offset` if they are still in the last two
  // chunks next() returned; false otherwise. Consumer thread only.
  bool peek(uint64_t offset, size_t n, char* out) const;

  uint64_t compressed_bytes() const { return compressed_.load(std::memory_order_relaxed); }
  uint64_t tar_bytes() const { return tar_.load(std::memory_order_relaxed); }

 private:
  struct Buffer {
    std::vector<char> data;
    size_t len = 0;
  };

  void run();
  void produce();
  void read_input();                   // refills in_ from the source, hashing and counting
  void emit(const char* p, size_t n);  // copies into output buffers
  Buffer* take_free();
  void push_ready(Buffer* b);
  void check_magic();

  const LayerSpec& spec_;
  ByteSource& src_;
  Limits limits_;
  std::string context_;
  Compression compression_;

  // Producer-only state.
  std::vector<char> in_;
  size_t in_len_ = 0;
  size_t in_pos_ = 0;
  bool in_eof_ = false;
  Buffer* out_ = nullptr;
  Digest digest_;   // computed compressed digest (set at end)
  Digest diff_id_;  // computed diff_id (set at end)

  std::atomic<uint64_t> compressed_{0};
  std::atomic<uint64_t> tar_{0};

  std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  std::vector<Buffer> buffers_;
  std::deque<Buffer*> free_;
  std::deque<Buffer*> ready_;
  bool done_ = false;       // producer finished (or failed)
  bool cancelled_ = false;  // consumer gone: producer stops at its next wait
  bool draining_ = false;   // consumer wants no more data: hash and drop
  std::exception_ptr error_;
  Buffer* current_ = nullptr;  // the consumer's buffers, owned by it
  Buffer* previous_ = nullptr;
  uint64_t current_offset_ = 0;   // tar stream offset of current_
  uint64_t previous_offset_ = 0;  // and of previous_

  std::thread thread_;
};

}  // namespace layer::unpack
