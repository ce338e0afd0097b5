// layerctl inspect: an image's manifest, config and layers, with how many
// images share each layer.
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "command.hpp"
#include "format.hpp"
#include "oci/image.hpp"
#include "store/store.hpp"
#include "util/error.hpp"

namespace layer::cli {
namespace {

using json = nlohmann::json;

int run_inspect(Globals& g, std::vector<std::string>& args) {
  parse_options(args, {}, g);
  if (args.size() != 1) throw UsageError("wants one image (see 'layerctl inspect --help')");
  const std::string name = args[0];
  store::Store st = store::Store::open(g.root, store::LockMode::Shared);
  auto img = st.find_image(name);
  if (!img) throw Error("'" + name + "': no such image");

  auto blob = [&](const Digest& d, const char* what) {
    auto b = st.read_blob(d, oci::kMaxDocumentBytes);
    if (!b) throw Error("'" + name + "': " + what + " " + d.str() + " is missing from the store");
    return *b;
  };
  std::string manifest_text = blob(img->manifest, "manifest");
  std::string config_text = blob(img->config, "config");
  oci::Manifest manifest;
  json manifest_json, config_json;
  try {
    manifest = oci::parse_manifest(manifest_text);
    manifest_json = json::parse(manifest_text);
    config_json = json::parse(config_text);
  } catch (const std::exception& e) {
    throw Error("'" + name + "': stored documents are unreadable: " + e.what());
  }

  // How many images (distinct records) use each layer.
  std::map<Digest, size_t> shared;
  for (const auto& other : st.images()) {
    std::set<Digest> mine(other.diff_ids.begin(), other.diff_ids.end());
    for (const auto& d : mine) ++shared[d];
  }

  json layers = json::array();
  for (size_t i = 0; i < img->diff_ids.size(); ++i) {
    const Digest& diff_id = img->diff_ids[i];
    auto info = st.layer_info(diff_id);
    json l = {{"diff_id", diff_id.str()}, {"shared_by", shared[diff_id]}};
    if (i < manifest.layers.size()) {
      l["digest"] = manifest.layers[i].digest.str();
      l["media_type"] = manifest.layers[i].media_type;
      l["compressed_size"] = manifest.layers[i].size;
    }
    l["present"] = info.has_value();
    if (info) {
      l["size"] = info->size;
      l["entries"] = info->entries;
      l["unpacked_at"] = info->unpacked_at;
    }
    // Pulled lazily: how many of its content objects have been fetched.
    if (auto lp = st.lazy_presence(diff_id))
      l["lazy"] = {{"objects_present", lp->present}, {"objects", lp->total}};
    layers.push_back(l);
  }

  if (g.json) {
    json out = {{"name", img->ref},
                {"id", img->config.str()},
                {"manifest_digest", img->manifest.str()},
                {"platform", img->platform},
                {"created", img->created},
                {"pulled_at", img->pulled_at},
                {"size", img->size},
                {"manifest", manifest_json},
                {"config", config_json},
                {"layers", layers}};
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  if (g.quiet) {
    std::printf("%s\n", img->config.str().c_str());
    return 0;
  }
  std::printf("Name:       %s\n", img->ref.c_str());
  std::printf("ID:         %s\n", img->config.str().c_str());
  std::printf("Manifest:   %s (%s, %zu bytes)\n", img->manifest.str().c_str(),
              manifest.media_type.c_str(), manifest_text.size());
  std::printf("Config:     %s (%s, %zu bytes)\n", manifest.config.digest.str().c_str(),
              manifest.config.media_type.c_str(), config_text.size());
  std::printf("Platform:   %s\n", img->platform.empty() ? "-" : img->platform.c_str());
  std::printf("Created:    %s\n", img->created.empty() ? "-" : img->created.c_str());
  std::printf("Pulled:     %s\n", img->pulled_at.c_str());
  std::printf("Size:       %s (%llu bytes unpacked)\n", human_bytes(img->size).c_str(),
              static_cast<unsigned long long>(img->size));
  if (config_json.contains("config") && config_json["config"].is_object()) {
    const json& c = config_json["config"];
    for (const char* k : {"Entrypoint", "Cmd", "WorkingDir", "User", "Env"})
      if (c.contains(k) && !c[k].is_null() &&
          !(c[k].is_string() && c[k].get<std::string>().empty()))
        std::printf("%-11s %s\n", (std::string(k) + ":").c_str(), c[k].dump().c_str());
  }
  std::printf("Layers:     %zu\n", img->diff_ids.size());
  std::vector<std::vector<std::string>> rows{
      {"  #", "DIFF_ID", "DIGEST", "COMPRESSED", "UNPACKED", "FILES", "SHARED BY"}};
  for (size_t i = 0; i < layers.size(); ++i) {
    const json& l = layers[i];
    auto sz = [&](const char* k) {
      return l.contains(k) ? human_bytes(l[k].get<uint64_t>()) : std::string("-");
    };
    rows.push_back({"  " + std::to_string(i), l["diff_id"].get<std::string>().substr(0, 19),
                    l.contains("digest") ? l["digest"].get<std::string>().substr(0, 19) : "-",
                    sz("compressed_size"),
                    !l["present"].get<bool>() ? "missing"
                    : l.contains("lazy")
                        ? sz("size") + " (lazy: " + l["lazy"]["objects_present"].dump() + "/" +
                              l["lazy"]["objects"].dump() + " objects)"
                        : sz("size"),
                    l.contains("entries") ? std::to_string(l["entries"].get<uint64_t>()) : "-",
                    std::to_string(l["shared_by"].get<size_t>()) + " image" +
                        (l["shared_by"].get<size_t>() == 1 ? "" : "s")});
  }
  print_table(rows);
  return 0;
}

const Command::Register kRegister({
    "inspect",
    "show an image's manifest, config and layers",
    "Usage: layerctl inspect [--json] IMAGE\n"
    "\n"
    "Shows the image's manifest and config digests, platform, creation time and\n"
    "size, and each layer: diff_id, compressed digest and size, unpacked size (for\n"
    "a layer pulled with --lazy: how many of its content objects are present),\n"
    "file count and how many images in the store share it. --json prints the\n"
    "whole manifest and config documents as well.\n",
    run_inspect,
});

}  // namespace
}  // namespace layer::cli
