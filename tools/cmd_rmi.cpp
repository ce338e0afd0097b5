// layerctl rmi: removes images, then the layers and blobs nothing uses.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "command.hpp"
#include "store/store.hpp"
#include "util/error.hpp"

namespace layer::cli {
namespace {

int run_rmi(Globals& g, std::vector<std::string>& args) {
  parse_options(args, {}, g);
  if (args.empty()) throw UsageError("wants at least one image (see 'layerctl rmi --help')");
  store::Store st = store::Store::open(g.root, store::LockMode::Exclusive);
  nlohmann::json out = nlohmann::json::array();
  for (const auto& name : args) {
    auto img = st.find_image(name);
    if (!img) throw Error("'" + name + "': no such image");
    std::vector<Digest> removed;
    try {
      removed = st.remove_image(name);
    } catch (const Error& e) {
      std::string line = e.line();
      if (line.find("'" + name + "'") != std::string::npos) throw;
      throw Error("'" + name + "': " + line);
    }
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& d : removed) layers.push_back(d.str());
    out.push_back({{"name", img->ref}, {"id", img->config.str()}, {"removed_layers", layers}});
    if (g.json) continue;
    if (g.quiet) {
      std::printf("%s\n", img->ref.c_str());
      continue;
    }
    std::printf("Untagged: %s\n", img->ref.c_str());
    for (const auto& d : removed) std::printf("Deleted layer: %s\n", d.str().c_str());
    if (removed.empty()) std::printf("(every layer is still used by another image)\n");
  }
  if (g.json) std::printf("%s\n", out.dump(2).c_str());
  return 0;
}

const Command::Register kRegister({
    "rmi",
    "remove images, and the layers no image or container uses",
    "Usage: layerctl rmi IMAGE [IMAGE...]\n"
    "\n"
    "Removes each image record (IMAGE: a name as `layerctl images` shows it, or an\n"
    "id of at least 12 hex digits), then every layer and blob that no image or\n"
    "container references. Refuses an image a container uses. Takes the store's\n"
    "exclusive lock, so it waits for running pulls.\n",
    run_rmi,
});

}  // namespace
}  // namespace layer::cli
