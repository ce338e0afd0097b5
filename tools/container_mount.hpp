// mount_container: what `layerctl mount` and `layerctl bundle` share: create a
// container from an image (upper, work, container.json) and serve it at a
// directory with a layerfs daemon; and the undo of that. Single-threaded use
// from a command; the Store is the caller's.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "store/store.hpp"

namespace layer::cli {

// What the daemon does for lazily pulled layers besides fetching on open.
struct LazyFetch {
  // Complete them in the background (-o lazy_fetch_all): mount's default,
  // off with --no-fetch.
  bool background = true;
  // The completion's bytes a second (-o lazy_rate); nullopt: the daemon's
  // default, 0: no limit.
  std::optional<uint64_t> rate;
};

struct MountRequest {
  std::string image;  // ref or config digest, as given
  std::string dir;    // absolute, an existing directory, not a mount point
  std::string name;   // empty: the short id
  bool read_only = false;
  // A mount at a directory host users can reach must not hand them the
  // image's setuid binaries or device nodes: nosuid and nodev unless asked.
  bool suid = false;
  bool dev = false;
  // Serve with the kernel's overlayfs (lowerdir+=, datadir+=objects,
  // metacopy=on) instead of a layerfs daemon. Root only.
  bool kernel = false;
  LazyFetch fetch;
};

// True for a usable container name: letters, digits, '_', '.', '-', at most 64.
bool valid_container_name(const std::string& name);

// Checks the request against the store (image and layers present, the name
// and the directory free) without changing anything. Throws Error.
void check_mount_request(const store::Store& st, const MountRequest& req);

// Creates the container, starts its daemon and returns once the mount answers,
// with rec.pid set. On failure nothing is left behind (no mount, no daemon, no
// record). Throws Error naming the image or the directory.
store::ContainerRecord mount_container(store::Store& st, const MountRequest& req);

// Starts a layerfs daemon for the container `rec` (its upper and work dirs
// exist) at rec.mountpoint and returns once the mount answers, with rec.pid
// set and recorded. On failure no daemon or mount is left and the record is
// untouched; the Error carries the daemon's own message (libfuse's reason).
// `fetch`: for lazily pulled layers, whether the daemon completes them in
// the background too, not only fetching what is opened.
// `while_starting` runs once the daemon is started (rec.pid set), before
// waiting for its mount: it records rec then, and start_daemon does not
// (work that overlaps the daemon's start); if it throws, the daemon is
// stopped and the exception passed on.
void start_daemon(store::Store& st, store::ContainerRecord& rec, const LazyFetch& fetch = {},
                  const std::function<void()>& while_starting = {});

// Unmounts a mounted container (or cleans up after its dead daemon), waits
// for the daemon to exit and records it stopped. Throws Error (EBUSY for a
// busy mount whose daemon lives).
void unmount_container(store::Store& st, store::ContainerRecord& rec);

// Undoes mount_container for a caller that fails afterwards: detaches the
// mount, kills the daemon and removes the container with its upper. Never throws.
void discard_container(store::Store& st, const store::ContainerRecord& rec) noexcept;

}  // namespace layer::cli
