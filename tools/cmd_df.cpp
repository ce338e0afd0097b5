// layerctl df: where the store's disk space goes, and what sharing saves.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "command.hpp"
#include "format.hpp"
#include "store/store.hpp"
#include "store/store_usage.hpp"

namespace layer::cli {
namespace {

int run_df(Globals& g, std::vector<std::string>& args) {
  parse_options(args, {}, g);
  if (!args.empty()) throw UsageError("takes no arguments");
  store::Store st = store::Store::open(g.root, store::LockMode::Shared);
  store::StoreUsage u = store::StoreUsage::measure(st);
  if (g.json) {
    using nlohmann::json;
    json layers = json::array(), images = json::array(), containers = json::array();
    for (const auto& l : u.layers)
      layers.push_back({{"diff_id", l.diff_id.str()},
                        {"bytes", l.bytes},
                        {"images", l.images},
                        {"containers", l.containers}});
    for (const auto& i : u.images)
      images.push_back({{"name", i.ref}, {"shared", i.shared}, {"own", i.own}});
    for (const auto& c : u.containers)
      containers.push_back({{"id", c.id},
                            {"name", c.name},
                            {"image", c.image},
                            {"shared", c.shared},
                            {"own", c.own}});
    json out{{"total", u.total},
             {"layers_bytes", u.layer_bytes},
             {"blobs_bytes", u.blob_bytes},
             {"containers_bytes", u.container_bytes},
             {"other_bytes", u.other_bytes},
             {"objects_bytes", u.object_bytes},
             {"object_entries_bytes", u.object_entry_bytes},
             {"unshared", u.unshared},
             {"saved", u.saved},
             {"layers", layers},
             {"images", images},
             {"containers", containers}};
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  if (!g.quiet) {
    std::vector<std::vector<std::string>> rows{{"IMAGE", "SHARED", "OWN"}};
    for (const auto& i : u.images)
      rows.push_back({i.ref, human_bytes(i.shared), human_bytes(i.own)});
    print_table(rows);
    if (!u.containers.empty()) {
      std::printf("\n");
      std::vector<std::vector<std::string>> crows{{"CONTAINER", "NAME", "IMAGE", "SHARED", "OWN"}};
      for (const auto& c : u.containers)
        crows.push_back({short_id(c.id), c.name.empty() ? "-" : c.name, c.image,
                         human_bytes(c.shared), human_bytes(c.own)});
      print_table(crows);
    }
    std::printf("\n");
  }
  std::printf("Store: %s (layers %s, objects %s, blobs %s, containers %s, other %s)\n",
              human_bytes(u.total).c_str(), human_bytes(u.layer_bytes).c_str(),
              human_bytes(u.object_bytes).c_str(),
              human_bytes(u.blob_bytes).c_str(), human_bytes(u.container_bytes).c_str(),
              human_bytes(u.other_bytes).c_str());
  if (u.object_entry_bytes > 0)
    std::printf("Content objects: %s on disk for %s of file data in layers (file sharing saves %s)\n",
                human_bytes(u.object_bytes).c_str(), human_bytes(u.object_entry_bytes).c_str(),
                human_bytes(u.object_entry_bytes > u.object_bytes
                                ? u.object_entry_bytes - u.object_bytes
                                : 0)
                    .c_str());
  std::printf("Every image unpacked on its own: %s; sharing saves %s\n",
              human_bytes(u.unshared).c_str(), human_bytes(u.saved).c_str());
  return 0;
}

const Command::Register kRegister({
    "df",
    "show the store's disk usage: shared and own bytes per image and container",
    "Usage: layerctl df [--json] [-q]\n"
    "\n"
    "Per image: SHARED, the bytes of its layers and content objects that another\n"
    "image uses too, and OWN, the bytes of the layers and objects only it uses.\n"
    "Per container: SHARED, the layers of its image; OWN, its directory (upper,\n"
    "work, records) and any layer only it still references. Then the store's\n"
    "total size, split into layers, content objects, blobs, containers and the\n"
    "rest (tmp/, quarantine/, records); what the content objects hold against the\n"
    "file data the layers name (each file's content once, across all images);\n"
    "and how much sharing saves against unpacking every image on its own.\n"
    "Bytes are disk blocks (st_blocks * 512, as du counts them), every hardlinked\n"
    "inode once. --json prints every figure in bytes, and each layer's users.\n",
    run_df,
});

}  // namespace
}  // namespace layer::cli
