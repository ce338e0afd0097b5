// CompatChannelHook: reads requests and amends replies in the kernel's
// message layout (<linux/fuse.h>, with fuse_kernel_compat.hpp for the pieces
// bookworm's header predates). Messages are copied into and out of the
// structs, never cast in place: libfuse's buffers carry no alignment promise.
#include "compat_channel_hook.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "daemon.hpp"
#include "fuse_kernel_compat.hpp"
#include "passthrough.hpp"
#include "uring.hpp"

namespace layer::fuse {

namespace {

constexpr uint32_t kPassthrough2 = init_flags2_bit(FUSE_PASSTHROUGH);
constexpr uint32_t kOverIoUring2 = init_flags2_bit(FUSE_OVER_IO_URING);

// The amendment the reply this thread sends next gets.
enum class Amend { kNone, kInit, kOpen };
struct Pending {
  Amend what = Amend::kNone;
  int backing_id = 0;
};
thread_local Pending t_pending;
thread_local bool t_kill = false;  // the request being handled asks to clear set-id bits

// The operation's argument struct after the header; fields the message is
// too short for read as 0, as the kernel's older, shorter structs mean.
template <typename T>
T arg_of(const char* msg, size_t len) {
  T t{};
  if (len > sizeof(fuse_in_header))
    std::memcpy(&t, msg + sizeof(fuse_in_header), std::min(sizeof t, len - sizeof(fuse_in_header)));
  return t;
}

// The kill-set-id request of a WRITE, OPEN, CREATE or SETATTR message.
bool asks_kill(uint32_t opcode, const char* msg, size_t len) {
  switch (opcode) {
    case FUSE_WRITE:
      return arg_of<fuse_write_in>(msg, len).write_flags & FUSE_WRITE_KILL_SUIDGID;
    case FUSE_OPEN:
      return arg_of<fuse_open_in>(msg, len).open_flags & FUSE_OPEN_KILL_SUIDGID;
    case FUSE_CREATE:
    case FUSE_TMPFILE:
      return arg_of<fuse_create_in>(msg, len).open_flags & FUSE_OPEN_KILL_SUIDGID;
    case FUSE_SETATTR: {
      uint32_t valid = arg_of<fuse_setattr_in>(msg, len).valid;
      return (valid & FATTR_KILL_SUIDGID) || (valid & ~(FATTR_FH | FATTR_LOCKOWNER)) == 0;
    }
    default:
      return false;
  }
}

CompatChannelHook& hook_of(void* userdata) {
  return static_cast<Daemon*>(userdata)->hook();
}

ssize_t io_splice_send(int fdin, off_t* offin, int fdout, off_t* offout, size_t len,
                       unsigned int flags, void*) {
  return ::splice(fdin, offin, fdout, offout, len, flags);
}

}  // namespace

bool CompatChannelHook::install(fuse_session* se) {
  static const fuse_custom_io io = {io_writev, io_read, nullptr, io_splice_send};
  int fd = fuse_session_fd(se);
  if (fd < 0 || fuse_session_custom_io(se, &io, fd) != 0) return false;
  devfd_ = fd;
  installed_ = true;
  return true;
}

void CompatChannelHook::inspect(char* msg, size_t len) {
  t_kill = false;
  if (len < sizeof(fuse_in_header)) return;
  fuse_in_header in;
  std::memcpy(&in, msg, sizeof in);
  stats_.count(in.opcode);
  if (killpriv_v2_.load(std::memory_order_relaxed)) t_kill = asks_kill(in.opcode, msg, len);
  if (in.opcode == FUSE_TMPFILE) {
    // libfuse 3.14 has no tmpfile op: an O_TMPFILE open comes in as a CREATE
    // of the name "/", which no real CREATE can carry (see kTmpfileName).
    in.opcode = FUSE_CREATE;
    std::memcpy(msg, &in, sizeof in);
  }
  if (in.opcode == FUSE_INIT && !saw_init_.load(std::memory_order_relaxed)) {
    auto init = arg_of<fuse_init_in>(msg, len);
    kernel_flags_.store(init.flags);
    kernel_flags2_.store((init.flags & FUSE_INIT_EXT) ? init.flags2 : 0);
    saw_init_.store(true);
  }
}

void CompatChannelHook::amend_init(bool passthrough) {
  init_passthrough_.store(passthrough && installed());
  if (passthrough || (uring_ && uring_->prepared())) t_pending = Pending{Amend::kInit, 0};
}

void CompatChannelHook::amend_open(int backing_id) {
  t_pending = Pending{Amend::kOpen, backing_id};
}

bool CompatChannelHook::kill_suidgid() {
  return t_kill;
}

ssize_t CompatChannelHook::io_read(int fd, void* buf, size_t len, void* userdata) {
  ssize_t r = ::read(fd, buf, len);
  t_kill = false;
  if (r > 0) hook_of(userdata).inspect(static_cast<char*>(buf), static_cast<size_t>(r));
  return r;
}

// Copies the reply's payload (the iovecs after the header) into `buf` with
// the pending amendment applied; false if the reply does not fit or is not
// the one expected.
bool CompatChannelHook::amend(const struct iovec* iov, int count, char* buf, size_t cap,
                              size_t* len) {
  size_t n = 0;
  for (int i = 1; i < count; ++i) {
    if (n + iov[i].iov_len > cap) return false;
    std::memcpy(buf + n, iov[i].iov_base, iov[i].iov_len);
    n += iov[i].iov_len;
  }
  *len = n;
  if (t_pending.what == Amend::kInit) {
    fuse_init_out out;
    if (n < sizeof out) return false;
    std::memcpy(&out, buf, sizeof out);
    out.flags |= FUSE_INIT_EXT;
    if (init_passthrough_.load()) {
      if (kernel_flags_.load() & FUSE_HANDLE_KILLPRIV_V2) {
        out.flags |= FUSE_HANDLE_KILLPRIV_V2;
        killpriv_v2_.store(true);
      }
      if (!Passthrough::native()) {
        out.flags2 |= kPassthrough2;
        set_max_stack_depth(out, Passthrough::kMaxStackDepth);
      }
    }
    if (uring_ && uring_->prepared()) out.flags2 |= kOverIoUring2;
    std::memcpy(buf, &out, sizeof out);
    return true;
  }
  // An OPEN reply, or the tail of a CREATE reply (fuse_entry_out first).
  fuse_open_out out;
  if (n < sizeof out) return false;
  char* at = buf + n - sizeof out;
  std::memcpy(&out, at, sizeof out);
  out.open_flags |= FOPEN_PASSTHROUGH;
  set_backing_id(out, t_pending.backing_id);
  std::memcpy(at, &out, sizeof out);
  return true;
}

// A reply to a request served from an io_uring goes back into its ring
// entry, the rest to /dev/fuse.
ssize_t CompatChannelHook::send_reply(int fd, const struct iovec* iov, int count) {
  if (uring_ && Uring::capture(iov, count)) {
    size_t n = 0;
    for (int i = 0; i < count; ++i) n += iov[i].iov_len;
    return static_cast<ssize_t>(n);
  }
  return ::writev(fd, iov, count);
}

ssize_t CompatChannelHook::io_writev(int fd, struct iovec* iov, int count, void* userdata) {
  CompatChannelHook& h = hook_of(userdata);
  const Pending a = t_pending;
  char buf[512];
  size_t len = 0;
  bool amended = false;
  if (a.what != Amend::kNone && count >= 2 && iov[0].iov_len >= sizeof(fuse_out_header)) {
    fuse_out_header oh;
    std::memcpy(&oh, iov[0].iov_base, sizeof oh);
    amended = oh.error == 0 && h.amend(iov, count, buf, sizeof buf, &len);
  }
  t_pending = Pending{};
  if (!amended) return h.send_reply(fd, iov, count);
  struct iovec out[2] = {iov[0], {buf, len}};
  ssize_t r = h.send_reply(fd, out, 2);
  // The kernel has taken the INIT reply: the rings may register now.
  if (a.what == Amend::kInit && r >= 0 && h.uring_) h.uring_->launch();
  return r;
}

}  // namespace layer::fuse
