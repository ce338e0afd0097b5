// layerctl pull: brings an image into the store from an OCI layout, a
// docker-save archive or a registry, with a progress line per layer on a
// terminal and a one-line summary.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>

#include "command.hpp"
#include "format.hpp"
#include "oci/image_source.hpp"
#include "pull/puller.hpp"
#include "registry/registry_source.hpp"
#include "registry/search_registries.hpp"
#include "registry_flags.hpp"
#include "store/store.hpp"
#include "util/error.hpp"

namespace layer::cli {
namespace {

using Clock = std::chrono::steady_clock;

const char* state_name(pull::LayerState s) {
  switch (s) {
    case pull::LayerState::Exists:
      return "exists";
    case pull::LayerState::Waiting:
      return "waiting";
    case pull::LayerState::Downloading:
      return "downloading";
    case pull::LayerState::Unpacking:
      return "unpacking";
    case pull::LayerState::Done:
      return "done";
    case pull::LayerState::Failed:
      return "failed";
  }
  return "?";
}

// Draws one line per layer on stderr when it is a terminal, redrawn in place
// at most 10 times a second and on every state change. Elsewhere (logs,
// pipes) only the summary is printed. Called serialized by the puller.
class Progress {
 public:
  Progress(bool tty, bool quiet) : tty_(tty), quiet_(quiet) {}

