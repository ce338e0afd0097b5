// ParallelGzip: gzip compression on several threads (pigz's scheme, with
// zlib doing all the compressing): the input is cut into fixed 1 MiB chunks,
// each compressed as raw deflate by a worker with the previous 32 KiB of
// input as its dictionary and ended with a sync flush (the last one with
// Z_FINISH), and the pieces are written in order between one gzip header and
// the trailer (CRC-32, size). One gzip member that every gunzip reads. The
// output depends only on the input and the level, not on the number of
// threads. The caller's thread writes; the workers are owned and joined.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace layer::commit {

class ParallelGzip {
 public:
  // `out` gets the compressed bytes in order, always on the caller's thread.
  // `level` < 0: zlib's default (6). `threads` 0: one per core.
  ParallelGzip(std::function<void(const void*, size_t)> out, int level, unsigned threads = 0);
  ~ParallelGzip();
  ParallelGzip(const ParallelGzip&) = delete;
  ParallelGzip& operator=(const ParallelGzip&) = delete;

  void write(const void* data, size_t n);  // throws what `out` or zlib throws
  void finish();                           // the last chunk and the trailer; once

  static constexpr size_t kChunk = 1 << 20;
  static constexpr size_t kDict = 32 << 10;

 private:
  struct Job {
    std::string input;
    std::string dict;
    bool last = false;
    std::string output;
    bool done = false;
  };
  void submit(bool last);
  void drain(bool all);  // writes finished jobs in order; all: wait for every one
  void worker();
  static std::string compress(const Job& j, int level);

  std::function<void(const void*, size_t)> out_;
  int level_;
  std::string chunk_;  // input not yet submitted
  std::string dict_;   // the last kDict bytes of input submitted
  uint32_t crc_ = 0;
  uint64_t total_ = 0;
  bool finished_ = false;
  size_t max_in_flight_;

  std::mutex mu_;  // guards everything below
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  std::map<uint64_t, Job> jobs_;  // by sequence number, until written
  uint64_t next_submit_ = 0;
  uint64_t next_take_ = 0;   // the next job a worker takes
  uint64_t next_write_ = 0;  // the next job written to out_
  bool stop_ = false;
  std::exception_ptr error_;
  std::vector<std::thread> threads_;
};

}  // namespace layer::commit
