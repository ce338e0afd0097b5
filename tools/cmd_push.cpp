// layerctl push: sends an image of the store to a registry.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "command.hpp"
#include "format.hpp"
#include "push/exporter.hpp"
#include "push/pusher.hpp"
#include "registry_flags.hpp"
#include "store/store.hpp"
#include "util/error.hpp"

namespace layer::cli {
namespace {

const char* state_word(push::BlobState s) {
  switch (s) {
    case push::BlobState::Checking:
      return "checking";
    case push::BlobState::Exists:
      return "already there";
    case push::BlobState::Mounted:
      return "mounted";
    case push::BlobState::Regenerating:
      return "regenerating from the unpacked layer";
    case push::BlobState::Uploading:
      return "uploading";
    case push::BlobState::Done:
      return "uploaded";
  }
  return "";
}

// push IMAGE oci:DIR[:TAG] | docker-archive:FILE[:REF]
int run_export(Globals& g, const std::string& image, const std::string& dest) {
  store::Store st = store::Store::open(g.root, store::LockMode::Shared);
  auto img = st.find_image(image);
  if (!img) throw Error("'" + image + "': no such image");
  auto t0 = std::chrono::steady_clock::now();
  push::ExportResult r;
  try {
    r = push::export_image(st, *img, dest);
  } catch (const Error& e) {
    std::string line = e.line();
    throw Error(line.rfind("'" + dest + "'", 0) == 0 ? line : "'" + dest + "': " + line);
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (g.json) {
    nlohmann::json j = {{"image", img->ref},
                        {"ref", r.dest},
                        {"manifest", r.manifest.str()},
                        {"layers_written", r.layers},
                        {"regenerated", r.regenerated},
                        {"rewritten", r.regenerated > 0},
                        {"bytes_written", r.bytes},
                        {"seconds", secs}};
    std::printf("%s\n", j.dump(2).c_str());
  } else if (g.quiet) {
    std::printf("%s\n", r.manifest.str().c_str());
  } else {
    std::printf("%s: %zu layer blob%s written (%s) in %s; manifest %s\n", r.dest.c_str(), r.layers,
                r.layers == 1 ? "" : "s", human_bytes(r.bytes).c_str(), human_seconds(secs).c_str(),
                r.manifest.str().c_str());
    if (r.regenerated > 0)
      std::printf(
          "note: %zu layer(s) were not kept as blobs and were regenerated from the store, so\n"
          "the exported image has its own config and manifest (local %s)\n",
          r.regenerated, img->manifest.str().c_str());
  }
  return 0;
}

int run_push(Globals& g, std::vector<std::string>& args) {
  std::vector<OptSpec> specs = registry_flags();
  specs.push_back({"chunk-size", true});
  specs.push_back({"compression", true});
  auto opts = parse_options(args, specs, g);
  if (args.size() != 2) throw UsageError("wants IMAGE and REF (see 'layerctl push --help')");
  if (push::is_export_destination(args[1])) {
    for (const auto& f : specs)
      if (opts.count(f.name))
        throw UsageError(std::string("option '--") + f.name + "' is for registries");
    return run_export(g, args[0], args[1]);
  }
  push::Options po;
  po.registry = registry_options(opts);
  if (opts.count("chunk-size")) po.chunk_size = parse_size("--chunk-size", opts["chunk-size"]);
  if (opts.count("compression")) {
    const std::string& c = opts["compression"];
    if (c == "estargz")
      po.recompress = push::Recompress::Estargz;
    else if (c == "zstd:chunked")
      po.recompress = push::Recompress::ZstdChunked;
    else
      throw UsageError("--compression wants estargz or zstd:chunked, not '" + c + "'");
  }

  store::Store st = store::Store::open(g.root, store::LockMode::Shared);
  auto img = st.find_image(args[0]);
  if (!img) throw Error("'" + args[0] + "': no such image");

  const bool tty = stderr_is_tty() && !g.quiet && !g.json;
  const bool lines = !g.quiet && !g.json;
  auto last = std::chrono::steady_clock::now();
  po.on_blob = [&](const push::BlobEvent& e) {
    std::string head = e.kind == "config" ? std::string("config")
                                          : "layer " + std::to_string(e.index + 1) + "/" +
                                                std::to_string(e.total - 1);
    head += " " + e.digest.short_hex();
    if (e.state == push::BlobState::Uploading) {
      if (!tty) return;
      auto now = std::chrono::steady_clock::now();
      if (e.sent != 0 && e.sent != e.size && now - last < std::chrono::milliseconds(100)) return;
      last = now;
      std::fprintf(stderr, "\r%s: uploading %s / %s\033[K", head.c_str(),
                   human_bytes(e.sent).c_str(), human_bytes(e.size).c_str());
      return;
    }
    if (e.state == push::BlobState::Checking) return;
    if (tty) std::fprintf(stderr, "\r\033[K");
    if (lines)
      std::fprintf(stderr, "%s: %s (%s)\n", head.c_str(), state_word(e.state),
                   human_bytes(e.size).c_str());
  };
  auto t0 = std::chrono::steady_clock::now();
  push::Result r = push::push(st, *img, args[1], po);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (g.json) {
    nlohmann::json j = {{"image", img->ref},
                        {"ref", r.ref},
                        {"manifest", r.manifest.str()},
                        {"rewritten", r.rewritten},
                        {"uploaded", r.uploaded},
                        {"mounted", r.mounted},
                        {"existed", r.existed},
                        {"regenerated", r.regenerated},
                        {"bytes_sent", r.bytes_sent},
                        {"requests",
                         {{"head", r.requests.heads},
                          {"mount", r.requests.mounts},
                          {"post", r.requests.posts},
                          {"patch", r.requests.patches},
                          {"put", r.requests.puts}}},
                        {"seconds", secs}};
    std::printf("%s\n", j.dump(2).c_str());
  } else if (g.quiet) {
    std::printf("%s\n", r.manifest.str().c_str());
  } else {
    std::printf("%s: %zu uploaded (%s), %zu mounted, %zu already there in %s; manifest %s\n",
                r.ref.c_str(), r.uploaded, human_bytes(r.bytes_sent).c_str(), r.mounted, r.existed,
                human_seconds(secs).c_str(), r.manifest.str().c_str());
    if (r.rewritten)
      std::printf(
          "note: %zu layer(s) were not kept as blobs and were regenerated from the store, so\n"
          "the pushed image has its own config and manifest (local %s)\n",
          r.regenerated, img->manifest.str().c_str());
  }
  return 0;
}

const Command::Register kRegister({
    "push",
    "send an image to a registry",
    "Usage: layerctl push IMAGE REF [--chunk-size SIZE] [--compression estargz|zstd:chunked]\n"
    "                               [registry flags]\n"
    "       layerctl push IMAGE oci:DIR[:TAG]\n"
    "       layerctl push IMAGE docker-archive:FILE[:REF]\n"
    "\n"
    "Sends IMAGE (a name or id in the store) to REF (\"host[:port]/repo[:tag]\") with\n"
    "the OCI distribution API. For each layer: a blob the repository has is skipped\n"
    "(HEAD), a blob of the repository on the same registry the image was pulled from\n"
    "is mounted from there (POST ?mount=&from=; an upload if the registry declines),\n"
    "and the others are uploaded: one PUT, or PATCH chunks for blobs above 256 MiB\n"
    "or --chunk-size. Then the config, and the manifest last; every digest the\n"
    "registry answers with is checked.\n"
    "\n"
    "oci:DIR[:TAG] writes the image into an OCI image layout (created if absent;\n"
    "blobs it has are kept, index.json names the image TAG); docker-archive:FILE[:REF]\n"
    "writes a `docker save` archive (REF in its RepoTags; default: the image's name).\n"
    "Pulling either back gives the same image (same id, same manifest digest).\n"
    "\n"
    "Layer blobs: 'layerctl pull' and 'layerctl commit' keep each layer's compressed\n"
    "blob, so an image goes out byte for byte, with the digests it was pulled with,\n"
    "and a second push finds every layer present (HEAD) without reading any. A layer\n"
    "whose blob was not kept (pull --drop-blobs) and that the destination can\n"
    "neither find nor mount is regenerated\n"
    "from its unpacked tree (same files, a new tar: new digest and diff_id), and the\n"
    "config and manifest are rewritten to name it, so the pushed image then has\n"
    "another digest than the local one (as podman does when it recompresses); a\n"
    "note says so. Regeneration is deterministic: pushing again finds the blob.\n"
    "\n"
    "  --chunk-size SIZE      upload blobs larger than SIZE in chunks of SIZE (512K, 16M)\n"
    "  --compression C        rewrite every layer lazily pullable: estargz (gzip, TOC\n"
    "                         digest annotation; its diff_id gains the TOC entry) or\n"
    "                         zstd:chunked (same diff_id as the plain tar)\n" +
        std::string(registry_flags_usage()) +
        "  --json                 print a summary object\n"
        "  -q, --quiet            no progress; print only the manifest digest\n"
        "\n"
        "Progress: one line per blob (and a running count on a terminal) on stderr.\n",
    run_push,
});

}  // namespace
}  // namespace layer::cli
