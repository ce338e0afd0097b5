// Daemon: the FUSE side of layerfs. Decodes each low-level request, calls
// lib/overlay and replies exactly once through one of the reply helpers; a
// catch-all per handler turns an exception into ENOMEM or EIO. No lock is held
// across a fuse_reply_* call. Thread-safe: one Daemon serves all loop threads.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <memory>

#include "overlay/mount_options.hpp"
#include "compat_channel_hook.hpp"
#include "overlay/overlay.hpp"
#include "passthrough.hpp"
#include "uring.hpp"

namespace layer::fuse {

class Daemon {
 public:
  Daemon(std::unique_ptr<overlay::Overlay> ov, const overlay::MountOptions& opts)
      : ov_(std::move(ov)), opts_(opts) {}

  static const fuse_lowlevel_ops& ops();

  overlay::Overlay& ov() { return *ov_; }
  const overlay::MountOptions& opts() const { return opts_; }
  double timeout() const { return opts_.timeout; }
  bool writeback() const { return writeback_; }
  void set_writeback(bool on) { writeback_ = on; }
  CompatChannelHook& hook() { return hook_; }
  Passthrough& pt() { return pt_; }
  Uring& uring() { return uring_; }
  fuse_session* session() const { return se_; }
  void set_session(fuse_session* se) { se_ = se; }

 private:
  std::unique_ptr<overlay::Overlay> ov_;
  overlay::MountOptions opts_;
  CompatChannelHook hook_;  // before pt_ and uring_, which use it
  Passthrough pt_{hook_};
  Uring uring_{hook_};
  bool writeback_ = false;      // set once in init, before any other request
  fuse_session* se_ = nullptr;  // set before the loop starts
};

}  // namespace layer::fuse
