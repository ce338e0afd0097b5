// layerctl images: lists the images in the store.
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>

#include "command.hpp"
#include "format.hpp"
#include "store/store.hpp"

namespace layer::cli {
namespace {

// "2024-01-01T00:00:00.123Z" → "2024-01-01 00:00:00"
std::string short_time(const std::string& rfc3339) {
  if (rfc3339.size() < 19) return rfc3339.empty() ? "-" : rfc3339;
  std::string s = rfc3339.substr(0, 19);
  s[10] = ' ';
  return s;
}

int run_images(Globals& g, std::vector<std::string>& args) {
  parse_options(args, {}, g);
  if (!args.empty()) throw UsageError("takes no arguments");
  store::Store st = store::Store::open(g.root, store::LockMode::Shared);
  auto images = st.images();
  std::sort(images.begin(), images.end(),
            [](const auto& a, const auto& b) { return a.ref < b.ref; });
  // Images with lazily pulled layers: objects present / named, over those layers.
  auto lazy_of = [&](const store::ImageRecord& i) -> std::optional<store::Store::LazyPresence> {
    std::optional<store::Store::LazyPresence> sum;
    std::set<Digest> seen;
    for (const auto& d : i.diff_ids) {
      if (!seen.insert(d).second) continue;
      if (auto p = st.lazy_presence(d)) {
        if (!sum) sum.emplace();
        sum->present += p->present;
        sum->total += p->total;
      }
    }
    return sum;
  };
  if (g.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& i : images) {
      auto lazy = lazy_of(i);
      nlohmann::json layers = nlohmann::json::array();
      for (const auto& d : i.diff_ids) layers.push_back(d.str());
      out.push_back(
          {{"name", i.ref},
           {"id", i.config.str()},
           {"manifest", i.manifest.str()},
           {"platform", i.platform},
           {"size", i.size},
           {"created", i.created},
           {"pulled_at", i.pulled_at},
           {"layers", layers},
           {"lazy", lazy ? nlohmann::json{{"objects_present", lazy->present},
                                          {"objects", lazy->total}}
                         : nlohmann::json(nullptr)},
           {"broken", i.broken.empty() ? nlohmann::json(nullptr) : nlohmann::json(i.broken)}});
    }
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  if (g.quiet) {
    std::set<std::string> seen;
    for (const auto& i : images)
      if (seen.insert(i.config.hex).second) std::printf("%s\n", i.config.str().c_str());
    return 0;
  }
  std::vector<std::vector<std::string>> rows{{"NAME", "ID", "SIZE", "CREATED"}};
  for (const auto& i : images) {
    std::string size = human_bytes(i.size);
    if (auto lazy = lazy_of(i))
      size += " (lazy: " + std::to_string(lazy->present) + "/" + std::to_string(lazy->total) +
              " objects)";
    rows.push_back({i.broken.empty() ? i.ref : i.ref + " (broken)", short_id(i.config.hex), size,
                    short_time(i.created)});
  }
  print_table(rows);
  return 0;
}

const Command::Register kRegister({
    "images",
    "list the images in the store",
    "Usage: layerctl images [--json] [-q]\n"
    "\n"
    "Lists the images in the store: name, id (config digest), unpacked size and\n"
    "creation time; an image pulled with --lazy shows how many of its content\n"
    "objects are present so far. An image fsck --repair could not restore is shown as\n"
    "'NAME (broken)' and cannot be mounted until it is pulled again. --json prints\n"
    "every field (\"broken\": the reason, or null); -q prints only the ids.\n",
    run_images,
});

}  // namespace
}  // namespace layer::cli
