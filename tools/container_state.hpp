// ContainerState: what `layerctl ps/umount/rm` know about a container's mount
// beyond its container.json: whether its mount point is mounted, whether its
// layerfs daemon lives, and the helpers to find the daemon binary and mount
// table entries. Stateless functions over /proc; thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "store/store.hpp"

namespace layer::cli {

enum class ContainerState { Mounted, Stopped, DaemonDead };

// Mounted: the recorded daemon runs and serves the mount point. DaemonDead:
// a daemon was recorded but is gone (or the mount is gone under it).
// Stopped: no daemon recorded. A kernel-engine container is Mounted while
// an overlay mount is at its mount point, else Stopped.
ContainerState container_state(const store::ContainerRecord& c);
const char* state_name(ContainerState s);  // "mounted", "stopped", "daemon dead"

// The file system type mounted exactly at `path` ("fuse.layerfs"), or ""
// when nothing is mounted there. Reads /proc/self/mountinfo.
std::string mount_type_at(const std::string& path);

// True when `pid` is a live layerfs process serving `mountpoint`.
bool daemon_alive(int pid, const std::string& mountpoint);

// An absolute path without ".", ".." or repeated slashes, resolved through
// symlinks where possible; lexical for a dead FUSE mount (stat: ENOTCONN).
std::string absolute_path(const std::string& path);

// The layerfs daemon to spawn: $LAYERFS, else `layerfs` beside layerctl (or in
// the build tree's fuse/), else "layerfs" from PATH.
std::string layerfs_binary();

// Bytes of file data below dirfd/name (symlinks not followed).
uint64_t tree_bytes(int dirfd, const std::string& name);

}  // namespace layer::cli
