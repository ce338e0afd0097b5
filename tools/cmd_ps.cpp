// layerctl ps: lists containers with their image, mount point, state and
// upper size.
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "command.hpp"
#include "container_state.hpp"
#include "format.hpp"
#include "store/layout.hpp"
#include "store/store.hpp"

namespace layer::cli {
namespace {

int run_ps(Globals& g, std::vector<std::string>& args) {
  parse_options(args, {}, g);
  if (!args.empty()) throw UsageError("takes no arguments");
  store::Store st = store::Store::open(g.root, store::LockMode::Shared);
  auto cs = st.containers();
  std::sort(cs.begin(), cs.end(), [](const auto& a, const auto& b) {
    return a.created != b.created ? a.created < b.created : a.id < b.id;
  });
  if (g.quiet) {
    for (const auto& c : cs) std::printf("%s\n", c.id.c_str());
    return 0;
  }
  nlohmann::json out = nlohmann::json::array();
  std::vector<std::vector<std::string>> rows{
      {"ID", "NAME", "IMAGE", "MOUNTPOINT", "STATE", "UPPER", "CREATED"}};
  for (const auto& c : cs) {
    ContainerState s = container_state(c);
    uint64_t upper = tree_bytes(st.root_fd(), store::Layout::container_upper(c.id));
    if (g.json) {
      out.push_back({{"id", c.id},
                     {"name", c.name},
                     {"image", c.image},
                     {"mountpoint", c.mountpoint},
                     {"state", state_name(s)},
                     {"pid", s == ContainerState::Stopped ? 0 : c.pid},
                     {"read_only", c.read_only},
                     {"engine", c.engine},
                     {"upper_size", upper},
                     {"created", c.created}});
    } else {
      std::string state = state_name(s);
      if (c.engine == store::kEngineKernel) state += " (kernel)";
      rows.push_back({short_id(c.id), c.name, c.image, c.mountpoint, state,
                      c.read_only ? "-" : human_bytes(upper), c.created});
    }
  }
  if (g.json)
    std::printf("%s\n", out.dump(2).c_str());
  else
    print_table(rows);
  return 0;
}

const Command::Register kRegister({
    "ps",
    "list containers",
    "Usage: layerctl ps [--json] [-q]\n"
    "\n"
    "Lists the containers in the store: id, name, image, mount point, state\n"
    "(mounted, stopped, or daemon dead: the layerfs daemon is gone, see\n"
    "'layerctl umount'), bytes of data in the upper directory, creation time.\n"
    "  --json   one object per container\n"
    "  -q       ids only\n",
    run_ps,
});

}  // namespace
}  // namespace layer::cli
