// LazyCopy: lazy copy-up of big regular files. The copy-up itself creates
// the upper file with the lower's size and no data, marked with the partial
// xattr and linked into workdir/layerfs-partial; reads take the upper's data
// blocks and the lower's bytes for the upper's holes; a background thread
// fills the holes from the lower file; unmount (and, after a crash, the next
// mount) finishes whatever is left, so an upper directory at rest is always
// in the plain overlay format.
//
// Thread-safe. mu_ guards partials_, queue_ and stop_; each Partial's mu is
// held across every write, fill step and truncation of that file, with no
// other overlay mutex held (lock order: overlay.hpp).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "overlay/node.hpp"
#include "util/result.hpp"
#include "util/thread_annotations.hpp"
#include "util/unique_fd.hpp"

namespace layer::overlay {

// A copied-up regular file whose data is still partly in its lower file:
// the upper file has the lower's size, and its holes below `limit` read from
// the lower file until a background fill (or unmount, or the next mount
// after a crash) copies them. Blocks are data in the upper file exactly when
// they are the file's own, because writes first fill the blocks they touch.
struct Partial {
  std::mutex mu;    // held across every write, fill step and truncation
  UniqueFd lower;   // read-only
  UniqueFd upper;   // read-write
  off_t limit = 0;  // guarded by mu: lower data at or past it is not the file's
  // Written under mu. filled: all of the lower's data is in the upper file,
  // only its fsync and the marker's removal are left; done: those too.
  std::atomic<bool> filled{false};
  std::atomic<bool> done{false};
  ino_t upper_ino = 0;
  std::string reg_name;                   // its entry in workdir/layerfs-partial
  std::string marker;                     // the partial xattr: limit, NUL, lowerdir, NUL, path
  std::atomic<int64_t> last_write_ns{0};  // CLOCK_MONOTONIC of the last write
  // Opens that may write (see LazyCopy::add_writer): the background thread
  // leaves the fsync and the marker's removal until the last one closes, so
  // that writing a filled file back does not stall its writers.
  std::atomic<int> writers{0};
  // The last of them has closed: the background fill need not wait for
  // writes to pause. Not before: the open that made the copy-up is counted
  // only after it, and its first write comes next.
  std::atomic<bool> writers_gone{false};
};

class LazyCopy {
 public:
  // Files at least this big are copied up lazily.
  static constexpr off_t kMinSize = 1 << 20;

  // `dir`: workdir/layerfs-partial, invalid for a read-only mount (then
  // nothing is lazy). `xattr`: the partial marker's name. `datadir`: the
  // store's objects/ (-o datadir) or -1; recovery reads a lower
  // metadata-only entry's data from its object.
  LazyCopy(UniqueFd dir, const char* xattr, bool fsync, int datadir)
      : dir_(std::move(dir)), xattr_(xattr), fsync_(fsync), datadir_(datadir) {}
  ~LazyCopy() { finish(); }
  LazyCopy(const LazyCopy&) = delete;
  LazyCopy& operator=(const LazyCopy&) = delete;

  bool enabled() const { return dir_.valid(); }
  // Cold path, at mount: completes what a crash left.
  void recover();

  // Copy-up, step by step. The Partial for a copy whose data stays in
  // `lower` (`size` bytes); `marker` names the lower for recovery.
  std::shared_ptr<Partial> make(UniqueFd lower, off_t size, std::string marker);
  // The work copy (wfd, tn), open as `data`, is marked and registered
  // before it becomes visible: a crash from here on leaves a file the next
  // mount completes.
  Result<void> mark(int wfd, const char* tn, int data, Partial& p);
  void unmark(Partial& p);  // the copy-up failed after mark
  // Published as n's data: reads and writes go through it; queued for the
  // background fill.
  void publish(Node* n, const std::shared_ptr<Partial>& p) EXCLUDES(mu_);
  // On lookup of an upper file with several links: attaches the partial
  // state of the file if it has any. Returns whether its only other link is
  // its registration (it is not really shared).
  bool attach(Node* n, const struct stat& upper_st) EXCLUDES(mu_);

  std::shared_ptr<Partial> partial_of(Node* n);   // until complete (durable)
  std::shared_ptr<Partial> unfilled_of(Node* n);  // until all data is in the upper

  // The upper's data blocks and the lower's bytes for its holes.
  Result<size_t> read(Partial& p, char* buf, size_t size, off_t off);
  // Fills the blocks a write of [off, off+size) only partly covers and
  // returns p's lock, to be held across the write.
  Result<std::unique_lock<std::mutex>> begin_write(Partial& p, off_t off, size_t size);
  // Copies the rest of the lower's data now, in the kernel; the fsync and the
  // marker's removal are left to the background thread. Until then a crash
  // leaves it partial, and recovery fills its holes again from the lower.
  Result<void> fill(Partial& p) EXCLUDES(mu_);
  // fill, fsync, marker removed: from here on a plain upper file, also after a
  // crash. Needed before anything that makes holes in the file.
  Result<void> complete(Partial& p) EXCLUDES(mu_);
  // The file is cut to `size`: lower bytes past it are not its own any more,
  // even if it grows again (memory and marker); `and_truncate`: the upper
  // file is truncated too (else the caller's O_TRUNC open does it).
  Result<void> cut(Partial& p, off_t size, bool and_truncate);
  // An open that may write p (counted until drop_writer): the background
  // thread completes p only once no such open is left.
  void add_writer(Partial& p);
  void drop_writer(const std::shared_ptr<Partial>& p) EXCLUDES(mu_);

  // Starts the thread that fills partial files (after any fork: a daemon
  // calls it once it runs in the background). Without it they are completed
  // by complete() or by finish().
  void start() EXCLUDES(mu_);
  // Stops the thread and completes every partial file (unmount).
  void finish() EXCLUDES(mu_);

 private:
  Result<void> fill_range(Partial& p, off_t from, off_t to);  // REQUIRES: p.mu held
  Result<void> lower_limit(Partial& p, off_t size);           // REQUIRES: p.mu held
  void worker() EXCLUDES(mu_);

  const UniqueFd dir_;
  const char* const xattr_;
  const bool fsync_;
  const int datadir_;  // not owned
  std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<ino_t, std::shared_ptr<Partial>> partials_ GUARDED_BY(mu_);  // by upper inode
  std::deque<std::shared_ptr<Partial>> queue_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_;  // started and joined under mu_'s protocol (start/finish)
};

}  // namespace layer::overlay
