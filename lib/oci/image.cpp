#include "oci/image.hpp"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>

#include "oci/media_types.hpp"
#include "util/error.hpp"

namespace layer::oci {

namespace {

using json = nlohmann::json;

// A printable, bounded rendering of hostile text for messages.
std::string shown(std::string_view s) {
  std::string out(s.substr(0, 120));
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  if (s.size() > 120) out += "...";
  return out;
}

json parse_json(std::string_view text, const char* what) {
  if (text.size() > kMaxDocumentBytes)
    throw Error(std::string(what) + ": " + std::to_string(text.size()) +
                " bytes, more than the limit of " + std::to_string(kMaxDocumentBytes));
  try {
    json j = json::parse(text.begin(), text.end());
    if (!j.is_object()) throw Error(std::string(what) + ": not a JSON object");
    return j;
  } catch (const json::exception& e) {
    throw Error(std::string(what) + ": invalid JSON: " + e.what());
  }
}

[[noreturn]] void bad(const std::string& where, const std::string& msg) {
  throw Error(where + ": " + msg);
}

const json* field(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

std::string get_string(const json& obj, const char* key, const std::string& where, bool required) {
  const json* v = field(obj, key);
  if (!v || v->is_null()) {
    if (required) bad(where, std::string("missing '") + key + "'");
    return {};
  }
  if (!v->is_string()) bad(where, std::string("'") + key + "' is not a string");
  return v->get<std::string>();
}

int64_t get_size(const json& obj, const std::string& where) {
  const json* v = field(obj, "size");
  if (!v) bad(where, "missing 'size'");
  if (v->is_number_unsigned()) {
    uint64_t u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      bad(where, "size too large");
    return static_cast<int64_t>(u);
  }
  if (v->is_number_integer()) {
    int64_t i = v->get<int64_t>();
    if (i < 0) bad(where, "negative size " + std::to_string(i));
    return i;
  }
  bad(where, "'size' is not an integer");
}

Digest get_digest(const json& obj, const char* key, const std::string& where) {
  std::string s = get_string(obj, key, where, true);
  if (!Digest::valid(s)) bad(where, "invalid digest '" + shown(s) + "'");
  return Digest::parse(s);
}

void check_schema_version(const json& j, const char* what) {
  const json* v = field(j, "schemaVersion");
  if (!v) throw Error(std::string(what) + ": missing 'schemaVersion'");
  if (!v->is_number_integer()) throw Error(std::string(what) + ": 'schemaVersion' is not a number");
  if (v->get<int64_t>() == 1)
    throw Error(std::string(what) + ": Docker schema 1 manifests are not supported");
  if (v->get<int64_t>() != 2)
    throw Error(std::string(what) + ": unsupported schemaVersion " + v->dump());
}

Platform parse_platform_object(const json& p, const std::string& where) {
  if (!p.is_object()) bad(where, "'platform' is not an object");
  Platform out;
  out.os = get_string(p, "os", where + ".platform", true);
  out.architecture = get_string(p, "architecture", where + ".platform", true);
  out.variant = get_string(p, "variant", where + ".platform", false);
  return out;
}

constexpr size_t kMaxUrls = 16;

Descriptor parse_descriptor(const json& d, const std::string& where) {
  if (!d.is_object()) bad(where, "not an object");
  Descriptor out;
  out.media_type = get_string(d, "mediaType", where, true);
  out.digest = get_digest(d, "digest", where);
  out.size = get_size(d, where);
  if (const json* p = field(d, "platform"); p && !p->is_null())
    out.platform = parse_platform_object(*p, where);
  if (const json* a = field(d, "annotations"); a && !a->is_null()) {
    if (!a->is_object()) bad(where, "'annotations' is not an object");
    for (const auto& [k, v] : a->items()) {
      if (!v.is_string()) bad(where, "annotation '" + shown(k) + "' is not a string");
      out.annotations.emplace(k, v.get<std::string>());
    }
  }
  if (const json* u = field(d, "urls"); u && !u->is_null()) {
    if (!u->is_array()) bad(where, "'urls' is not an array");
    if (u->size() > kMaxUrls) bad(where, "more than " + std::to_string(kMaxUrls) + " urls");
    for (const auto& v : *u) {
      if (!v.is_string()) bad(where, "a url is not a string");
      if (v.get_ref<const std::string&>().size() > 4096) bad(where, "a url is too long");
      out.urls.push_back(v.get<std::string>());
    }
  }
  return out;
}

const json& get_array(const json& obj, const char* key, const std::string& where) {
  const json* v = field(obj, key);
  if (!v) bad(where, std::string("missing '") + key + "'");
  if (!v->is_array()) bad(where, std::string("'") + key + "' is not an array");
  return *v;
}

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

// containerd's platformVector: the platforms `want` can run, best first.
std::vector<Platform> platform_vector(const Platform& want) {
  std::vector<Platform> v{want};
  auto version = [](const std::string& variant) -> int {
    if (variant.size() < 2 || variant[0] != 'v') return -1;
    for (size_t i = 1; i < variant.size(); ++i)
      if (variant[i] < '0' || variant[i] > '9') return -1;
    if (variant.size() > 4) return -1;
    return std::stoi(variant.substr(1));
  };
  if (want.architecture == "amd64") {
    int n = version(want.variant);
    for (int i = n - 1; n > 1 && i >= 1; --i)
      v.push_back({want.os, "amd64", i == 1 ? "" : "v" + std::to_string(i)});
    v.push_back({want.os, "386", ""});
  } else if (want.architecture == "arm") {
    int n = version(want.variant);
    for (int i = n - 1; n > 5 && i >= 5; --i)
      v.push_back({want.os, "arm", "v" + std::to_string(i)});
  } else if (want.architecture == "arm64") {
    auto arm = platform_vector({want.os, "arm", want.variant.empty() ? "v8" : want.variant});
    v.insert(v.end(), arm.begin(), arm.end());
  }
  return v;
}

}  // namespace

Platform Platform::normalized() const {
  Platform p{lower(os), lower(architecture), lower(variant)};
  if (p.os == "macos") p.os = "darwin";
  if (p.architecture == "i386") {
    p.architecture = "386";
    p.variant.clear();
  } else if (p.architecture == "x86_64" || p.architecture == "x86-64" ||
             p.architecture == "amd64") {
    p.architecture = "amd64";
    if (p.variant == "v1") p.variant.clear();
  } else if (p.architecture == "aarch64" || p.architecture == "arm64") {
    p.architecture = "arm64";
    if (p.variant == "8" || p.variant == "v8" || p.variant == "v8.0") p.variant.clear();
    if (p.variant == "9" || p.variant == "9.0" || p.variant == "v9.0") p.variant = "v9";
  } else if (p.architecture == "armhf") {
    p.architecture = "arm";
    p.variant = "v7";
  } else if (p.architecture == "armel") {
    p.architecture = "arm";
    p.variant = "v6";
  } else if (p.architecture == "arm") {
    if (p.variant.empty() || p.variant == "7")
      p.variant = "v7";
    else if (p.variant == "5" || p.variant == "6" || p.variant == "8")
      p.variant = "v" + p.variant;
  }
  return p;
}

Platform Platform::parse(std::string_view s) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    size_t slash = s.find('/', start);
    parts.emplace_back(s.substr(start, slash == std::string_view::npos ? slash : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  auto fail = [&]() {
    throw Error("invalid platform '" + shown(s) + "' (want OS/ARCH[/VARIANT], e.g. linux/arm64)");
  };
  if (parts.size() < 2 || parts.size() > 3) fail();
  for (auto& p : parts) {
    p = lower(p);
    if (p.empty() || p.size() > 32 || p == "." || p == ".." ||
        !std::all_of(p.begin(), p.end(), is_name_char))
      fail();
  }
  Platform out{parts[0], parts[1], parts.size() == 3 ? parts[2] : ""};
  return out.normalized();
}

Platform Platform::host() {
#if defined(__x86_64__)
  return {"linux", "amd64", ""};
#elif defined(__aarch64__)
  return {"linux", "arm64", ""};
#elif defined(__i386__)
  return {"linux", "386", ""};
#elif defined(__arm__) && defined(__ARM_ARCH) && __ARM_ARCH >= 7
  return {"linux", "arm", "v7"};
#elif defined(__arm__) && defined(__ARM_ARCH) && __ARM_ARCH == 6
  return {"linux", "arm", "v6"};
#elif defined(__arm__)
  return {"linux", "arm", "v5"};
#elif defined(__riscv) && __riscv_xlen == 64
  return {"linux", "riscv64", ""};
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  return {"linux", "ppc64le", ""};
#elif defined(__s390x__)
  return {"linux", "s390x", ""};
#else
#error "unknown host architecture: add it to Platform::host()"
#endif
}

std::string Platform::str() const {
  std::string s = os + "/" + architecture;
  if (!variant.empty()) s += "/" + variant;
  return s;
}

DocKind classify(std::string_view text, std::string_view content_type) {
  json j = parse_json(text, "manifest");
  std::string mt = get_string(j, "mediaType", "manifest", false);
  auto kind_of = [](std::string_view t) -> int {  // 0 unknown, 1 manifest, 2 index, 3 schema1
    if (is_manifest_type(t)) return 1;
    if (is_index_type(t)) return 2;
    if (t == kDockerSchema1 || t == kDockerSchema1Signed) return 3;
    return 0;
  };
  // Content-Type may carry parameters ("; charset=utf-8").
  std::string_view ct = content_type.substr(0, content_type.find(';'));
  while (!ct.empty() && ct.back() == ' ') ct.remove_suffix(1);
  int from_header = kind_of(ct);
  int from_doc = mt.empty() ? 0 : kind_of(mt);
  if (!mt.empty() && from_doc == 0)
    throw Error("manifest: unsupported media type '" + shown(mt) + "'");
  if (from_doc == 3 || (from_doc == 0 && from_header == 3))
    throw Error("manifest: Docker schema 1 manifests are not supported");
  if (from_doc && from_header && from_header != 3 && from_doc != from_header)
    throw Error("manifest: mediaType '" + shown(mt) + "' disagrees with Content-Type '" +
                shown(ct) + "'");
  int kind = from_doc ? from_doc : from_header;
  if (kind == 0) {
    bool has_manifests = j.contains("manifests");
    bool has_image = j.contains("config") || j.contains("layers");
    if (has_manifests && has_image)
      throw Error("manifest: ambiguous document (has both 'manifests' and 'config'/'layers')");
    if (!has_manifests && !has_image)
      throw Error("manifest: neither an image manifest nor an image index");
    kind = has_manifests ? 2 : 1;
  }
  if (kind == 1 && j.contains("manifests"))
    throw Error("manifest: image manifest has a 'manifests' field");
  if (kind == 2 && (j.contains("config") || j.contains("layers")))
    throw Error("manifest: image index has 'config' or 'layers'");
  return kind == 1 ? DocKind::Manifest : DocKind::Index;
}

Manifest parse_manifest(std::string_view text) {
  json j = parse_json(text, "manifest");
  check_schema_version(j, "manifest");
  Manifest m;
  m.media_type = get_string(j, "mediaType", "manifest", false);
  if (!m.media_type.empty() && !is_manifest_type(m.media_type)) {
    if (is_index_type(m.media_type)) throw Error("manifest: is an image index, not a manifest");
    throw Error("manifest: unsupported media type '" + shown(m.media_type) + "'");
  }
  if (m.media_type.empty()) m.media_type = std::string(kOciManifest);
  if (j.contains("manifests")) throw Error("manifest: image manifest has a 'manifests' field");
  const json* cfg = field(j, "config");
  if (!cfg) throw Error("manifest: missing 'config'");
  m.config = parse_descriptor(*cfg, "manifest: config");
  if (!is_config_type(m.config.media_type))
    throw Error("manifest: config media type '" + shown(m.config.media_type) +
                "' is not a container image config");
  if (m.config.size > static_cast<int64_t>(kMaxDocumentBytes))
    throw Error("manifest: config size " + std::to_string(m.config.size) +
                " is over the limit of " + std::to_string(kMaxDocumentBytes));
  const json& layers = get_array(j, "layers", "manifest");
  if (layers.size() > kMaxLayers)
    throw Error("manifest: " + std::to_string(layers.size()) + " layers, more than the limit of " +
                std::to_string(kMaxLayers));
  for (size_t i = 0; i < layers.size(); ++i) {
    std::string where = "manifest: layers[" + std::to_string(i) + "]";
    Descriptor d = parse_descriptor(layers[i], where);
    if (layer_kind(d.media_type) == LayerKind::Unsupported)
      throw Error(where + ": unsupported layer media type '" + shown(d.media_type) + "'");
    m.layers.push_back(std::move(d));
  }
  return m;
}

Index parse_index(std::string_view text, std::vector<BadIndexEntry>* bad) {
  json j = parse_json(text, "index");
  check_schema_version(j, "index");
  Index idx;
  idx.media_type = get_string(j, "mediaType", "index", false);
  if (!idx.media_type.empty() && !is_index_type(idx.media_type)) {
    if (is_manifest_type(idx.media_type)) throw Error("index: is an image manifest, not an index");
    throw Error("index: unsupported media type '" + shown(idx.media_type) + "'");
  }
  if (idx.media_type.empty()) idx.media_type = std::string(kOciIndex);
  if (j.contains("config") || j.contains("layers"))
    throw Error("index: image index has 'config' or 'layers'");
  const json& ms = get_array(j, "manifests", "index");
  if (ms.size() > kMaxIndexEntries)
    throw Error("index: " + std::to_string(ms.size()) + " entries, more than the limit of " +
                std::to_string(kMaxIndexEntries));
  for (size_t i = 0; i < ms.size(); ++i) {
    std::string where = "index: manifests[" + std::to_string(i) + "]";
    try {
      Descriptor d = parse_descriptor(ms[i], where);
      if ((is_manifest_type(d.media_type) || is_index_type(d.media_type)) &&
          d.size > static_cast<int64_t>(kMaxDocumentBytes))
        throw Error(where + ": size " + std::to_string(d.size) + " is over the limit of " +
                    std::to_string(kMaxDocumentBytes));
      idx.manifests.push_back(std::move(d));
    } catch (const Error& e) {
      if (!bad) throw;
      BadIndexEntry b{i, {}, e.line()};
      const json* a = ms[i].is_object() ? field(ms[i], "annotations") : nullptr;
      if (a && a->is_object()) {
        auto it = a->find("org.opencontainers.image.ref.name");
        if (it != a->end() && it->is_string()) b.ref_name = it->get<std::string>();
      }
      bad->push_back(std::move(b));
    }
  }
  return idx;
}

ImageConfig parse_config(std::string_view text) {
  json j = parse_json(text, "config");
  ImageConfig c;
  const json* rootfs = field(j, "rootfs");
  if (!rootfs) throw Error("config: missing 'rootfs'");
  if (!rootfs->is_object()) throw Error("config: 'rootfs' is not an object");
  std::string type = get_string(*rootfs, "type", "config: rootfs", true);
  if (type != "layers")
    throw Error("config: rootfs.type is '" + shown(type) + "', only 'layers' is supported");
  const json& ids = get_array(*rootfs, "diff_ids", "config: rootfs");
  if (ids.size() > kMaxLayers)
    throw Error("config: " + std::to_string(ids.size()) + " diff_ids, more than the limit of " +
                std::to_string(kMaxLayers));
  for (size_t i = 0; i < ids.size(); ++i) {
    std::string where = "config: rootfs.diff_ids[" + std::to_string(i) + "]";
    if (!ids[i].is_string()) bad(where, "not a string");
    std::string s = ids[i].get<std::string>();
    if (!Digest::valid(s)) bad(where, "invalid digest '" + shown(s) + "'");
    c.diff_ids.push_back(Digest::parse(s));
  }
  c.platform.os = get_string(j, "os", "config", false);
  c.platform.architecture = get_string(j, "architecture", "config", false);
  c.platform.variant = get_string(j, "variant", "config", false);
  c.created = get_string(j, "created", "config", false);
  c.raw = std::string(text);
  return c;
}

const Descriptor& select_platform(const Index& index, const Platform& want_in) {
  Platform want = want_in.normalized();
  std::vector<Platform> vec = platform_vector(want);
  const Descriptor* best = nullptr;
  size_t best_rank = SIZE_MAX;
  for (const auto& d : index.manifests) {
    if (!is_manifest_type(d.media_type) && !is_index_type(d.media_type)) continue;
    size_t rank;
    if (!d.platform) {
      // No platform: usable by anyone, but after every exact match.
      rank = vec.size();
    } else {
      Platform p = d.platform->normalized();
      auto it = std::find(vec.begin(), vec.end(), p);
      if (it == vec.end()) continue;
      rank = static_cast<size_t>(it - vec.begin());
    }
    if (rank < best_rank) {
      best = &d;
      best_rank = rank;
    }
  }
  if (!best) {
    std::string avail;
    for (const auto& d : index.manifests) {
      if (!d.platform || (!is_manifest_type(d.media_type) && !is_index_type(d.media_type)))
        continue;
      std::string s = shown(d.platform->normalized().str());
      if (avail.find(s) != std::string::npos) continue;
      avail += avail.empty() ? s : ", " + s;
    }
    throw Error("no image for platform " + want.str() +
                " in the index (available: " + (avail.empty() ? "none" : avail) + ")");
  }
  return *best;
}

void check_layers_match(const Manifest& m, const ImageConfig& c) {
  if (m.layers.size() != c.diff_ids.size())
    throw Error("config has " + std::to_string(c.diff_ids.size()) + " diff_ids for " +
                std::to_string(m.layers.size()) + " layers in the manifest");
}

}  // namespace layer::oci
