// Uring: FUSE over io_uring (kernel 6.14+, fuse module parameter
// enable_uring=1) from libfuse 3.14, which has no API for it. The kernel then
// hands each request to the queue of the CPU its caller runs on and wakes a
// worker pinned to that CPU, where /dev/fuse wakes whichever thread waits
// first, mostly on the other CPU: on an idle virtual machine each such
// cross-CPU wakeup costs tens of microseconds, twice per round trip.
//
// How it rides on libfuse: in the INIT handler prepare() creates one io_uring
// per worker (kThreadsPerQueue per CPU); the CompatChannelHook adds
// FUSE_OVER_IO_URING to the INIT reply, and once the reply is out launch()
// starts the workers. Each registers its ring entry with the kernel,
// then, per request, rebuilds the /dev/fuse message (header, the operation's
// argument struct, payload) for fuse_session_process_buf; the reply comes
// back through the hook's writev, which hands it to capture() to store in
// the entry, and the worker commits it and fetches the next request. FORGET,
// INTERRUPT and notifications still travel through /dev/fuse and libfuse's
// own loop.
//
// If a ring cannot be created nothing is asked of the kernel (the mount uses
// /dev/fuse). Once asked, the kernel holds new requests until every queue
// has an entry; a registration it refuses turns io_uring off for the
// connection and releases them, so a refusal falls back too.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

namespace layer::fuse {

class CompatChannelHook;

class Uring {
 public:
  // `hook` outlives this; it reads each request as from /dev/fuse.
  explicit Uring(CompatChannelHook& hook);
  ~Uring();
  Uring(const Uring&) = delete;
  Uring& operator=(const Uring&) = delete;

  // In the INIT handler: if `wanted` and the kernel offers it (INIT flags2),
  // creates the rings for requests of up to `max_write` bytes. True: the
  // INIT reply accepts FUSE over io_uring (the hook adds the flag).
  bool prepare(bool wanted, uint32_t kernel_flags2, size_t max_write);
  bool prepared() const { return !workers_.empty(); }
  // Called by the hook right after the INIT reply was written.
  void launch();
  // After the unmount: stops the workers (they notice within a second).
  void stop();
  // Requests served through the rings so far.
  uint64_t served() const { return served_.load(std::memory_order_relaxed); }

  void set_session(fuse_session* se) { se_ = se; }

  // From the hook's writev: a reply to the request this thread serves
  // from a ring is stored in its ring entry (true); anything else (false)
  // goes to /dev/fuse.
  static bool capture(const struct iovec* iov, int count);

  static constexpr int kThreadsPerQueue = 2;
  struct Worker;  // one ring, one entry, one thread pinned to its queue's CPU

 private:
  void run(Worker& w);

  CompatChannelHook& hook_;
  fuse_session* se_ = nullptr;
  int devfd_ = -1;
  size_t payload_ = 0;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> launched_{false};
  std::atomic<uint64_t> served_{0};
  std::atomic<bool> logged_{false};  // the first ring-served request was logged
};

}  // namespace layer::fuse
