#include "store/records.hpp"

#include <sys/random.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <ctime>

#include "util/digest.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::store::detail {

using nlohmann::json;

namespace {

std::vector<std::string> digest_strings(const std::vector<Digest>& ds) {
  std::vector<std::string> out;
  for (const auto& d : ds) out.push_back(d.str());
  return out;
}

std::vector<Digest> parse_digests(const json& j) {
  std::vector<Digest> out;
  for (const auto& s : j) out.push_back(Digest::parse(s.get<std::string>()));
  return out;
}

}  // namespace

std::string now_rfc3339() {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  struct tm tm {};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string random_hex(size_t bytes) {
  unsigned char raw[32];
  size_t n = std::min(bytes, sizeof raw);
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::getrandom(raw + got, n - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno("getrandom");
    }
    got += static_cast<size_t>(r);
  }
  return hex_encode(std::string_view(reinterpret_cast<const char*>(raw), n));
}

void mkdir_at(int dirfd, const std::string& path, mode_t mode) {
  if (::mkdirat(dirfd, path.c_str(), mode) < 0 && errno != EEXIST) throw_errno("mkdir " + path);
}

json read_json(int dirfd, const std::string& path) {
  std::string text = sys::xread_file(dirfd, path, kMaxRecordBytes, path);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw Error(path + ": malformed JSON: " + e.what());
  }
}

json layer_to_json(const LayerInfo& l) {
  json j{{"diff_id", l.diff_id.str()},
         {"compressed", digest_strings(l.compressed)},
         {"size", l.size},
         {"entries", l.entries},
         {"unpacked_at", l.unpacked_at}};
  if (!l.implicit_dirs.empty()) j["implicit_dirs"] = l.implicit_dirs;
  for (const auto& [d, size] : l.compressed_sizes) j["compressed_sizes"][d.str()] = size;
  if (l.format >= 2) {
    j["format"] = l.format;
    j["object_bytes"] = l.object_bytes;
  }
  return j;
}

LayerInfo layer_from_json(const json& j) {
  LayerInfo l;
  l.diff_id = Digest::parse(j.at("diff_id").get<std::string>());
  l.compressed = parse_digests(j.at("compressed"));
  l.size = j.at("size").get<uint64_t>();
  l.entries = j.at("entries").get<uint64_t>();
  l.unpacked_at = j.value("unpacked_at", "");
  if (auto it = j.find("implicit_dirs"); it != j.end())
    l.implicit_dirs = it->get<std::map<std::string, std::string>>();
  if (auto it = j.find("compressed_sizes"); it != j.end())
    for (const auto& [d, size] : it->items())
      l.compressed_sizes.emplace(Digest::parse(d), size.get<int64_t>());
  l.format = j.value("format", 1);
  l.object_bytes = j.value("object_bytes", uint64_t{0});
  return l;
}

json image_to_json(const ImageRecord& r) {
  json j{{"ref", r.ref},
         {"manifest", r.manifest.str()},
         {"config", r.config.str()},
         {"diff_ids", digest_strings(r.diff_ids)},
         {"platform", r.platform},
         {"created", r.created},
         {"pulled_at", r.pulled_at},
         {"size", r.size}};
  if (!r.broken.empty()) j["broken"] = r.broken;
  return j;
}

ImageRecord image_from_json(const json& j) {
  ImageRecord r;
  r.ref = j.at("ref").get<std::string>();
  r.manifest = Digest::parse(j.at("manifest").get<std::string>());
  r.config = Digest::parse(j.at("config").get<std::string>());
  r.diff_ids = parse_digests(j.at("diff_ids"));
  r.platform = j.value("platform", "");
  r.created = j.value("created", "");
  r.pulled_at = j.value("pulled_at", "");
  r.size = j.value("size", uint64_t{0});
  r.broken = j.value("broken", "");
  return r;
}

json container_to_json(const ContainerRecord& c) {
  json j{{"id", c.id},
              {"name", c.name},
              {"image", c.image},
              {"diff_ids", digest_strings(c.diff_ids)},
              {"mountpoint", c.mountpoint},
              {"pid", c.pid},
              {"read_only", c.read_only},
              {"suid", c.suid},
              {"dev", c.dev},
              {"created", c.created}};
  if (c.engine != kEngineLayerfs) j["engine"] = c.engine;
  return j;
}

ContainerRecord container_from_json(const json& j) {
  ContainerRecord c;
  c.id = j.at("id").get<std::string>();
  c.name = j.value("name", "");
  c.image = j.value("image", "");
  c.diff_ids = parse_digests(j.at("diff_ids"));
  c.mountpoint = j.value("mountpoint", "");
  c.pid = j.value("pid", 0);
  c.read_only = j.value("read_only", false);
  c.suid = j.value("suid", false);
  c.dev = j.value("dev", false);
  c.engine = j.value("engine", kEngineLayerfs);
  c.created = j.value("created", "");
  return c;
}

}  // namespace layer::store::detail
