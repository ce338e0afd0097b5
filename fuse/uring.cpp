#include "uring.hpp"

#include <linux/io_uring.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "compat_channel_hook.hpp"
#include "fuse_kernel_compat.hpp"
#include "log.hpp"

namespace layer::fuse {

namespace {

constexpr size_t kSqeSize = 128;  // IORING_SETUP_SQE128
static_assert(sizeof(fuse_uring_req_header) == 288, "the kernel's ring entry header");
// aligned_alloc wants a multiple of the alignment.
constexpr size_t kHeaderAlloc = (sizeof(fuse_uring_req_header) + 63) / 64 * 64;

// The CPUs in a sysfs CPU list ("0-3,8"); empty if unreadable.
std::vector<int> cpu_list(const char* path) {
  std::vector<int> out;
  FILE* f = std::fopen(path, "r");
  if (!f) return out;
  char buf[4096];
  size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  for (char* p = buf; *p && *p != '\n';) {
    char* end;
    long a = std::strtol(p, &end, 10);
    if (end == p) break;
    long b = a;
    if (*end == '-') b = std::strtol(end + 1, &end, 10);
    for (long c = a; c <= b && c < 65536; ++c) out.push_back(static_cast<int>(c));
    p = *end == ',' ? end + 1 : end;
  }
  return out;
}

}  // namespace

struct Uring::Worker {
  int qid = 0;
  int ring = -1;
  void* sq_map = MAP_FAILED;
  size_t sq_len = 0;
  void* cq_map = MAP_FAILED;
  size_t cq_len = 0;
  void* sqe_map = MAP_FAILED;
  size_t sqe_len = 0;
  uint32_t* sq_head = nullptr;
  uint32_t* sq_tail = nullptr;
  uint32_t* sq_mask = nullptr;
  uint32_t* sq_array = nullptr;
  uint32_t* cq_head = nullptr;
  uint32_t* cq_tail = nullptr;
  uint32_t* cq_mask = nullptr;
  io_uring_cqe* cqes = nullptr;
  fuse_uring_req_header* header = nullptr;
  std::unique_ptr<char[]> payload;
  size_t payload_cap = 0;
  struct iovec iov[2] = {};
  std::vector<char> msg;  // the request rebuilt as /dev/fuse delivers it
  uint64_t unique = 0;    // of the request being served
  bool replied = false;
  std::thread thread;

  Worker() = default;
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  ~Worker() {
    if (sqe_map != MAP_FAILED) ::munmap(sqe_map, sqe_len);
    if (cq_map != MAP_FAILED && cq_map != sq_map) ::munmap(cq_map, cq_len);
    if (sq_map != MAP_FAILED) ::munmap(sq_map, sq_len);
    if (ring >= 0) ::close(ring);
    std::free(header);
  }

  bool setup_ring() {
    io_uring_params p{};
    p.flags = IORING_SETUP_SQE128;
    ring = static_cast<int>(::syscall(__NR_io_uring_setup, 4, &p));
    if (ring < 0) return false;
    sq_len = p.sq_off.array + p.sq_entries * sizeof(uint32_t);
    cq_len = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
    bool single = p.features & IORING_FEAT_SINGLE_MMAP;
    if (single) sq_len = cq_len = std::max(sq_len, cq_len);
    sq_map = ::mmap(nullptr, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring,
                    IORING_OFF_SQ_RING);
    if (sq_map == MAP_FAILED) return false;
    cq_map = single ? sq_map
                    : ::mmap(nullptr, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                             ring, IORING_OFF_CQ_RING);
    if (cq_map == MAP_FAILED) return false;
    sqe_len = p.sq_entries * kSqeSize;
    sqe_map = ::mmap(nullptr, sqe_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring,
                     IORING_OFF_SQES);
    if (sqe_map == MAP_FAILED) return false;
    auto at = [](void* base, uint32_t off) {
      return reinterpret_cast<uint32_t*>(static_cast<char*>(base) + off);
    };
    sq_head = at(sq_map, p.sq_off.head);
    sq_tail = at(sq_map, p.sq_off.tail);
    sq_mask = at(sq_map, p.sq_off.ring_mask);
    sq_array = at(sq_map, p.sq_off.array);
    cq_head = at(cq_map, p.cq_off.head);
    cq_tail = at(cq_map, p.cq_off.tail);
    cq_mask = at(cq_map, p.cq_off.ring_mask);
    cqes = reinterpret_cast<io_uring_cqe*>(static_cast<char*>(cq_map) + p.cq_off.cqes);
    return true;
  }

