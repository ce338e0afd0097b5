// The FUSE protocol as the kernel's <linux/fuse.h> spells it, with the pieces
// layerfs uses that Debian bookworm's copy (7.38) predates: passthrough (7.40)
// and FUSE over io_uring (7.42). Each block is skipped when the installed
// header is new enough, so a newer header wins. Constants and types only.
// Delete a block once every supported build host's linux-libc-dev has it.
#pragma once

#include <linux/fuse.h>
#include <sys/ioctl.h>

#include <cstdint>

#if FUSE_KERNEL_MINOR_VERSION < 40
#define FUSE_PASSTHROUGH (1ULL << 37)
#define FOPEN_PASSTHROUGH (1 << 7)
struct fuse_backing_map {
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};
#define FUSE_DEV_IOC_BACKING_OPEN _IOW(FUSE_DEV_IOC_MAGIC, 1, struct fuse_backing_map)
#define FUSE_DEV_IOC_BACKING_CLOSE _IOW(FUSE_DEV_IOC_MAGIC, 2, uint32_t)
#endif

#if FUSE_KERNEL_MINOR_VERSION < 42
#define FUSE_OVER_IO_URING (1ULL << 41)
#define FUSE_URING_IN_OUT_HEADER_SZ 128
#define FUSE_URING_OP_IN_OUT_SZ 128
struct fuse_uring_ent_in_out {
  uint64_t flags;
  uint64_t commit_id;  // names the entry in COMMIT_AND_FETCH
  uint32_t payload_sz;
  uint32_t padding;
  uint64_t reserved;
};
struct fuse_uring_req_header {
  char in_out[FUSE_URING_IN_OUT_HEADER_SZ];  // fuse_in_header in, fuse_out_header out
  char op_in[FUSE_URING_OP_IN_OUT_SZ];       // the operation's argument struct
  struct fuse_uring_ent_in_out ring_ent_in_out;
};
enum fuse_uring_cmd {
  FUSE_IO_URING_CMD_INVALID = 0,
  FUSE_IO_URING_CMD_REGISTER = 1,
  FUSE_IO_URING_CMD_COMMIT_AND_FETCH = 2,
};
struct fuse_uring_cmd_req {  // in the SQE's command area
  uint64_t flags;
  uint64_t commit_id;
  uint16_t qid;
  uint8_t padding[6];
};
#endif

namespace layer::fuse {

// Two 7.40 fields that older headers call padding: fuse_open_out::backing_id
// and fuse_init_out::max_stack_depth.
inline void set_backing_id(fuse_open_out& out, int32_t id) {
#if FUSE_KERNEL_MINOR_VERSION < 40
  out.padding = static_cast<uint32_t>(id);
#else
  out.backing_id = id;
#endif
}
inline void set_max_stack_depth(fuse_init_out& out, uint32_t depth) {
#if FUSE_KERNEL_MINOR_VERSION < 40
  out.unused[0] = depth;
#else
  out.max_stack_depth = depth;
#endif
}

// The 64-bit INIT flags split as the messages carry them (flags2 is the high
// word, valid with FUSE_INIT_EXT).
constexpr uint32_t init_flags2_bit(uint64_t flag) {
  return static_cast<uint32_t>(flag >> 32);
}

}  // namespace layer::fuse
