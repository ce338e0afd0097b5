// Passthrough: FUSE passthrough (kernel 6.9+). Built against libfuse >= 3.17
// it uses libfuse's own API (FUSE_CAP_PASSTHROUGH, fuse_passthrough_open,
// fuse_file_info::backing_id). libfuse 3.14 to 3.16 have none: there the
// CompatChannelHook amends the INIT, OPEN and CREATE replies, and the backing
// files are registered with the /dev/fuse ioctls (docs/fuse-passthrough.md).
// With it, read, write and mmap of an open file go straight to the real file
// in the kernel: no daemon round trip, and every mount over a lower file
// shares that file's page cache.
//
// The kernel allows one backing file per FUSE inode while any passthrough
// open exists, and no other kind of open next to them. Passthrough keeps
// per-node counts to choose, for each open, passthrough or cached I/O. The
// one case with no answer: a lower file open for reading in passthrough, and
// an open of its upper copy (after a copy-up). That open waits a second for
// the readers to close, then fails with ETXTBSY, as writing a running
// program does.
//
// With passthrough on, it also asks for FUSE_HANDLE_KILLPRIV_V2. Without it
// the kernel cannot cache that a FUSE file has no security.capability
// (SB_NOSEC), so every passthrough write first costs a GETXATTR round trip.
// With it the daemon clears set-id bits itself when the kernel says so (see
// CompatChannelHook::kill_suidgid). Thread-safe.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <unordered_map>

#include "compat_channel_hook.hpp"

// libfuse >= 3.17 has its own passthrough API (and defines this flag).
#ifdef FUSE_CAP_PASSTHROUGH
#define LAYERFS_NATIVE_PASSTHROUGH 1
#else
#define LAYERFS_NATIVE_PASSTHROUGH 0
#endif

namespace layer::fuse {

class Passthrough {
 public:
  // Backing files on a plain filesystem only (one on overlayfs would need 2,
  // and then no overlayfs could stack on the mount).
  static constexpr uint32_t kMaxStackDepth = 1;

  // `hook` outlives this; before libfuse 3.17 it carries the replies.
  explicit Passthrough(CompatChannelHook& hook) : hook_(hook) {}

  enum class Mode { kCached, kPassthrough, kBusy };
  struct Grant {
    Mode mode = Mode::kCached;
    int backing_id = 0;
  };

  // Whether this build registers backing files through libfuse's API.
  static constexpr bool native() { return LAYERFS_NATIVE_PASSTHROUGH; }

  // In the INIT handler: turns passthrough on if `wanted` and the kernel
  // offered it (and, before libfuse 3.17, the hook is installed);
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

  CompatChannelHook& hook_;
  std::atomic<bool> active_{false};
  std::mutex mu_;
  std::condition_variable cv_;                    // a node's passthrough opens all closed
  std::unordered_map<const void*, State> nodes_;  // GUARDED_BY(mu_)
};

}  // namespace layer::fuse
