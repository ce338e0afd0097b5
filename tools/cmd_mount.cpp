// layerctl mount: creates a container from an image (upper, work,
// container.json) and serves it at a directory with a layerfs daemon.
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "command.hpp"
#include "container_mount.hpp"
#include "container_state.hpp"
#include "format.hpp"
#include "store/store.hpp"
#include "util/error.hpp"

namespace layer::cli {
namespace {

int run_mount(Globals& g, std::vector<std::string>& args) {
  auto opts = parse_options(
      args, {{"name", true}, {"read-only", false}, {"suid", false}, {"dev", false}, {"kernel", false},
             {"fetch-all", false}, {"no-fetch", false}, {"fetch-rate", true}},
      g);
  if (args.size() != 2) throw UsageError("wants IMAGE and DIR (see 'layerctl mount --help')");
  const std::string image = args[0];
  const std::string dir = absolute_path(args[1]);
  const bool read_only = opts.count("read-only") > 0;
  std::string name = opts.count("name") ? opts["name"] : "";
  if (!name.empty() && !valid_container_name(name))
    throw UsageError("bad --name '" + name + "' (letters, digits, '_', '.', '-'; at most 64)");

  // --fetch-all: the default now, accepted as before.
  LazyFetch fetch;
  fetch.background = opts.count("no-fetch") == 0;
  if (opts.count("no-fetch") && (opts.count("fetch-all") || opts.count("fetch-rate")))
    throw UsageError("--no-fetch with --fetch-all or --fetch-rate");
  if (opts.count("fetch-rate")) fetch.rate = parse_size("--fetch-rate", opts["fetch-rate"], true);

  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) throw Error("'" + args[1] + "'", errno);
  if (!S_ISDIR(st.st_mode)) throw Error("'" + args[1] + "'", ENOTDIR);

  store::Store store = store::Store::open(g.root, store::LockMode::Shared);
  MountRequest req{image, dir, name, read_only};
  req.suid = opts.count("suid") > 0;
  req.dev = opts.count("dev") > 0;
  req.kernel = opts.count("kernel") > 0;
  req.fetch = fetch;
  store::ContainerRecord rec = mount_container(store, req);
  const pid_t pid = rec.pid;
  if (g.json) {
    nlohmann::json j = {{"id", rec.id},      {"name", rec.name}, {"image", rec.image},
                        {"mountpoint", dir}, {"pid", pid},       {"read_only", read_only}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("%s\n", rec.id.c_str());
  }
  return 0;
}

const Command::Register kRegister({
    "mount",
    "create a container from an image and mount it at a directory",
    "Usage: layerctl mount IMAGE DIR [--name NAME] [--read-only] [--suid] [--dev] [--kernel]\n"
    "                    [--no-fetch | --fetch-rate RATE]\n"
    "\n"
    "Creates a container from IMAGE (its own copy-on-write upper directory in the\n"
    "store) and serves the image's layers under it at DIR with a layerfs daemon.\n"
    "Returns once the mount answers and prints the container id.\n"
    "\n"
    "  --name NAME    a name for the container (default: its short id)\n"
    "  --read-only    no upper: the mount refuses every write\n"
    "  --suid         honour the image's setuid/setgid bits (default: nosuid)\n"
    "  --dev          open the image's device nodes as devices (default: nodev)\n"
    "  --kernel       serve it with the kernel's overlayfs instead of layerfs, over the\n"
    "                 same layers and content objects (root, Linux 6.5+: data-only\n"
    "                 lower layers); umount, ps, rm and commit work the same\n"
    "  --no-fetch     for an image pulled with --lazy: fetch only the files that are\n"
    "                 opened. By default the daemon also completes the image in the\n"
    "                 background: first what earlier mounts of it opened first, then\n"
    "                 the eStargz landmark, then each whole layer, verified as a\n"
    "                 pull does, after which the layer is an ordinary one\n"
    "  --fetch-rate RATE  the background completion's bytes a second (K, M, G:\n"
    "                 KiB, MiB, GiB; default 64M; 0: no limit); opens always go first\n"
    "  --fetch-all    the default (accepted for scripts written before it was)\n"
    "  --json         print id, name, image, mount point and daemon pid as JSON\n"
    "\n"
    "Any host user who can reach DIR can use the mount: by default it is nosuid\n"
    "and nodev, so the image's setuid binaries do not run with their owner's ids\n"
    "and its device nodes do not open host devices. Give --suid or --dev only for\n"
    "a DIR that only root can reach.\n"
    "\n"
    "The daemon logs to containers/<id>/layerfs.log in the store; if it cannot\n"
    "mount, its own reason is in the error and nothing is kept. Each mount makes a\n"
    "new container: 'layerctl start NAME [DIR]' mounts a stopped one again. See\n"
    "also 'layerctl umount', 'layerctl ps', 'layerctl rm', 'layerctl run'.\n",
    run_mount,
});

}  // namespace
}  // namespace layer::cli
