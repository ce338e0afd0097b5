// Passthrough: FUSE passthrough (kernel 6.9+). Built against libfuse >= 3.17
// it uses libfuse's own API (FUSE_CAP_PASSTHROUGH, fuse_passthrough_open,
// fuse_file_info::backing_id). libfuse 3.14 to 3.16 have none: there a custom
// io on the session watches the INIT request for the kernel's offer and
// amends our INIT, OPEN and CREATE replies on their way out (see
// ../shared/notes/fuse-passthrough.md), and the backing files are registered
// with the /dev/fuse ioctls. With it, read, write and mmap of an
// open file go straight to the real file in the kernel: no daemon round trip,
// and every mount over a lower file shares that file's page cache.
//
// The kernel allows one backing file per FUSE inode while any passthrough
// open exists, and no other kind of open next to them. Passthrough keeps
// per-node counts to choose, for each open, passthrough or cached I/O. The
// one case with no answer: a lower file open for reading in passthrough, and
// an open of its upper copy (after a copy-up). That open waits a second for
// the readers to close, then fails with ETXTBSY, as writing a running
// program does. Thread-safe.
//
// The same custom io lets O_TMPFILE opens reach the daemon: libfuse 3.14 does
// not know FUSE_TMPFILE, so it is handed over as a CREATE (kTmpfileName).
//
// With passthrough on, it also asks for FUSE_HANDLE_KILLPRIV_V2. Without it
// the kernel cannot cache that a FUSE file has no security.capability
// (SB_NOSEC), so every passthrough write first costs a GETXATTR round trip.
// With it the daemon clears set-id bits itself when the kernel says so; the
// flag that says so (in WRITE, OPEN, CREATE and SETATTR) is one libfuse 3.14
// drops, so the custom io reads it: see kill_suidgid().
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <unordered_map>

// libfuse >= 3.17 has its own passthrough API (and defines this flag).
#ifdef FUSE_CAP_PASSTHROUGH
#define LAYERFS_NATIVE_PASSTHROUGH 1
#else
#define LAYERFS_NATIVE_PASSTHROUGH 0
#endif

namespace layer::fuse {

// The name of an O_TMPFILE open's CREATE: the custom io turns the kernel's
// FUSE_TMPFILE (a CREATE with the VFS's placeholder name "/") into a CREATE.
inline constexpr const char* kTmpfileName = "/";

// What the custom io does to every request it reads (the kill-set-id flag,
// FUSE_TMPFILE as CREATE, the kernel's INIT flags), for requests that come
// another way (FUSE over io_uring, see uring.hpp).
void inspect_request(char* msg, size_t len);
// The kernel's INIT flags2 (0 before INIT or without FUSE_INIT_EXT).
uint32_t kernel_init_flags2();

class Passthrough {
 public:
  enum class Mode { kCached, kPassthrough, kBusy };
  struct Grant {
    Mode mode = Mode::kCached;
    int backing_id = 0;
  };

  // Installs the custom io on a mounted session (its /dev/fuse fd).
  bool install(fuse_session* se);
  // Whether this build registers backing files through libfuse's API.
  static constexpr bool native() { return LAYERFS_NATIVE_PASSTHROUGH; }

  // In the INIT handler: turns passthrough on if `wanted` and the kernel
  // offered it (and, before libfuse 3.17, the custom io is installed);
  // arranges the INIT reply. Returns whether it is on.
  bool negotiate(fuse_conn_info* conn, bool wanted);
  bool active() const { return active_.load(std::memory_order_relaxed); }

  // Chooses the mode of one open of `node`. `fd` is the real file the open
  // reads (and writes, if `write`); `upper`: it is in the upper layer (the
  // backing file is then registered read-write, so later writers share it).
  // `eligible`: the file's data is complete in `fd` (not a partial copy-up).
  // `req`: the OPEN or CREATE being answered.
  Grant acquire(fuse_req_t req, const void* node, int fd, bool upper, bool write, bool eligible);
  void release(fuse_req_t req, const void* node, Mode mode);

  // Makes the reply to the open in `fi` (fuse_reply_open / fuse_reply_create)
  // carry the grant (FOPEN_PASSTHROUGH + backing id), if it is a passthrough
  // one. Call right before replying.
  static void attach(const Grant& g, fuse_file_info* fi);
  // Whether the request this thread is handling asks the daemon to clear
  // the file's set-user-id bit, and set-group-id if group-executable, as the
  // kernel would have (FUSE_HANDLE_KILLPRIV_V2). A SETATTR that sets nothing
  // is such a request too: it is the kernel's remove-privileges step before
  // a passthrough write, which carries no flag.
  static bool kill_suidgid();

 private:
  struct State {
    int passthrough = 0;  // open passthrough files
    int cached = 0;       // open cached files
    int backing_id = 0;
    dev_t dev = 0;
    ino_t ino = 0;
    bool writable = false;
  };
  void disable(int err);

  int devfd_ = -1;
  std::atomic<bool> installed_{false};
  std::atomic<bool> active_{false};
  std::mutex mu_;
  std::condition_variable cv_;                    // a node's passthrough opens all closed
  std::unordered_map<const void*, State> nodes_;  // GUARDED_BY(mu_)
};

}  // namespace layer::fuse