  void on_event(const pull::LayerEvent& e) {
    if (quiet_) return;
    if (std::max(e.index + 1, e.total) > layers_.size())
      layers_.resize(std::max(e.index + 1, e.total));
    Line& l = layers_[e.index];
    bool changed = l.state != e.state || !l.seen;
    if (e.state == pull::LayerState::Downloading && l.state != pull::LayerState::Downloading)
      l.start = Clock::now();
    l.seen = true;
    l.digest = e.digest.str();
    l.size = e.size;
    l.state = e.state;
    if (e.bytes > l.bytes || e.state == pull::LayerState::Done) l.bytes = e.bytes;
    if (!tty_) return;
    auto now = Clock::now();
    if (!changed && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    draw();
  }

  void finish() {
    if (tty_ && !quiet_) draw();
  }

 private:
  struct Line {
    bool seen = false;
    std::string digest;
    int64_t size = -1;
    pull::LayerState state = pull::LayerState::Waiting;
    uint64_t bytes = 0;
    Clock::time_point start = Clock::now();
  };

  std::string render(size_t i) const {
    const Line& l = layers_[i];
    std::string s = "  " + std::to_string(i + 1) + "/" + std::to_string(layers_.size()) + "  " +
                    l.digest.substr(0, 19) + "  " + state_name(l.state);
    s.resize(std::max<size_t>(s.size(), 42), ' ');
    std::string total = l.size >= 0 ? human_bytes(static_cast<uint64_t>(l.size)) : "?";
    if (l.state == pull::LayerState::Downloading || l.state == pull::LayerState::Unpacking) {
      double secs = std::chrono::duration<double>(Clock::now() - l.start).count();
      s += human_bytes(l.bytes) + " / " + total;
      if (secs > 0.05) s += "  " + human_rate(static_cast<double>(l.bytes) / secs);
    } else {
      s += total;
    }
    return s;
  }

  void draw() {
    std::string out;
    if (drawn_ > 0) out += "\x1b[" + std::to_string(drawn_) + "A";
    for (size_t i = 0; i < layers_.size(); ++i)
      if (layers_[i].seen) out += "\r\x1b[2K" + render(i) + "\n";
    drawn_ = 0;
    for (const auto& l : layers_) drawn_ += l.seen ? 1 : 0;
    std::fputs(out.c_str(), stderr);
    std::fflush(stderr);
  }

  bool tty_;
  bool quiet_;
  std::vector<Line> layers_;
  size_t drawn_ = 0;
  Clock::time_point last_draw_{};
};

uint64_t parse_count(const std::string& opt, const std::string& v) {
  char* end = nullptr;
  errno = 0;
  unsigned long long n = std::strtoull(v.c_str(), &end, 10);
  uint64_t mult = 1;
  if (end && *end) {
    std::string suf = end;
    if (suf == "K" || suf == "k")
      mult = 1ull << 10;
    else if (suf == "M")
      mult = 1ull << 20;
    else if (suf == "G")
      mult = 1ull << 30;
    else if (suf == "T")
      mult = 1ull << 40;
    else
      throw UsageError("option '--" + opt + "': bad number '" + v + "'");
  }
  if (v.empty() || v[0] == '-' || errno || n == 0)
    throw UsageError("option '--" + opt + "': bad number '" + v + "'");
  return n * mult;
}

bool is_local(const std::string& ref) {
  return ref.rfind("oci:", 0) == 0 || ref.rfind("docker-archive:", 0) == 0;
}

int run_pull(Globals& g, std::vector<std::string>& args) {
  std::vector<OptSpec> specs = {{"platform", true},        {"jobs", true, 'j'},
                                {"max-layer-bytes", true}, {"max-layer-entries", true},
                                {"no-file-list", false},   {"drop-blobs", false},
                                {"inline-files", false},   {"lazy", false}};
  for (const auto& f : registry_flags()) specs.push_back(f);
  auto o = parse_options(args, specs, g);
  if (args.size() != 1) throw UsageError("wants one image reference (see 'layerctl pull --help')");
  const std::string ref = args[0];

  pull::Options opt;
  if (o.count("platform")) {
    try {
      opt.platform = oci::Platform::parse(o["platform"]);
    } catch (const Error& e) {
      throw UsageError(e.line());
    }
  }
  if (o.count("jobs")) {
    uint64_t j = parse_count("jobs", o["jobs"]);
    if (j > 64) throw UsageError("option '--jobs': at most 64");
    opt.jobs = static_cast<int>(j);
  }
  if (o.count("max-layer-bytes"))
    opt.unpack.limits.max_bytes = parse_count("max-layer-bytes", o["max-layer-bytes"]);
  if (o.count("max-layer-entries"))
    opt.unpack.limits.max_entries = parse_count("max-layer-entries", o["max-layer-entries"]);
  opt.unpack.rootless = ::geteuid() != 0;
  if (o.count("no-file-list")) opt.unpack.record_digests = false;
  if (o.count("drop-blobs")) opt.keep_blobs = false;
  if (o.count("inline-files")) opt.unpack.share_content = false;
  if (o.count("lazy")) {
    if (o.count("inline-files")) throw UsageError("--lazy needs content objects, not --inline-files");
    opt.lazy = true;
  }

  // Errors from here on name the reference once, at the front.
  std::string name;
  auto at_fault = [&](const std::string& line, const std::string& prefix) {
    std::string rest = line;
    for (const std::string& p :
         {prefix + ": ", ref + ": ", "'" + ref + "': ", "image " + name + ": "})
      if (rest.rfind(p, 0) == 0) rest = rest.substr(p.size());
    return Error("'" + ref + "': " + rest);
  };

  if (is_local(ref)) {
    for (const char* r : {"tls-verify", "cert-dir", "creds", "authfile", "insecure-registry",
                          "low-speed-limit", "low-speed-time", "retries"})
      if (o.count(r)) throw UsageError(std::string("option '--") + r + "' is for registries");
  }
  // A short name is tried at each of registries.conf's
  // unqualified-search-registries in turn, as podman does.
  registry::SearchList search;
  try {
    if (!is_local(ref)) search = registry::search_list(ref);
  } catch (const Error& e) {
    throw at_fault(e.line(), "");
  }
  const std::vector<std::string> candidates =
      search.registries.empty() ? std::vector<std::string>{ref} : search.candidates(ref);
  const registry::RegistryOptions ro =
      is_local(ref) ? registry::RegistryOptions{} : registry_options(o);

  store::Store st = store::Store::open(g.root, store::LockMode::Shared);
  Progress progress(stderr_is_tty(), g.quiet || g.json);
  opt.on_layer = [&](const pull::LayerEvent& e) { progress.on_event(e); };
  auto t0 = Clock::now();
  pull::Result r;
  std::string misses;  // per search registry: why it did not give the image
  for (size_t i = 0; i < candidates.size(); ++i) {
    const std::string& cand = candidates[i];
    std::unique_ptr<oci::ImageSource> source;
    try {
      try {
        if (is_local(ref)) {
          source = oci::open_local_source(ref);
          name = source->default_name();
        } else {
          source = registry::open_registry_source(cand, ro);
          name = registry::normalize_reference(cand);
        }
      } catch (const Error& e) {
        throw at_fault(e.line(), "");
      }
      for (const auto& w : source->warnings())
        std::fprintf(stderr, "layerctl: pull: warning: %s\n", w.c_str());
      try {
        r = pull::pull(st, *source, name, opt);
      } catch (const Error& e) {
        progress.finish();
        throw at_fault(e.line(), source->describe());
      }
      break;
    } catch (const Error& e) {
      if (candidates.size() == 1) throw;
      std::string why = e.line();
      if (why.rfind("'" + ref + "': ", 0) == 0) why.erase(0, ref.size() + 4);
      misses += (misses.empty() ? "" : "; ") + cand + ": " + why;
      if (i + 1 == candidates.size())
        throw Error("'" + ref + "': not found at any unqualified-search-registries of " +
                    search.file + " (" + misses + ")");
    }
  }
  progress.finish();
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  size_t unpacked = r.layers_total - r.layers_reused;
  bool nothing = r.layers_reused == r.layers_total;

  if (g.json) {
    nlohmann::json j = {{"name", r.image.ref},
                        {"id", r.image.config.str()},
                        {"manifest", r.image.manifest.str()},
                        {"platform", r.image.platform},
                        {"layers", r.layers_total},
                        {"unpacked", unpacked},
                        {"reused", r.layers_reused},
                        {"bytes_fetched", r.bytes_fetched},
                        {"lazy", r.layers_lazy},
                        {"completed", r.layers_completed},
                        {"size", r.image.size},
                        {"seconds", secs},
                        {"nothing_to_unpack", nothing}};
    std::printf("%s\n", j.dump(2).c_str());
  } else if (g.quiet) {
    std::printf("%s\n", r.image.config.str().c_str());
  } else if (nothing) {
    std::printf("%s: all layers present, nothing to unpack (id %s)\n", r.image.ref.c_str(),
                short_id(r.image.config.hex).c_str());
  } else {
    // Lazy layers: metadata only so far; completed: lazy layers made whole.
    std::string how;
    if (r.layers_lazy) how += ", " + std::to_string(r.layers_lazy) + " of them lazily";
    if (r.layers_completed) how += ", " + std::to_string(r.layers_completed) + " completed";
    std::printf(
        "%s: pulled %zu layer%s (%zu unpacked%s, %zu already present), %s in %s, %s (id %s)\n",
        r.image.ref.c_str(), r.layers_total, r.layers_total == 1 ? "" : "s", unpacked,
        how.c_str(),
        r.layers_reused, human_bytes(r.bytes_fetched).c_str(), human_seconds(secs).c_str(),
        human_rate(secs > 0 ? static_cast<double>(r.bytes_fetched) / secs : 0).c_str(),
        short_id(r.image.config.hex).c_str());
  }
  return 0;
}

const Command::Register kRegister({
    "pull",
    "bring an image into the store (registry, oci:DIR, docker-archive:FILE)",
    "Usage: layerctl pull [OPTIONS] REFERENCE\n"
    "\n"
    "Brings an image into the store and unpacks each of its layers once, keyed\n"
    "by diff_id; layers already in the store are not fetched again, except lazily\n"
    "pulled ones (--lazy), which a pull without --lazy completes: their whole blob\n"
    "is fetched and verified as an eager pull's would be.\n"
    "\n"
    "REFERENCE:\n"
    "  oci:DIR[:TAG]              an OCI image layout directory\n"
    "  docker-archive:FILE[:REF]  a `docker save` tar (legacy or OCI-layout format);\n"
    "                             REF is a RepoTag, or @N for the N-th image\n"
    "  [docker://]NAME[:TAG|@DIGEST]  an image in a registry: a NAME without a registry\n"
    "                             host is looked for at each of the\n"
    "                             unqualified-search-registries of registries.conf\n"
    "                             ($CONTAINERS_REGISTRIES_CONF, ~/.config/containers/,\n"
    "                             /etc/containers/) in turn, else at docker.io\n"
    "\n"
    "Options:\n"
    "  --platform OS/ARCH[/VARIANT]  the platform to pick from an index (default: this machine)\n"
    "  -j, --jobs N                  layers fetched and unpacked at once (default 4)\n"
    "  --max-layer-bytes SIZE        refuse a layer whose tar is larger (default 64G)\n"
    "  --max-layer-entries N         refuse a layer with more entries (default 4000000)\n"
    "  --lazy                        for layers with a table of contents (zstd:chunked,\n"
    "                                eStargz) fetch only the TOC and write the metadata;\n"
    "                                file contents are fetched when first read through\n"
    "                                a mount ('layerctl pull' without --lazy completes\n"
    "                                them); other layers are pulled whole\n"
    "  --inline-files                keep every file's data in its layer (no content\n"
    "                                objects, as store format 1 did; for comparisons)\n"
    "  --no-file-list                do not record the layers' file lists (fsck then\n"
    "                                cannot check their trees; for measuring the cost)\n"
    "  --drop-blobs                  keep only the unpacked layers, not their compressed\n"
    "                                blobs (by default each is kept, so 'layerctl push'\n"
    "                                sends the same layer digests; without them push\n"
    "                                rebuilds each layer the registry lacks: new digests)\n"
    "Registry options:\n" +
        std::string(registry_flags_usage()) +
        "Global: --root DIR, --json (a summary object), -q (print only the image id)\n",
    run_pull,
});

}  // namespace
}  // namespace layer::cli
