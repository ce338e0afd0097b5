// layerctl start: mounts a stopped container again, with its upper directory
// as it was left, at its old mount point or a new one.
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "command.hpp"
#include "container_mount.hpp"
#include "container_state.hpp"
#include "store/store.hpp"
#include "util/error.hpp"

namespace layer::cli {
namespace {

int run_start(Globals& g, std::vector<std::string>& args) {
  parse_options(args, {}, g);
  if (args.empty() || args.size() > 2)
    throw UsageError("wants CONTAINER and optionally DIR (see 'layerctl start --help')");
  store::Store st = store::Store::open(g.root, store::LockMode::Shared);
  auto c = st.find_container(args[0]);
  if (!c) throw Error("'" + args[0] + "': no such container");
  switch (container_state(*c)) {
    case ContainerState::Mounted:
      throw Error("'" + args[0] + "': already mounted at " + c->mountpoint);
    case ContainerState::DaemonDead:
      throw Error("'" + args[0] + "': its daemon died but it is still recorded as mounted at " +
                  c->mountpoint + " (run 'layerctl umount' first)");
    case ContainerState::Stopped:
      break;
  }
  const std::string dir = args.size() == 2 ? absolute_path(args[1]) : c->mountpoint;
  struct stat sb {};
  if (::stat(dir.c_str(), &sb) != 0) {
    if (errno == ENOENT && args.size() == 1)
      throw Error("'" + args[0] + "': its mount point " + dir + " is gone; give a DIR");
    throw Error("'" + dir + "'", errno);
  }
  if (!S_ISDIR(sb.st_mode)) throw Error("'" + dir + "'", ENOTDIR);
  if (std::string t = mount_type_at(dir); !t.empty())
    throw Error("'" + dir + "': already a mount point (" + t + ")");
  for (const auto& other : st.containers())
    if (other.id != c->id && other.mountpoint == dir &&
        container_state(other) != ContainerState::Stopped)
      throw Error("'" + dir + "': container " + other.name + " is mounted there");
  for (const auto& d : c->diff_ids)
    if (!st.has_layer(d))
      throw Error("'" + args[0] + "': layer " + d.str() + " of its image is gone from the store");

  store::ContainerRecord rec = *c;
  rec.mountpoint = dir;
  start_daemon(st, rec);
  if (g.json) {
    nlohmann::json j = {{"id", rec.id},       {"name", rec.name}, {"image", rec.image},
                        {"mountpoint", dir},  {"pid", rec.pid},   {"read_only", rec.read_only}};
    std::printf("%s\n", j.dump(2).c_str());
  } else if (!g.quiet) {
    std::printf("%s\n", rec.name.c_str());
  }
  return 0;
}

const Command::Register kRegister({
    "start",
    "mount a stopped container again",
    "Usage: layerctl start CONTAINER [DIR]\n"
    "\n"
    "Serves a stopped container (one 'layerctl umount' stopped, or 'layerctl run'\n"
    "without --rm left) again with a layerfs daemon: its image's layers under its\n"
    "own upper directory, with every change made in it so far. DIR defaults to\n"
    "the mount point it had; it must be an existing directory that is not a\n"
    "mount point. Prints the container's name.\n"
    "\n"
    "  --json         print id, name, image, mount point and daemon pid as JSON\n"
    "\n"
    "See also 'layerctl umount', 'layerctl ps', 'layerctl rm'.\n",
    run_start,
});

}  // namespace
}  // namespace layer::cli
