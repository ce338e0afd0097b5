#include "commit/parallel_gzip.hpp"

#include <zlib.h>

#include <algorithm>

#include "util/error.hpp"

namespace layer::commit {

namespace {

// Header: no name, no time, no extra flags, OS "Unix" (as zlib writes it).
constexpr unsigned char kHeader[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};

}  // namespace

ParallelGzip::ParallelGzip(std::function<void(const void*, size_t)> out, int level,
                           unsigned threads)
    : out_(std::move(out)), level_(level < 0 ? Z_DEFAULT_COMPRESSION : level) {
  if (level > 9) throw Error("gzip level " + std::to_string(level) + " is not 0..9");
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  max_in_flight_ = 2 * threads;
  crc_ = static_cast<uint32_t>(crc32(0, nullptr, 0));
  chunk_.reserve(kChunk);
  for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { worker(); });
  out_(kHeader, sizeof kHeader);
}

ParallelGzip::~ParallelGzip() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

std::string ParallelGzip::compress(const Job& j, int level) {
  z_stream z{};
  if (deflateInit2(&z, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw Error("gzip: deflateInit2 failed");
  std::string out;
  try {
    if (!j.dict.empty() && deflateSetDictionary(&z, reinterpret_cast<const Bytef*>(j.dict.data()),
                                                static_cast<uInt>(j.dict.size())) != Z_OK)
      throw Error("gzip: deflateSetDictionary failed");
    out.resize(deflateBound(&z, static_cast<uLong>(j.input.size())) + 64);
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(j.input.data()));
    z.avail_in = static_cast<uInt>(j.input.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    // A sync flush ends the piece on a byte boundary without a final block,
    // so the next piece's blocks follow it in the same deflate stream.
    int r = deflate(&z, j.last ? Z_FINISH : Z_SYNC_FLUSH);
    if ((j.last && r != Z_STREAM_END) || (!j.last && (r != Z_OK || z.avail_in != 0)) ||
        z.avail_out == 0)
      throw Error("gzip: deflate failed");
    out.resize(out.size() - z.avail_out);
  } catch (...) {
    deflateEnd(&z);
    throw;
  }
  deflateEnd(&z);
  return out;
}

void ParallelGzip::worker() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [&] { return stop_ || next_take_ < next_submit_; });
    if (stop_) return;
    Job& j = jobs_.at(next_take_++);
    lock.unlock();
    std::string out;
    std::exception_ptr err;
    try {
      out = compress(j, level_);
    } catch (...) {
      err = std::current_exception();
    }
    lock.lock();
    if (err && !error_) error_ = err;
    j.output = std::move(out);
    j.done = true;
    done_cv_.notify_all();
  }
}

void ParallelGzip::submit(bool last) {
  Job j;
  j.input = std::move(chunk_);
  j.dict = dict_;
  j.last = last;
  // The next piece's dictionary: the last 32 KiB of input so far.
  if (j.input.size() >= kDict) {
    dict_.assign(j.input, j.input.size() - kDict, kDict);
  } else {
    dict_ += j.input;
    if (dict_.size() > kDict) dict_.erase(0, dict_.size() - kDict);
  }
  chunk_.clear();
  chunk_.reserve(kChunk);
  {
    std::lock_guard<std::mutex> g(mu_);
    jobs_.emplace(next_submit_++, std::move(j));
  }
  work_cv_.notify_one();
  drain(false);
}

void ParallelGzip::drain(bool all) {
  for (;;) {
    std::string piece;
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto ready = [&] {
        if (error_) return true;
        auto it = jobs_.find(next_write_);
        return it != jobs_.end() && it->second.done;
      };
      bool must_wait =
          all ? next_write_ < next_submit_ : next_submit_ - next_write_ >= max_in_flight_;
      if (must_wait)
        done_cv_.wait(lock, ready);
      else if (!ready())
        return;
      if (error_) std::rethrow_exception(error_);
      if (next_write_ >= next_submit_) return;
      auto it = jobs_.find(next_write_);
      piece = std::move(it->second.output);
      jobs_.erase(it);
      ++next_write_;
    }
    out_(piece.data(), piece.size());
  }
}

void ParallelGzip::write(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  crc_ = static_cast<uint32_t>(crc32_z(crc_, reinterpret_cast<const Bytef*>(p), n));
  total_ += n;
  while (n > 0) {
    size_t k = std::min(n, kChunk - chunk_.size());
    chunk_.append(p, k);
    p += k;
    n -= k;
    if (chunk_.size() == kChunk) submit(false);
  }
}

void ParallelGzip::finish() {
  if (finished_) return;
  finished_ = true;
  submit(true);
  drain(true);
  unsigned char trailer[8];
  uint32_t size = static_cast<uint32_t>(total_);
  for (int i = 0; i < 4; ++i) {
    trailer[i] = static_cast<unsigned char>(crc_ >> (8 * i));
    trailer[4 + i] = static_cast<unsigned char>(size >> (8 * i));
  }
  out_(trailer, sizeof trailer);
}

}  // namespace layer::commit
