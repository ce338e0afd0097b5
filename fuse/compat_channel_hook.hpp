// CompatChannelHook: a compatibility hook for libfuse < 3.17 (Debian
// bookworm ships 3.14). It is a custom io on the session's /dev/fuse fd
// (fuse_session_custom_io) that reads each request before libfuse and each
// reply after it, to reach what libfuse 3.14 cannot express:
//  - FUSE passthrough (before 3.17): FUSE_PASSTHROUGH and max_stack_depth
//    in the INIT reply, FOPEN_PASSTHROUGH and the backing id in OPEN and
//    CREATE replies (Passthrough registers the backing files);
//  - FUSE_TMPFILE (O_TMPFILE opens), handed over as a CREATE of kTmpfileName;
//  - FUSE_HANDLE_KILLPRIV_V2 with passthrough, and the kill-set-id flags of
//    WRITE, OPEN, CREATE and SETATTR that libfuse 3.14 drops;
//  - FUSE over io_uring: FUSE_OVER_IO_URING in the INIT reply, and replies to
//    requests served from a ring go into its entry (see uring.hpp).
// docs/fuse-passthrough.md has the protocol facts it relies on.
//
// When to delete it: when the oldest libfuse layerfs builds against is 3.18
// (passthrough API and the tmpfile op since 3.17, FUSE over io_uring since
// 3.18) and that libfuse hands the handlers the kill-set-id flags; then
// ops.cpp uses libfuse's API for each and this file, uring.* and
// fuse_kernel_compat.hpp go.
//
// One per session, owned by the Daemon. The INIT state is written while the
// kernel waits for the INIT reply (no other request is in flight) and read
// afterwards; per-request state (the kill flag, a pending reply amendment)
// is the handling thread's own. Thread-safe.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "request_stats.hpp"

namespace layer::fuse {

class Uring;

// The name of an O_TMPFILE open's CREATE: the hook turns the kernel's
// FUSE_TMPFILE (a CREATE with the VFS's placeholder name "/") into a CREATE.
inline constexpr const char* kTmpfileName = "/";

class CompatChannelHook {
 public:
  // Installs the custom io on a mounted session whose userdata is the
  // Daemon that owns this hook. False: libfuse refused it.
  bool install(fuse_session* se);
  bool installed() const { return installed_.load(std::memory_order_relaxed); }
  int devfd() const { return devfd_; }
  // The rings whose replies this hook captures (none: every reply goes to
  // /dev/fuse). Set before the mount.
  void set_uring(Uring* u) { uring_ = u; }

  // What the hook does to each request it reads (the kill-set-id flag,
  // FUSE_TMPFILE as CREATE, the kernel's INIT flags), for requests that come
  // another way (an io_uring entry).
  void inspect(char* msg, size_t len);
  // The kernel's INIT flags2 (0 before INIT or without FUSE_INIT_EXT).
  uint32_t kernel_flags2() const { return kernel_flags2_.load(std::memory_order_relaxed); }
  // The requests inspect() has seen, by opcode.
  const RequestStats& stats() const { return stats_; }

  // In the INIT handler, with `passthrough` on: the INIT reply adds
  // FUSE_HANDLE_KILLPRIV_V2 (if the kernel offers it) and, before libfuse
  // 3.17, FUSE_PASSTHROUGH; with the rings prepared, FUSE_OVER_IO_URING.
  void amend_init(bool passthrough);
  // Right before replying to an OPEN or CREATE: the reply opens the file in
  // passthrough on backing file `backing_id`.
  static void amend_open(int backing_id);
  // Whether the request this thread is handling asks the daemon to clear
  // the file's set-user-id bit, and set-group-id if group-executable, as the
  // kernel would have (FUSE_HANDLE_KILLPRIV_V2). A SETATTR that sets nothing
  // is such a request too: it is the kernel's remove-privileges step before
  // a passthrough write, which carries no flag.
  static bool kill_suidgid();

  // The custom io's calls (libfuse passes the session's userdata).
  static ssize_t io_read(int fd, void* buf, size_t len, void* userdata);
  static ssize_t io_writev(int fd, struct iovec* iov, int count, void* userdata);

 private:
  ssize_t send_reply(int fd, const struct iovec* iov, int count);
  bool amend(const struct iovec* iov, int count, char* buf, size_t cap, size_t* len);

  int devfd_ = -1;
  Uring* uring_ = nullptr;
  RequestStats stats_;
  std::atomic<bool> installed_{false};
  std::atomic<bool> saw_init_{false};
  std::atomic<uint32_t> kernel_flags_{0};
  std::atomic<uint32_t> kernel_flags2_{0};
  std::atomic<bool> init_passthrough_{false};  // the INIT reply turns passthrough on
  std::atomic<bool> killpriv_v2_{false};       // negotiated: the daemon clears set-id bits
};

}  // namespace layer::fuse
