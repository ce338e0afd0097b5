// layerctl gc: removes the layers, blobs, objects and tmp/ entries nothing references.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>

#include "command.hpp"
#include "format.hpp"
#include "oci/image.hpp"
#include "store/layout.hpp"
#include "store/store.hpp"
#include "util/error.hpp"

namespace layer::cli {
namespace {

const char* kind_name(store::GcItem::Kind k) {
  switch (k) {
    case store::GcItem::Kind::Layer:
      return "layer";
    case store::GcItem::Kind::Blob:
      return "blob";
    case store::GcItem::Kind::Tmp:
      return "tmp";
    case store::GcItem::Kind::Quarantined:
      return "quarantined";
    case store::GcItem::Kind::Object:
      return "object";
  }
  return "?";
}

// --drop-blobs: the compressed layer blobs pulls and commits keep, for the
// disk space; the unpacked layers stay. REQUIRES the exclusive lock.
void drop_layer_blobs(store::Store& st, bool dry, store::GcReport& rep) {
  std::set<Digest> seen;
  for (const auto& img : st.images()) {
    auto m = st.read_blob(img.manifest, oci::kMaxDocumentBytes);
    if (!m) continue;
    for (const auto& l : oci::parse_manifest(*m).layers) {
      if (!seen.insert(l.digest).second || !st.has_blob(l.digest)) continue;
      const std::string path = store::Layout::blob(l.digest);
      struct stat sb;
      if (::fstatat(st.root_fd(), path.c_str(), &sb, AT_SYMLINK_NOFOLLOW) != 0) continue;
      if (!dry && ::unlinkat(st.root_fd(), path.c_str(), 0) != 0)
        throw Error(st.root() + "/" + path, errno);
      const uint64_t bytes = static_cast<uint64_t>(sb.st_blocks) * 512;
      rep.items.push_back({store::GcItem::Kind::Blob, l.digest.str(), bytes});
      rep.bytes += bytes;
    }
  }
}

int run_gc(Globals& g, std::vector<std::string>& args) {
  auto o = parse_options(
      args, {{"dry-run", false, 'n'}, {"quarantine", false, 0}, {"drop-blobs", false, 0}}, g);
  if (!args.empty()) throw UsageError("takes no arguments");
  bool dry = o.count("dry-run") > 0;
  // The exclusive lock waits for running pulls and mounts (they hold it
  // shared); tmp/ is swept by gc itself so that it is accounted for.
  store::Store st = store::Store::open(g.root, store::LockMode::Exclusive, false);
  store::GcReport rep = st.gc(dry, o.count("quarantine") > 0);
  if (o.count("drop-blobs")) drop_layer_blobs(st, dry, rep);
  if (g.json) {
    nlohmann::json items = nlohmann::json::array();
    for (const auto& i : rep.items)
      items.push_back({{"kind", kind_name(i.kind)}, {"name", i.name}, {"bytes", i.bytes}});
    std::printf(
        "%s\n",
        nlohmann::json{{"dry_run", dry}, {"removed", items}, {"bytes", rep.bytes}}.dump(2).c_str());
    return 0;
  }
  const char* verb = dry ? "Would remove" : "Removed";
  if (!g.quiet)
    for (const auto& i : rep.items)
      std::printf("%s %s %s (%s)\n", verb, kind_name(i.kind), i.name.c_str(),
                  human_bytes(i.bytes).c_str());
  std::printf("%s %zu item%s, %s freed%s\n", dry ? "Would remove" : "Removed", rep.items.size(),
              rep.items.size() == 1 ? "" : "s", human_bytes(rep.bytes).c_str(),
              dry ? " (dry run)" : "");
  return 0;
}

const Command::Register kRegister({
    "gc",
    "remove layers, blobs, content objects and temporary files nothing references",
    "Usage: layerctl gc [--dry-run] [--quarantine] [--drop-blobs] [--json] [-q]\n"
    "\n"
    "Removes every layer that no image or container uses, every blob (manifest,\n"
    "config, layer blob) no image references, every content object no remaining\n"
    "layer names, and every tmp/ entry no running process holds. Each layer is renamed into tmp/ before it is deleted, so a crash\n"
    "never leaves part of a layer in view. Layers under quarantine/ (fsck\n"
    "--repair) are kept unless --quarantine is given. gc takes the store's\n"
    "exclusive lock: it waits for running pulls and mounts, which hold the lock\n"
    "until the image or container record that references their layers is written.\n"
    "\n"
    "  -n, --dry-run   list what would be removed and the bytes it would free\n"
    "  --quarantine    also remove what fsck --repair moved to quarantine/\n"
    "  --drop-blobs    also remove the compressed layer blobs that pull and commit\n"
    "                  keep beside the unpacked layers (the disk back; 'layerctl\n"
    "                  push' then rebuilds each layer a registry lacks from its tree:\n"
    "                  new digests, a new manifest); pull --drop-blobs keeps none\n"
    "  --json          print {dry_run, removed: [{kind, name, bytes}], bytes}\n"
    "  -q              print only the total\n"
    "\n"
    "Bytes are disk blocks (st_blocks), each hardlinked inode counted once.\n",
    run_gc,
});

}  // namespace
}  // namespace layer::cli