  bool setup_buffers(size_t payload_size) {
    header = static_cast<fuse_uring_req_header*>(std::aligned_alloc(64, kHeaderAlloc));
    if (!header) return false;
    std::memset(header, 0, sizeof *header);
    payload.reset(new (std::nothrow) char[payload_size]);
    if (!payload) return false;
    payload_cap = payload_size;
    iov[0] = {header, sizeof *header};
    iov[1] = {payload.get(), payload_size};
    msg.reserve(sizeof(fuse_in_header) + FUSE_URING_OP_IN_OUT_SZ + payload_size);
    return true;
  }

  // Queues one command; the next io_uring_enter submits it.
  void push(int devfd, uint32_t cmd_op, uint64_t commit_id) {
    uint32_t tail = *sq_tail;
    uint32_t idx = tail & *sq_mask;
    auto* sqe = reinterpret_cast<io_uring_sqe*>(static_cast<char*>(sqe_map) + idx * kSqeSize);
    std::memset(sqe, 0, kSqeSize);
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = devfd;
    sqe->cmd_op = cmd_op;
    sqe->user_data = 1;
    if (cmd_op == FUSE_IO_URING_CMD_REGISTER) {
      sqe->addr = reinterpret_cast<uint64_t>(iov);
      sqe->len = 2;
    }
    fuse_uring_cmd_req req{};
    req.commit_id = commit_id;
    req.qid = static_cast<uint16_t>(qid);
    std::memcpy(sqe->cmd, &req, sizeof req);
    sq_array[idx] = idx;
    __atomic_store_n(sq_tail, tail + 1, __ATOMIC_RELEASE);
  }

