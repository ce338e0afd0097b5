#include "overlay/lazy_copy.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <vector>

#include "overlay/upper_dir.hpp"
#include "store/object_ref.hpp"
#include "util/sys.hpp"
#include "util/xattr_path.hpp"

namespace layer::overlay {

namespace {

constexpr off_t kBlock = 4096;
constexpr off_t kFillChunk = 1 << 20;
// The background fill stays out of the way of a file being written to: it
// waits until nobody has written to it for kQuietNs, or at once when its
// last writer has closed (Partial::writers_gone).
constexpr int64_t kQuietNs = 300'000'000;

int64_t now_ns() {
  struct timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// Next data offset at or after pos, or `none` past the last data.
off_t next_data(int fd, off_t pos, off_t none) {
  off_t d = ::lseek(fd, pos, SEEK_DATA);
  return d < 0 ? none : d;
}

off_t next_hole(int fd, off_t pos, off_t none) {
  off_t h = ::lseek(fd, pos, SEEK_HOLE);
  return h < 0 ? none : h;
}

}  // namespace

std::shared_ptr<Partial> LazyCopy::make(UniqueFd lower, off_t size, std::string marker) {
  auto p = std::make_shared<Partial>();
  p->lower = std::move(lower);
  p->limit = size;
  p->last_write_ns = now_ns();  // the write that asked for it comes next
  p->marker = std::move(marker);
  return p;
}

Result<void> LazyCopy::mark(int wfd, const char* tn, int data, Partial& p) {
  if (XattrPath(wfd, tn).set(xattr_, p.marker.data(), p.marker.size(), 0) != 0) return last_errno();
  struct stat ust;
  if (::fstat(data, &ust) != 0) return last_errno();
  p.upper_ino = ust.st_ino;
  p.reg_name = ino_name(ust.st_ino);
  if (::linkat(wfd, tn, dir_.get(), p.reg_name.c_str(), 0) != 0) return last_errno();
  auto rw = sys::open_at(wfd, tn, O_RDWR | O_NOFOLLOW);
  if (!rw) {
    unmark(p);
    return Errno{rw.error()};
  }
  p.upper = std::move(rw).value();
  return {};
}

void LazyCopy::unmark(Partial& p) {
  ::unlinkat(dir_.get(), p.reg_name.c_str(), 0);
}

void LazyCopy::publish(Node* n, const std::shared_ptr<Partial>& p) {
  {
    std::lock_guard<std::mutex> g(n->mu);
    n->partial = p;
  }
  std::lock_guard<std::mutex> g(mu_);
  partials_[p->upper_ino] = p;
  queue_.push_back(p);
  cv_.notify_one();
}

Result<void> LazyCopy::cut(Partial& p, off_t size, bool and_truncate) {
  std::lock_guard<std::mutex> g(p.mu);
  if (auto r = lower_limit(p, size); !r) return r;
  if (and_truncate && ::ftruncate(p.upper.get(), size) != 0) return last_errno();
  return {};
}

void LazyCopy::start() {
  std::lock_guard<std::mutex> g(mu_);
  if (!dir_.valid() || thread_.joinable() || stop_) return;
  thread_ = std::thread([this] { worker(); });
}

std::shared_ptr<Partial> LazyCopy::partial_of(Node* n) {
  if (n->type != S_IFREG) return nullptr;
  std::lock_guard<std::mutex> g(n->mu);
  if (n->partial && n->partial->done.load()) n->partial.reset();
  return n->partial;
}

std::shared_ptr<Partial> LazyCopy::unfilled_of(Node* n) {
  auto p = partial_of(n);
  return p && !p->filled.load() ? p : nullptr;
}

bool LazyCopy::attach(Node* n, const struct stat& st) {
  std::shared_ptr<Partial> found;
  {
    std::lock_guard<std::mutex> g(mu_);
    if (partials_.empty()) return false;
    auto it = partials_.find(st.st_ino);
    if (it == partials_.end() || it->second->done.load()) return false;
    found = it->second;
  }
  {
    std::lock_guard<std::mutex> ng(n->mu);
    n->partial = found;
  }
  // An upper file whose only other link is its workdir/layerfs-partial entry.
  return st.st_nlink == 2;
}

// Copies the lower file's data (not its holes) in [from, to) into the
// upper's holes there. REQUIRES: p.mu held.
Result<void> LazyCopy::fill_range(Partial& p, off_t from, off_t to) {
  to = std::min(to, p.limit);
  off_t pos = std::max<off_t>(from, 0);
  // Filling is not a change of the file: its times stay as they are.
  struct stat before;
  bool copied = false;
  if (::fstat(p.upper.get(), &before) != 0) return last_errno();
  while (pos < to) {
    off_t hole = next_hole(p.upper.get(), pos, to);
    if (hole >= to) break;
    off_t hole_end = std::min(next_data(p.upper.get(), hole, to), to);
    // Inside the upper's hole, copy only where the lower has data.
    off_t q = hole;
    while (q < hole_end) {
      off_t d = next_data(p.lower.get(), q, hole_end);
      if (d >= hole_end) break;
      off_t e = std::min(next_hole(p.lower.get(), d, hole_end), hole_end);
      if (auto r = sys::copy_range(p.lower.get(), p.upper.get(), d, e); !r) return r;
      copied = true;
      q = e;
    }
    pos = hole_end;
  }
  if (copied) {
    struct timespec ts[2] = {before.st_atim, before.st_mtim};
    if (::futimens(p.upper.get(), ts) != 0) return last_errno();
  }
  return {};
}

Result<void> LazyCopy::lower_limit(Partial& p, off_t size) {
  if (size >= p.limit || p.done.load()) return {};
  p.limit = size;
  std::string m = p.marker;
  m.replace(0, m.find('\0'), std::to_string(size));
  p.marker = m;
  if (::fsetxattr(p.upper.get(), xattr_, m.data(), m.size(), 0) != 0) return last_errno();
  return {};
}

Result<size_t> LazyCopy::read(Partial& p, char* buf, size_t size, off_t off) {
  std::lock_guard<std::mutex> g(p.mu);
  struct stat st;
  if (::fstat(p.upper.get(), &st) != 0) return last_errno();
  if (off >= st.st_size) return size_t{0};
  off_t end = std::min<off_t>(st.st_size, off + static_cast<off_t>(size));
  off_t pos = off;
  bool done = p.filled.load();
  while (pos < end) {
    off_t d = done ? pos : next_data(p.upper.get(), pos, end);
    int src;
    off_t seg_end;
    if (d > pos) {  // a hole of the upper: the lower's bytes, zeros past limit
      seg_end = std::min(d, end);
      src = pos < p.limit ? p.lower.get() : -1;
      if (src >= 0) seg_end = std::min(seg_end, p.limit);
    } else {
      seg_end = done ? end : std::min(next_hole(p.upper.get(), pos, end), end);
      src = p.upper.get();
    }
    size_t want = static_cast<size_t>(seg_end - pos);
    char* out = buf + (pos - off);
    size_t got = 0;
    if (src >= 0) {
      auto n = sys::pread_full(src, out, want, pos);
      if (!n) return Errno{n.error()};
      got = n.value();
    }
    std::memset(out + got, 0, want - got);
    pos = seg_end;
  }
  return static_cast<size_t>(end - off);
}

Result<std::unique_lock<std::mutex>> LazyCopy::begin_write(Partial& p, off_t off, size_t size) {
  p.last_write_ns = now_ns();
  std::unique_lock<std::mutex> lock(p.mu);
  if (p.filled.load() || size == 0) return lock;
  // The blocks a write only partly covers must hold the lower's bytes first:
  // afterwards the whole block is the upper's data.
  off_t head = off & ~(kBlock - 1);
  off_t tail = (off + static_cast<off_t>(size) - 1) & ~(kBlock - 1);
  if (auto r = fill_range(p, head, head + kBlock); !r) return Errno{r.error()};
  if (tail != head) {
    if (auto r = fill_range(p, tail, tail + kBlock); !r) return Errno{r.error()};
  }
  return lock;
}

Result<void> LazyCopy::fill(Partial& p) {
  {
    std::lock_guard<std::mutex> g(p.mu);
    if (p.filled.load()) return {};
    if (auto r = fill_range(p, 0, p.limit); !r) return r;
    p.filled = true;
  }
  std::lock_guard<std::mutex> g(mu_);
  cv_.notify_all();  // the worker need not wait for writes to pause
  return {};
}

Result<void> LazyCopy::complete(Partial& p) {
  {
    std::lock_guard<std::mutex> g(p.mu);
    if (p.done.load()) return {};
    if (!p.filled.load()) {
      if (auto r = fill_range(p, 0, p.limit); !r) return r;
      p.filled = true;
    }
    if (fsync_) {
      if (auto r = sys::fsync_fd(p.upper.get()); !r) return r;
    }
    if (::fremovexattr(p.upper.get(), xattr_) != 0 && errno != ENODATA) return last_errno();
    ::unlinkat(dir_.get(), p.reg_name.c_str(), 0);
    p.done = true;
  }
  std::lock_guard<std::mutex> g(mu_);
  auto it = partials_.find(p.upper_ino);
  if (it != partials_.end() && it->second.get() == &p) partials_.erase(it);
  return {};
}

void LazyCopy::worker() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    auto p = queue_.front();
    queue_.pop_front();
    lock.unlock();
    // One chunk at a time, so writers wait for one chunk at most, and only
    // while nobody has written to the file for a moment (or nobody has it
    // open for writing any more: drop_writer wakes this wait).
    auto writing = [&] {
      return !p->filled.load() && (p->writers.load() > 0 || !p->writers_gone.load()) &&
             now_ns() - p->last_write_ns.load() < kQuietNs;
    };
    bool stopped = false;
    for (off_t pos = 0;; pos += kFillChunk) {
      while (writing()) {
        std::unique_lock<std::mutex> w(mu_);
        if (cv_.wait_for(w, std::chrono::milliseconds(50), [&] { return stop_ || !writing(); }))
          break;
      }
      {
        std::lock_guard<std::mutex> g(p->mu);
        if (p->filled.load() || pos >= p->limit) break;
        (void)fill_range(*p, pos, pos + kFillChunk);
      }
      std::lock_guard<std::mutex> g(mu_);
      if (stop_) {
        stopped = true;
        break;
      }
    }
    // Else finish_partials does it, or drop_writer queues it again.
    if (!stopped && p->writers.load() == 0) (void)complete(*p);
    lock.lock();
  }
}

