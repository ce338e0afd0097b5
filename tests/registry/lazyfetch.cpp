// lazyfetch: a test driver for lib/lazy against a real registry (no store,
// no mount). For each layer of REF (a single-platform manifest) with a TOC:
// reads the TOC with Range requests, opens --open PATH (if given) as a
// daemon would on a miss, then completes the layer in the background
// order, writing every verified object to OUT/<hex>. Prints one JSON
// document; exit 1 with "lazyfetch: message" on failure.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "lazy/fetcher.hpp"
#include "lazy/range_fetcher.hpp"
#include "lazy/toc_reader.hpp"
#include "oci/image.hpp"
#include "registry/reference.hpp"
#include "registry/registry_client.hpp"
#include "registry/registry_source.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

using namespace layer;
using nlohmann::json;

namespace {

// Objects as files OUT/<hex>, published by rename only once verified.
class DirObjects : public lazy::ObjectStore {
 public:
  explicit DirObjects(std::string dir) : dir_(std::move(dir)) {}
  bool has(const Digest& d) override { return ::access((dir_ + "/" + d.hex).c_str(), F_OK) == 0; }
  void put(const Digest& d, const std::function<void(const lazy::Sink&)>& produce) override {
    std::string tmp = dir_ + "/.tmp-" + d.hex + "-" + std::to_string(::gettid());
    UniqueFd fd = sys::xopen_at(AT_FDCWD, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644, tmp);
    try {
      produce([&](const char* p, size_t n) {
        if (auto w = sys::write_all(fd.get(), p, n); !w) throw Error(tmp, w.error());
      });
    } catch (...) {
      ::unlink(tmp.c_str());
      throw;
    }
    if (::rename(tmp.c_str(), (dir_ + "/" + d.hex).c_str()) != 0) throw_errno(tmp);
  }

 private:
  std::string dir_;
};

int run(int argc, char** argv) {
  registry::RegistryOptions opt;
  std::string ref, out, open_path;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--open" && i + 1 < argc)
      open_path = argv[++i];
    else if (ref.empty())
      ref = a;
    else
      out = a;
  }
  if (ref.empty() || out.empty()) throw Error("usage: lazyfetch REF OUTDIR [--open PATH]");
  auto src = registry::open_registry_source(ref, opt);
  oci::Manifest man = oci::parse_manifest(src->get_manifest(std::nullopt).bytes);
  registry::RegistryClient client(registry::Reference::parse(ref), opt);
  DirObjects objects(out);
  json report = json::array();
  for (const oci::Descriptor& d : man.layers) {
    json l = {{"digest", d.digest.str()}, {"media_type", d.media_type}, {"size", d.size}};
    auto ts = lazy::TocSource::of(d);
    if (!ts) {
      l["toc"] = false;
      report.push_back(l);
      continue;
    }
    lazy::BlobRanges blob(client, d);
    auto t0 = std::chrono::steady_clock::now();
    lazy::Toc toc = lazy::read_toc(blob, *ts, "layer " + d.digest.str());
    l["toc"] = true;
    l["format"] = ts->format == lazy::Format::Estargz ? "estargz" : "zstd:chunked";
    l["entries"] = toc.entries.size();
    l["toc_requests"] = blob.requests();
    l["toc_bytes"] = blob.bytes_fetched();
    lazy::Fetcher f(toc, blob, objects);
    l["missing_before"] = f.missing();
    if (auto i = toc.find(open_path); i && !open_path.empty()) {
      f.ensure(*i);
      l["open_requests"] = blob.requests() - l["toc_requests"].get<uint64_t>();
      l["open_seconds"] =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      l["opened"] = open_path;
    }
    std::atomic<bool> stop{false};
    f.complete({}, stop);
    l["missing_after"] = f.missing();
    l["requests"] = blob.requests();
    l["bytes"] = blob.bytes_fetched();
    report.push_back(l);
  }
  std::cout << report.dump(1) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const Error& e) {
    std::fprintf(stderr, "lazyfetch: %s\n", e.line().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lazyfetch: %s\n", e.what());
  }
  return 1;
}