  // The reply for the current request when the daemon gave none: an error.
  void reply_error(int err) {
    fuse_out_header out{sizeof out, -err, unique};
    std::memcpy(header->in_out, &out, sizeof out);
    header->ring_ent_in_out.payload_sz = 0;
    replied = true;
  }
};

namespace {
thread_local Uring::Worker* t_worker = nullptr;
}

Uring::Uring(CompatChannelHook& hook) : hook_(hook) {}

Uring::~Uring() {
  stop();
}

bool Uring::prepare(bool wanted, uint32_t kernel_flags2, size_t max_write) {
  if (!wanted || !(kernel_flags2 & init_flags2_bit(FUSE_OVER_IO_URING)) || !workers_.empty())
    return false;
  // The kernel's bound for a request's payload: max(FUSE_MIN_READ_BUFFER,
  // max_write, max_pages pages); libfuse asks for max_pages = max_write in
  // pages, and the kernel may only lower it.
  size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  payload_ = std::max<size_t>(FUSE_MIN_READ_BUFFER, (max_write + page - 1) / page * page);
  // The kernel makes one queue per possible CPU (num_possible_cpus()) and
  // holds every request until each has an entry: fewer would hang the
  // mount, a qid too many is refused (and the connection falls back).
  // CPUs that are not online get one worker, the others kThreadsPerQueue.
  std::vector<int> possible = cpu_list("/sys/devices/system/cpu/possible");
  std::vector<int> online = cpu_list("/sys/devices/system/cpu/online");
  int queues = possible.empty() ? ::get_nprocs_conf() : static_cast<int>(possible.size());
  std::vector<std::unique_ptr<Worker>> ws;
  for (int q = 0; q < queues; ++q) {
    bool up = online.empty() || std::find(online.begin(), online.end(), q) != online.end();
    for (int t = 0; t < (up ? kThreadsPerQueue : 1); ++t) {
      auto w = std::make_unique<Worker>();
      w->qid = q;
      if (!w->setup_ring() || !w->setup_buffers(payload_)) {
        log_info("FUSE over io_uring: cannot set up a ring (%s); using /dev/fuse",
                 std::strerror(errno));
        return false;
      }
      ws.push_back(std::move(w));
    }
  }
  workers_ = std::move(ws);
  return true;
}

void Uring::launch() {
  if (workers_.empty() || launched_.exchange(true)) return;
  devfd_ = fuse_session_fd(se_);  // mounted by now
  for (auto& w : workers_) {
    Worker* wp = w.get();
    w->thread = std::thread([this, wp] { run(*wp); });
  }
}

void Uring::stop() {
  stop_ = true;
  for (auto& w : workers_)
    if (w->thread.joinable()) w->thread.join();
  workers_.clear();
}

bool Uring::capture(const struct iovec* iov, int count) {
  Worker* w = t_worker;
  if (!w || w->replied || count < 1 || iov[0].iov_len < sizeof(fuse_out_header)) return false;
  const char* oh = static_cast<const char*>(iov[0].iov_base);
  fuse_out_header out;
  std::memcpy(&out, oh, sizeof out);
  if (out.unique != w->unique) return false;  // a notification, or not ours
  size_t n = 0;
  bool fits = true;
  auto add = [&](const void* p, size_t len) {
    if (!fits || n + len > w->payload_cap) {
      fits = false;
      return;
    }
    std::memcpy(w->payload.get() + n, p, len);
    n += len;
  };
  if (iov[0].iov_len > sizeof out) add(oh + sizeof out, iov[0].iov_len - sizeof out);
  for (int i = 1; i < count; ++i) add(iov[i].iov_base, iov[i].iov_len);
  if (!fits) {
    log_error("FUSE over io_uring: a reply of more than %zu bytes", w->payload_cap);
    w->reply_error(EIO);
    return true;
  }
  out.len = static_cast<uint32_t>(sizeof out + n);
  std::memcpy(w->header->in_out, &out, sizeof out);
  w->header->ring_ent_in_out.payload_sz = static_cast<uint32_t>(n);
  w->replied = true;
  return true;
}

void Uring::run(Worker& w) {
  t_worker = &w;
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  CPU_SET(w.qid, &cpus);
  (void)::pthread_setaffinity_np(::pthread_self(), sizeof cpus, &cpus);  // best effort
  w.push(devfd_, FUSE_IO_URING_CMD_REGISTER, 0);
  for (;;) {
    if (stop_.load()) break;
    uint32_t to_submit = *w.sq_tail - __atomic_load_n(w.sq_head, __ATOMIC_ACQUIRE);
    struct __kernel_timespec ts = {1, 0};  // to notice stop()
    io_uring_getevents_arg arg{};
    arg.sigmask_sz = _NSIG / 8;
    arg.ts = reinterpret_cast<uint64_t>(&ts);
    long r = ::syscall(__NR_io_uring_enter, w.ring, to_submit, 1,
                       IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg, sizeof arg);
    if (r < 0 && errno != ETIME && errno != EINTR && errno != EAGAIN && errno != EBUSY) {
      log_error("FUSE over io_uring: queue %d: io_uring_enter: %s", w.qid, std::strerror(errno));
      break;
    }
    uint32_t head = *w.cq_head;
    uint32_t tail = __atomic_load_n(w.cq_tail, __ATOMIC_ACQUIRE);
    if (head == tail) continue;
    int res = w.cqes[head & *w.cq_mask].res;
    __atomic_store_n(w.cq_head, head + 1, __ATOMIC_RELEASE);
    if (res < 0) {
      // The kernel refused the registration (io_uring is then off for the
      // connection, requests go to /dev/fuse) or the mount is going away.
      if (!stop_.load() && res != -ENOTCONN && res != -ECANCELED)
        log_info("FUSE over io_uring: queue %d: %s", w.qid, std::strerror(-res));
      break;
    }
    // A request: rebuild the /dev/fuse message and hand it to libfuse.
    fuse_in_header in;
    std::memcpy(&in, w.header->in_out, sizeof in);
    const uint32_t len = in.len;
    const size_t hdr = sizeof in;
    w.unique = in.unique;
    uint32_t psz = w.header->ring_ent_in_out.payload_sz;
    uint64_t commit = w.header->ring_ent_in_out.commit_id;
    w.replied = false;
    if (len < hdr + psz || len - hdr - psz > FUSE_URING_OP_IN_OUT_SZ || psz > w.payload_cap) {
      log_error("FUSE over io_uring: a malformed request (length %u, payload %u)", len, psz);
      w.reply_error(EIO);
    } else {
      size_t op = len - hdr - psz;
      w.msg.resize(len);
      std::memcpy(w.msg.data(), &in, hdr);
      std::memcpy(w.msg.data() + hdr, w.header->op_in, op);
      std::memcpy(w.msg.data() + hdr + op, w.payload.get(), psz);
      hook_.inspect(w.msg.data(), len);
      fuse_buf fb{};
      fb.mem = w.msg.data();
      fb.size = len;
      fuse_session_process_buf(se_, &fb);
      if (!w.replied) w.reply_error(EIO);
      if (!logged_.exchange(true))
        log_info("FUSE over io_uring: serving requests on %zu rings", workers_.size());
      served_.fetch_add(1, std::memory_order_relaxed);
    }
    w.push(devfd_, FUSE_IO_URING_CMD_COMMIT_AND_FETCH, commit);
  }
  t_worker = nullptr;
}

}  // namespace layer::fuse
