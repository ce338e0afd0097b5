// layerctl umount: unmounts a container's mount point and waits for its
// layerfs daemon to exit; cleans up after a daemon that died (ENOTCONN).
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "command.hpp"
#include "container_state.hpp"
#include "format.hpp"
#include "store/store.hpp"
#include "util/error.hpp"

namespace layer::cli {
namespace {

constexpr auto kExitTimeout = std::chrono::seconds(30);

store::ContainerRecord find_by_dir_or_name(const store::Store& st, const std::string& arg) {
  std::string dir = absolute_path(arg);
  auto mounted = [](const store::ContainerRecord& c) {
    return c.pid != 0 || c.engine == store::kEngineKernel;
  };
  for (const auto& c : st.containers())
    if (c.mountpoint == dir && mounted(c)) return c;
  // A bundle's directory (layerctl bundle mounts at DIR/rootfs).
  for (const auto& c : st.containers())
    if (c.mountpoint == dir + "/rootfs" && mounted(c)) return c;
  if (arg.find('/') == std::string::npos) {
    if (auto c = st.find_container(arg)) return *c;
  }
  throw Error("'" + arg + "': no mounted container there");
}

int run_umount(Globals& g, std::vector<std::string>& args) {
  parse_options(args, {}, g);
  if (args.empty()) throw UsageError("wants a mount point (see 'layerctl umount --help')");
  store::Store st = store::Store::open(g.root, store::LockMode::Shared);
  for (const auto& arg : args) {
    store::ContainerRecord c = find_by_dir_or_name(st, arg);
    const std::string& mp = c.mountpoint;
    if (c.engine == store::kEngineKernel) {
      if (mount_type_at(mp) != "overlay")
        throw Error("'" + arg + "': container " + c.name + " is not mounted");
      if (::umount2(mp.c_str(), 0) != 0) throw Error("unmount '" + mp + "'", errno);
      if (!g.quiet) std::printf("%s\n", c.name.c_str());
      continue;
    }
    bool alive = daemon_alive(c.pid, mp);
    if (c.pid == 0 && mount_type_at(mp) != "fuse.layerfs")
      throw Error("'" + arg + "': container " + c.name + " is not mounted");
    // Unmount every layerfs mount stacked at mp (normally one).
    while (mount_type_at(mp) == "fuse.layerfs") {
      if (::umount2(mp.c_str(), 0) == 0) continue;
      int err = errno;
      if (err == EBUSY && alive) throw Error("'" + mp + "'", EBUSY);
      // A dead daemon's mount (ENOTCONN for every access) or a busy one
      // whose daemon is gone: detach it lazily.
      if (::umount2(mp.c_str(), MNT_DETACH) != 0) throw Error("unmount '" + mp + "'", errno);
    }
    auto deadline = std::chrono::steady_clock::now() + kExitTimeout;
    while (daemon_alive(c.pid, mp)) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(c.pid, SIGKILL);
        throw Error("'" + mp + "': layerfs (pid " + std::to_string(c.pid) +
                    ") did not exit after the unmount; killed it");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    c.pid = 0;
    st.put_container(c);
    if (!g.quiet) std::printf("%s\n", c.name.c_str());
  }
  return 0;
}

const Command::Register kRegister({
    "umount",
    "unmount a container and stop its layerfs daemon",
    "Usage: layerctl umount DIR [DIR...]\n"
    "\n"
    "Unmounts the container mounted at DIR (or named DIR), waits for its layerfs\n"
    "daemon to exit and marks the container stopped; its upper directory stays\n"
    "(see 'layerctl rm'). A mount whose daemon died (every access fails with\n"
    "ENOTCONN) is detached and cleaned up the same way. Refuses a busy mount.\n"
    "A container mounted with 'layerctl mount --kernel' is unmounted the same way.\n",
    run_umount,
});

}  // namespace
}  // namespace layer::cli
