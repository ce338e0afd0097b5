// layerctl rm: removes stopped containers and their upper directories.
#include <cstdio>

#include "command.hpp"
#include "container_state.hpp"
#include "format.hpp"
#include "store/store.hpp"
#include "util/error.hpp"

namespace layer::cli {
namespace {

int run_rm(Globals& g, std::vector<std::string>& args) {
  parse_options(args, {}, g);
  if (args.empty()) throw UsageError("wants at least one container (see 'layerctl rm --help')");
  store::Store st = store::Store::open(g.root, store::LockMode::Shared);
  for (const auto& name : args) {
    auto c = st.find_container(name);
    if (!c) throw Error("'" + name + "': no such container");
    ContainerState s = container_state(*c);
    if (s == ContainerState::Mounted)
      throw Error("'" + name + "': mounted at " + c->mountpoint + " (run 'layerctl umount' first)");
    if (s == ContainerState::DaemonDead)
      throw Error("'" + name + "': its daemon died but it is still recorded as mounted at " +
                  c->mountpoint + " (run 'layerctl umount' first)");
    st.remove_container(c->id);
    if (!g.quiet) std::printf("%s\n", c->name.c_str());
  }
  return 0;
}

const Command::Register kRegister({
    "rm",
    "remove stopped containers",
    "Usage: layerctl rm NAME [NAME...]\n"
    "\n"
    "Removes each container (by name or id) and its upper directory: every change\n"
    "made in it is lost. Refuses a container that is mounted.\n",
    run_rm,
});

}  // namespace
}  // namespace layer::cli
