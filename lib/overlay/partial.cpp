// Overlay: lazy copy-up of big regular files. The copy-up itself creates the
// upper file with the lower's size and no data, marked with the partial
// xattr and linked into workdir/layerfs-partial; reads take the upper's data
// blocks and the lower's bytes for the upper's holes; a background thread
// fills the holes from the lower file; unmount (and, after a crash, the next
// mount) finishes whatever is left, so an upper directory at rest is always
// in the plain overlay format.
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <dirent.h>
#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <vector>

#include "overlay/overlay.hpp"
#include "util/xattr_path.hpp"
#include "util/sys.hpp"

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

std::string Overlay::path_of(Node* n) {
  std::vector<std::string> parts;
  {
    std::lock_guard<std::mutex> g(tree_mu_);
    for (Node* c = n; c && c != root_; c = c->parent) parts.push_back(c->name);
  }
  std::string out;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    if (!out.empty()) out += '/';
    out += *it;
  }
  return out;
}

std::shared_ptr<Partial> Overlay::partial_of(Node* n) {
  if (n->type != S_IFREG) return nullptr;
  std::lock_guard<std::mutex> g(n->mu);
  if (n->partial && n->partial->done.load()) n->partial.reset();
  return n->partial;
}

std::shared_ptr<Partial> Overlay::unfilled_of(Node* n) {
  auto p = partial_of(n);
  return p && !p->filled.load() ? p : nullptr;
}

void Overlay::attach_partial(Node* n, const struct stat& st) {
  std::lock_guard<std::mutex> g(partial_mu_);
  if (partials_.empty()) return;
  auto it = partials_.find(st.st_ino);
  if (it == partials_.end() || it->second->done.load()) return;
  std::lock_guard<std::mutex> ng(n->mu);
  n->partial = it->second;
}

// Copies the lower file's data (not its holes) in [from, to) into the
// upper's holes there. REQUIRES: p.mu held.
Result<void> Overlay::fill_range(Partial& p, off_t from, off_t to) {
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

Result<void> Overlay::lower_limit(Partial& p, off_t size) {
  if (size >= p.limit || p.done.load()) return {};
  p.limit = size;
  std::string m = p.marker;
  m.replace(0, m.find('\0'), std::to_string(size));
  p.marker = m;
  if (::fsetxattr(p.upper.get(), partial_xattr_.c_str(), m.data(), m.size(), 0) != 0)
    return last_errno();
  return {};
}

Result<size_t> Overlay::read_partial(Partial& p, char* buf, size_t size, off_t off) {
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
      while (got < want) {
        ssize_t n = sys::retry_eintr(
            [&] { return ::pread(src, out + got, want - got, pos + static_cast<off_t>(got)); });
        if (n < 0) return last_errno();
        if (n == 0) break;
        got += static_cast<size_t>(n);
      }
    }
    std::memset(out + got, 0, want - got);
    pos = seg_end;
  }
  return static_cast<size_t>(end - off);
}

Result<std::unique_lock<std::mutex>> Overlay::begin_write(Partial& p, off_t off, size_t size) {
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

Result<void> Overlay::fill(Partial& p) {
  {
    std::lock_guard<std::mutex> g(p.mu);
    if (p.filled.load()) return {};
    if (auto r = fill_range(p, 0, p.limit); !r) return r;
    p.filled = true;
  }
  std::lock_guard<std::mutex> g(partial_mu_);
  partial_cv_.notify_all();  // the worker need not wait for writes to pause
  return {};
}

Result<void> Overlay::complete(Partial& p) {
  {
    std::lock_guard<std::mutex> g(p.mu);
    if (p.done.load()) return {};
    if (!p.filled.load()) {
      if (auto r = fill_range(p, 0, p.limit); !r) return r;
      p.filled = true;
    }
    if (opts_.fsync) {
      if (auto r = sys::fsync_fd(p.upper.get()); !r) return r;
    }
    if (::fremovexattr(p.upper.get(), partial_xattr_.c_str()) != 0 && errno != ENODATA)
      return last_errno();
    ::unlinkat(partial_dir_.get(), p.reg_name.c_str(), 0);
    p.done = true;
  }
  std::lock_guard<std::mutex> g(partial_mu_);
  auto it = partials_.find(p.upper_ino);
  if (it != partials_.end() && it->second.get() == &p) partials_.erase(it);
  return {};
}

void Overlay::partial_worker() {
  std::unique_lock<std::mutex> lock(partial_mu_);
  for (;;) {
    partial_cv_.wait(lock, [&] { return stop_ || !partial_queue_.empty(); });
    if (stop_) return;
    auto p = partial_queue_.front();
    partial_queue_.pop_front();
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
        std::unique_lock<std::mutex> w(partial_mu_);
        if (partial_cv_.wait_for(w, std::chrono::milliseconds(50), [&] { return stop_ || !writing(); }))
          break;
      }
      {
        std::lock_guard<std::mutex> g(p->mu);
        if (p->filled.load() || pos >= p->limit) break;
        (void)fill_range(*p, pos, pos + kFillChunk);
      }
      std::lock_guard<std::mutex> g(partial_mu_);
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

void Overlay::add_writer(Partial& p) {
  ++p.writers;
}

void Overlay::drop_writer(const std::shared_ptr<Partial>& p) {
  if (--p->writers > 0) return;
  p->writers_gone = true;
  if (p->done.load()) return;
  std::lock_guard<std::mutex> g(partial_mu_);
  if (stop_) return;
  partial_queue_.push_back(p);
  partial_cv_.notify_all();
}

void Overlay::finish_partials() {
  {
    std::lock_guard<std::mutex> g(partial_mu_);
    stop_ = true;
    partial_cv_.notify_all();
  }
  if (partial_thread_.joinable()) partial_thread_.join();
  std::vector<std::shared_ptr<Partial>> left;
  {
    std::lock_guard<std::mutex> g(partial_mu_);
    for (auto& [ino, p] : partials_) left.push_back(p);
    partial_queue_.clear();
  }
  for (auto& p : left) (void)complete(*p);
}

void Overlay::recover_partials() {
  auto fd = sys::open_at(partial_dir_.get(), ".", O_RDONLY | O_DIRECTORY);
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
    auto up = sys::open_at(partial_dir_.get(), n.c_str(), O_RDWR | O_NOFOLLOW);
    if (!up) {
      ::unlinkat(partial_dir_.get(), n.c_str(), 0);
      continue;
    }
    p.upper = std::move(up).value();
    char marker[8192];
    ssize_t len = ::fgetxattr(p.upper.get(), partial_xattr_.c_str(), marker, sizeof(marker));
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
          auto data = lower_data(std::move(lower).value());
          if (data) p.lower = std::move(data).value();
        }
      }
    }
    if (p.lower.valid()) {
      (void)complete(p);
    } else {
      // The lower file is gone: keep what the upper has, as a plain file.
      ::fremovexattr(p.upper.get(), partial_xattr_.c_str());
      ::unlinkat(partial_dir_.get(), n.c_str(), 0);
    }
  }
}

}  // namespace layer::overlay
