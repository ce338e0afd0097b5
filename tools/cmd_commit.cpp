// layerctl commit: turns a container's changes into a new image (one new
// layer on top of its image's), kept in the store like a pulled image.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "command.hpp"
#include "commit/blob_writer.hpp"
#include "commit/committer.hpp"
#include "container_state.hpp"
#include "format.hpp"
#include "store/store.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::cli {
namespace {

int64_t parse_timestamp(const std::string& v, const char* what) {
  char* end = nullptr;
  errno = 0;
  long long t = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end || errno || t < 0)
    throw UsageError(std::string(what) + " wants seconds since the epoch, not '" + v + "'");
  return t;
}

int run_commit(Globals& g, std::vector<std::string>& args) {
  auto opts = parse_options(
      args, {{"compression", true}, {"level", true}, {"timestamp", true}, {"message", true, 'm'}},
      g);
  if (args.size() != 2)
    throw UsageError("wants CONTAINER and IMAGE[:TAG] (see 'layerctl commit --help')");
  commit::Options co;
  if (opts.count("compression")) {
    try {
      co.compression = commit::parse_compression(opts["compression"]);
    } catch (const Error& e) {
      throw UsageError(e.line());
    }
  }
  if (opts.count("level")) co.level = static_cast<int>(parse_timestamp(opts["level"], "--level"));
  if (opts.count("timestamp")) {
    co.timestamp = parse_timestamp(opts["timestamp"], "--timestamp");
  } else if (const char* sde = std::getenv("SOURCE_DATE_EPOCH"); sde && *sde) {
    co.timestamp = parse_timestamp(sde, "SOURCE_DATE_EPOCH");
  }
  if (opts.count("message")) co.comment = opts["message"];
  const std::string name = args[1];
  commit::image_name(name);  // a bad name fails before any work

  store::Store st = store::Store::open(g.root, store::LockMode::Shared);
  auto c = st.find_container(args[0]);
  if (!c) throw Error("'" + args[0] + "': no such container");
  if (c->read_only) throw Error("'" + args[0] + "': a read-only container has nothing to commit");
  ContainerState s = container_state(*c);
  if (s == ContainerState::Mounted) {
    // Writes the kernel still caches for the mount (writeback cache) reach
    // the daemon, and so the upper, before the walk.
    UniqueFd m = sys::xopen_dir(c->mountpoint);
    if (::syncfs(m.get()) != 0) throw Error("syncfs " + c->mountpoint, errno);
  }

  const bool show = stderr_is_tty() && !g.quiet && !g.json;
  auto t0 = std::chrono::steady_clock::now();
  if (show) {
    co.progress = [&](uint64_t bytes) {
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr, "\rcommitting %s: %s of file data (%s)\033[K", c->name.c_str(),
                   human_bytes(bytes).c_str(),
                   human_rate(secs > 0 ? static_cast<double>(bytes) / secs : 0).c_str());
    };
  }
  commit::Result r = commit::commit(st, *c, name, co);
  if (show) std::fprintf(stderr, "\r\033[K");
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (g.json) {
    nlohmann::json j = {{"name", r.image.ref},
                        {"id", r.image.config.str()},
                        {"manifest", r.image.manifest.str()},
                        {"layer",
                         {{"digest", r.digest.str()},
                          {"diff_id", r.diff_id.str()},
                          {"media_type", r.media_type},
                          {"size", r.blob_size},
                          {"tar_bytes", r.tar_bytes},
                          {"entries", r.stats.entries},
                          {"whiteouts", r.stats.whiteouts},
                          {"opaque_dirs", r.stats.opaque}}},
                        {"seconds", secs}};
    std::printf("%s\n", j.dump(2).c_str());
  } else if (g.quiet) {
    std::printf("%s\n", r.image.config.str().c_str());
  } else {
    std::printf("%s: layer %s (%s, %llu entries, %llu whiteouts) in %s; id %s\n",
                r.image.ref.c_str(), r.digest.short_hex().c_str(), human_bytes(r.blob_size).c_str(),
                static_cast<unsigned long long>(r.stats.entries),
                static_cast<unsigned long long>(r.stats.whiteouts), human_seconds(secs).c_str(),
                short_id(r.image.config.hex).c_str());
  }
  return 0;
}

const Command::Register kRegister({
    "commit",
    "make a new image from a container's changes",
    "Usage: layerctl commit CONTAINER IMAGE[:TAG] [--compression gzip|zstd|none]\n"
    "                       [--level N] [--timestamp SECONDS] [-m MESSAGE]\n"
    "\n"
    "Writes the container's upper directory as one OCI layer on top of its image's\n"
    "layers and records IMAGE[:TAG] in the store: the image's config with the new\n"
    "diff_id and a history entry (created_by \"layerctl commit\"), and an OCI\n"
    "manifest. Deleted files become '.wh.NAME' entries, directories that hide what\n"
    "is below get '.wh..wh..opq', a renamed image directory is written whole. Hard\n"
    "links, owners, modes and xattrs are kept; entries are sorted, so the same\n"
    "changes give the same layer. The new layer is unpacked into the store like a\n"
    "pulled one and its compressed blob is kept, so 'layerctl push' sends exactly\n"
    "this blob.\n"
    "\n"
    "  --compression C   gzip (default), zstd or none\n"
    "  --level N         compression level (default: the compressor's)\n"
    "  --timestamp S     clamp file mtimes to S (seconds since the epoch) and use S\n"
    "                    as the image's created time; SOURCE_DATE_EPOCH does the same\n"
    "  -m, --message M   a comment for the history entry\n"
    "  --json            print the new image's name, id, manifest and layer as JSON\n"
    "  -q, --quiet       print only the new image's id\n"
    "\n"
    "A mounted container can be committed: its cached writes are flushed first,\n"
    "but files written while the commit runs may be caught half-written. For a\n"
    "consistent snapshot stop the writers (or 'layerctl umount') first.\n",
    run_commit,
});

}  // namespace
}  // namespace layer::cli
