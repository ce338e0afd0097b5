// layerctl fsck: checks the store against its records; --repair fixes what it can.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "command.hpp"
#include "format.hpp"
#include "fsck/fsck.hpp"
#include "registry/registry_source.hpp"
#include "registry_flags.hpp"
#include "store/store.hpp"
#include "util/error.hpp"

namespace layer::cli {
namespace {

const char* subject_name(fsck::Subject s) {
  switch (s) {
    case fsck::Subject::Store:
      return "store";
    case fsck::Subject::Layer:
      return "layer";
    case fsck::Subject::Blob:
      return "blob";
    case fsck::Subject::Image:
      return "image";
    case fsck::Subject::Container:
      return "container";
    case fsck::Subject::Object:
      return "object";
  }
  return "?";
}

int run_fsck(Globals& g, std::vector<std::string>& args) {
  std::vector<OptSpec> specs = {{"repair", false}};
  for (const auto& f : registry_flags()) specs.push_back(f);
  auto o = parse_options(args, specs, g);
  if (!args.empty()) throw UsageError("takes no arguments");
  bool repair = o.count("repair") > 0;
  registry::RegistryOptions ro = registry_options(o);

  // Checking reads only; repairing moves layers and re-pulls: exclusive.
  store::Store st =
      store::Store::open(g.root, repair ? store::LockMode::Exclusive : store::LockMode::Shared);
  fsck::Options opt;
  if (!g.json)
    opt.on_finding = [&](const fsck::Finding& f) {
      if (f.severity == fsck::Severity::Note && g.quiet) return;
      std::printf("%s%s\n", f.severity == fsck::Severity::Note ? "note: " : "", f.line().c_str());
      std::fflush(stdout);
    };
  fsck::Report rep = fsck::check(st, opt);

  std::vector<fsck::RepairAction> actions;
  fsck::Report after;
  if (repair && rep.damaged()) {
    auto sources = [&](const std::string& ref) -> std::unique_ptr<oci::ImageSource> {
      if (ref.rfind("oci:", 0) == 0 || ref.rfind("docker-archive:", 0) == 0)
        return oci::open_local_source(ref);
      return registry::open_registry_source(ref, ro);
    };
    auto on_action = [&](const fsck::RepairAction& a) {
      if (!g.json) std::printf("repair: %s: %s\n", a.name.c_str(), a.what.c_str());
    };
    actions = fsck::repair(st, rep, sources, on_action);
    after = fsck::check(st, {});
  }
  bool damaged = repair && rep.damaged() ? after.damaged() : rep.damaged();

  if (g.json) {
    using nlohmann::json;
    auto findings = [](const fsck::Report& r) {
      json out = json::array();
      for (const auto& f : r.findings)
        out.push_back({{"severity", f.severity == fsck::Severity::Damage ? "damage" : "note"},
                       {"subject", subject_name(f.subject)},
                       {"name", f.name},
                       {"path", f.path},
                       {"what", f.what}});
      return out;
    };
    json out{{"damaged", damaged},
             {"layers", rep.layers},
             {"blobs", rep.blobs},
             {"objects", rep.objects},
             {"images", rep.images},
             {"containers", rep.containers},
             {"files", rep.files},
             {"hashed_bytes", rep.hashed_bytes},
             {"findings", findings(rep)}};
    if (repair) {
      json acts = json::array();
      for (const auto& a : actions) acts.push_back({{"name", a.name}, {"what", a.what}});
      out["repairs"] = acts;
      out["findings_after_repair"] = findings(after);
    }
    std::printf("%s\n", out.dump(2).c_str());
    return damaged ? 1 : 0;
  }
  if (repair && rep.damaged()) {
    for (const auto& f : after.findings)
      if (f.severity == fsck::Severity::Damage) std::printf("after repair: %s\n", f.line().c_str());
  }
  if (!g.quiet)
    std::printf(
        "%s: %llu layers (%llu files), %llu objects, %llu blobs, %llu images, %llu containers; "
        "%s read\n",
        damaged ? "damaged" : "clean", static_cast<unsigned long long>(rep.layers),
        static_cast<unsigned long long>(rep.files), static_cast<unsigned long long>(rep.objects),
        static_cast<unsigned long long>(rep.blobs),
        static_cast<unsigned long long>(rep.images),
        static_cast<unsigned long long>(rep.containers), human_bytes(rep.hashed_bytes).c_str());
  return damaged ? 1 : 0;
}

const Command::Register kRegister({
    "fsck",
    "check the store's layers, blobs and records; --repair fixes what it can",
    std::string("Usage: layerctl fsck [--repair] [--json] [-q] [registry flags]\n"
                "\n"
                "Checks every layer tree against the file list recorded when it was unpacked\n"
                "(type, mode, owner, size, mtime, link count, symlink target, device number,\n"
                "xattrs and the sha256 of every regular file), every layer.json, every blob\n"
                "and content object against its digest, every metadata-only entry against\n"
                "the object it names (present, undamaged, in the layer's objects.list),\n"
                "every image against the layers and blobs it names and its config's\n"
                "diff_ids, and every container against its image, layers and\n"
                "upper. Prints each difference on its own line, naming the layer (or blob,\n"
                "image, container) and the path; layers unpacked before file lists existed\n"
                "are noted as having no manifest. Exits 1 when it finds damage.\n"
                "\n"
                "  --repair   move damaged layers, blobs and objects to quarantine/ (never\n"
                "             deleted), re-pull the images that used them from the source\n"
                "             their name records (oci:, docker-archive: or a registry), and\n"
                "             mark the images it cannot restore broken. Containers are left\n"
                "             alone. Takes the store's exclusive lock. Exits 1 if damage\n"
                "             remains.\n"
                "  --json     print the findings (and repairs) as JSON\n"
                "  -q         print only damage\n"
                "\n"
                "Registry flags (for re-pulls):\n") +
        std::string(registry_flags_usage()),
    run_fsck,
});

}  // namespace
}  // namespace layer::cli
