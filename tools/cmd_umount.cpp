// layerctl umount: unmounts a container's mount point and waits for its
// layerfs daemon to exit; cleans up after a daemon that died (ENOTCONN).
#include <cstdio>

#include "command.hpp"
#include "container_mount.hpp"
#include "container_state.hpp"
#include "format.hpp"
#include "store/store.hpp"
#include "util/error.hpp"

namespace layer::cli {
namespace {

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
    if (c.engine == store::kEngineKernel ? mount_type_at(c.mountpoint) != "overlay"
                                         : c.pid == 0 && mount_type_at(c.mountpoint) != "fuse.layerfs")
      throw Error("'" + arg + "': container " + c.name + " is not mounted");
    unmount_container(st, c);
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
    "'layerctl start NAME' mounts the container again. A container mounted with\n"
    "'layerctl mount --kernel' is unmounted the same way.\n",
    run_umount,
});

}  // namespace
}  // namespace layer::cli