void LazyCopy::add_writer(Partial& p) {
  ++p.writers;
}

void LazyCopy::drop_writer(const std::shared_ptr<Partial>& p) {
  if (--p->writers > 0) return;
  p->writers_gone = true;
  if (p->done.load()) return;
  std::lock_guard<std::mutex> g(mu_);
  if (stop_) return;
  queue_.push_back(p);
  cv_.notify_all();
}

void LazyCopy::finish() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  std::vector<std::shared_ptr<Partial>> left;
  {
    std::lock_guard<std::mutex> g(mu_);
    for (auto& [ino, p] : partials_) left.push_back(p);
    queue_.clear();
  }
  for (auto& p : left) (void)complete(*p);
}

void LazyCopy::recover() {
  auto fd = sys::open_at(dir_.get(), ".", O_RDONLY | O_DIRECTORY);
  if (!fd) return;
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::fdopendir(fd.value().get()), &::closedir);
  if (!dir) return;
  fd.value().release();
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(dir.get())) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  for (const auto& n : names) {
    Partial p;
    p.reg_name = n;
    auto up = sys::open_at(dir_.get(), n.c_str(), O_RDWR | O_NOFOLLOW);
    if (!up) {
      ::unlinkat(dir_.get(), n.c_str(), 0);
      continue;
    }
    p.upper = std::move(up).value();
    char marker[8192];
    ssize_t len = ::fgetxattr(p.upper.get(), xattr_, marker, sizeof(marker));
    std::vector<std::string> parts;
    if (len > 0) {
      std::string m(marker, static_cast<size_t>(len));
      size_t a = m.find('\0'), b = a == std::string::npos ? a : m.find('\0', a + 1);
      if (b != std::string::npos)
        parts = {m.substr(0, a), m.substr(a + 1, b - a - 1), m.substr(b + 1)};
    }
    if (parts.size() == 3) {
      p.limit = std::strtoll(parts[0].c_str(), nullptr, 10);
      auto root = sys::open_at(AT_FDCWD, parts[1].c_str(), O_RDONLY | O_DIRECTORY);
      if (root) {
        auto lower = sys::open_beneath(root.value().get(), parts[2].c_str(), O_RDONLY, 0,
                                       RESOLVE_NO_SYMLINKS);
        if (lower) {
          auto data = store::data_of(std::move(lower).value(), datadir_);
          if (data) p.lower = std::move(data).value();
        }
      }
    }
    if (p.lower.valid()) {
      (void)complete(p);
    } else {
      // The lower file is gone: keep what the upper has, as a plain file.
      ::fremovexattr(p.upper.get(), xattr_);
      ::unlinkat(dir_.get(), n.c_str(), 0);
    }
  }
}

}  // namespace layer::overlay
