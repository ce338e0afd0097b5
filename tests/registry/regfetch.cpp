// regfetch: a test driver for lib/registry alone (no store, no unpacker).
// Resolves REF through open_registry_source, picks the platform from an
// index, fetches the config and streams every layer blob in parallel,
// checking each digest and size itself. Prints one JSON document; exit 1
// with "regfetch: message" on failure.
#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "oci/image.hpp"
#include "registry/blob_stream.hpp"
#include "registry/registry_source.hpp"
#include "util/error.hpp"

using namespace layer;
using nlohmann::json;

namespace {

oci::Descriptor descriptor(const json& j) {
  oci::Descriptor d;
  d.media_type = j.value("mediaType", "");
  d.digest = Digest::parse(j.at("digest").get<std::string>());
  d.size = j.at("size").get<int64_t>();
  return d;
}

int run(int argc, char** argv) {
  registry::RegistryOptions opt;
  std::string platform = "linux/amd64", out_dir, ref;
  int jobs = 4;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) throw Error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--creds")
      opt.creds = val();
    else if (a == "--authfile")
      opt.auth_file = val();
    else if (a == "--cert-dir")
      opt.cert_dir = val();
    else if (a == "--tls-verify=false")
      opt.tls_verify = false;
    else if (a == "--insecure")
      opt.insecure.push_back(val());
    else if (a == "--platform")
      platform = val();
    else if (a == "--out")
      out_dir = val();
    else if (a == "--jobs")
      jobs = std::stoi(val());
    else
      ref = a;
  }
  if (ref.empty()) throw Error("usage: regfetch [options] REF");
  auto src = registry::open_registry_source(ref, opt);
  json report;
  report["ref"] = registry::normalize_reference(ref);

  auto top = src->get_manifest(std::nullopt);
  json doc = json::parse(top.bytes);
  report["top_digest"] = top.digest.str();
  report["top_content_type"] = top.content_type;
  if (doc.contains("manifests")) {
    std::optional<Digest> pick;
    for (const auto& m : doc["manifests"]) {
      std::string p = m["platform"]["os"].get<std::string>() + "/" +
                      m["platform"]["architecture"].get<std::string>();
      if (m["platform"].contains("variant")) p += "/" + m["platform"]["variant"].get<std::string>();
      report["platforms"].push_back(p);
      if (p == platform && !pick) pick = Digest::parse(m["digest"].get<std::string>());
    }
    if (!pick) throw Error("no manifest for " + platform);
    auto child = src->get_manifest(pick);
    if (child.digest != *pick) throw Error("child manifest digest mismatch");
    doc = json::parse(child.bytes);
    report["manifest_digest"] = child.digest.str();
    report["manifest_content_type"] = child.content_type;
  } else {
    report["manifest_digest"] = top.digest.str();
  }
  std::string config = src->get_blob(descriptor(doc["config"]));
  report["config_bytes"] = config.size();

  std::vector<oci::Descriptor> layers;
  for (const auto& l : doc["layers"]) layers.push_back(descriptor(l));
  std::vector<json> results(layers.size());
  std::vector<std::string> errors(layers.size());
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i; (i = next++) < layers.size();) {
      try {
        auto stream = src->open_blob(layers[i]);
        Hasher h(layers[i].digest.algorithm);
        uint64_t total = 0;
        std::ofstream out;
        if (!out_dir.empty()) out.open(out_dir + "/" + layers[i].digest.hex, std::ios::binary);
        char buf[1 << 16];
        while (size_t k = stream->read(buf, sizeof buf)) {
          h.update(buf, k);
          total += k;
          if (out.is_open()) out.write(buf, static_cast<std::streamsize>(k));
        }
        Digest got = h.finish();
        if (got != layers[i].digest)
          throw Error("digest mismatch for layer " + std::to_string(i) + ": expected " +
                      layers[i].digest.str() + ", got " + got.str());
        if (static_cast<int64_t>(total) != layers[i].size)
          throw Error("size mismatch for layer " + std::to_string(i));
        auto* bs = dynamic_cast<registry::BlobStream*>(stream.get());
        results[i] = {{"digest", layers[i].digest.str()},
                      {"media_type", layers[i].media_type},
                      {"bytes", total},
                      {"resumes", bs ? bs->resumes() : 0}};
      } catch (const std::exception& e) {
        auto* le = dynamic_cast<const Error*>(&e);
        errors[i] = le ? le->line() : e.what();
      }
    }
  };
  std::vector<std::thread> threads;
  for (int j = 0; j < std::max(1, jobs); ++j) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  for (const auto& e : errors)
    if (!e.empty()) throw Error(e);
  report["layers"] = results;
  std::cout << report.dump(1) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const Error& e) {
    std::fprintf(stderr, "regfetch: %s\n", e.line().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "regfetch: %s\n", e.what());
  }
  return 1;
}
