#include "store/layout.hpp"

#include "util/error.hpp"

namespace layer::store {

namespace {

bool plain_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-' || c == ':' || c == '@' || c == '+';
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

std::string Layout::blobs_dir(const std::string& algorithm) {
  return "blobs/" + algorithm;
}

std::string Layout::blob(const Digest& d) {
  return blobs_dir(d.algorithm) + "/" + d.hex;
}

std::string Layout::layers_dir(const std::string& algorithm) {
  return "layers/" + algorithm;
}

std::string Layout::layer_dir(const Digest& diff_id) {
  return layers_dir(diff_id.algorithm) + "/" + diff_id.hex;
}

std::string Layout::layer_diff(const Digest& diff_id) {
  return layer_dir(diff_id) + "/diff";
}

std::string Layout::layer_json(const Digest& diff_id) {
  return layer_dir(diff_id) + "/layer.json";
}

std::string Layout::layer_files(const Digest& diff_id) {
  return layer_dir(diff_id) + "/files.json.zst";
}

std::string Layout::layer_objects(const Digest& diff_id) {
  return layer_dir(diff_id) + "/objects.list";
}

std::string Layout::access_list(const Digest& blob) {
  return access_dir() + "/" + blob.algorithm + "-" + blob.hex;
}

std::string Layout::layer_lazy(const Digest& diff_id) {
  return layer_dir(diff_id) + "/" + kLazyJson;
}

std::string Layout::layer_toc_blob(const Digest& diff_id) {
  return layer_dir(diff_id) + "/" + kTocBlob;
}

std::string Layout::objects_alg_dir(const std::string& algorithm) {
  return objects_dir() + "/" + algorithm;
}

std::string Layout::object_fanout(const Digest& d) {
  return objects_alg_dir(d.algorithm) + "/" + d.hex.substr(0, 2);
}

std::string Layout::object(const Digest& d) {
  return object_fanout(d) + "/" + d.hex.substr(2);
}

std::string Layout::object_redirect(const Digest& d) {
  return "/" + d.algorithm + "/" + d.hex.substr(0, 2) + "/" + d.hex.substr(2);
}

std::optional<Digest> Layout::parse_object_redirect(std::string_view value) {
  // "/<alg>/<2 hex>/<rest hex>": exactly three components, no "." or "..".
  if (value.empty() || value[0] != '/') return std::nullopt;
  value.remove_prefix(1);
  auto a = value.find('/');
  if (a == std::string_view::npos) return std::nullopt;
  auto b = value.find('/', a + 1);
  if (b == std::string_view::npos || b != a + 3) return std::nullopt;
  if (value.find('/', b + 1) != std::string_view::npos) return std::nullopt;
  std::string s = std::string(value.substr(0, a)) + ":" + std::string(value.substr(a + 1, 2)) +
                  std::string(value.substr(b + 1));
  if (!Digest::valid(s)) return std::nullopt;
  return Digest::parse(s);
}

std::string Layout::layer_lock(const Digest& diff_id) {
  return tmp() + "/" + diff_id.algorithm + "-" + diff_id.hex + ".lock";
}

std::string Layout::image_json(const std::string& ref) {
  return images_dir() + "/" + escape_ref(ref) + ".json";
}

// Percent-encoding of everything but [A-Za-z0-9._:@+-], and of a leading '.'
// (so "." and ".." cannot come out). Injective, so unescape_ref inverts it.
std::string Layout::escape_ref(const std::string& ref) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  out.reserve(ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    char c = ref[i];
    if (plain_char(c) && !(i == 0 && c == '.')) {
      out += c;
    } else {
      auto u = static_cast<unsigned char>(c);
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

std::string Layout::unescape_ref(const std::string& escaped) {
  std::string out;
  out.reserve(escaped.size());
  for (size_t i = 0; i < escaped.size(); ++i) {
    if (escaped[i] != '%') {
      out += escaped[i];
      continue;
    }
    int hi = i + 2 < escaped.size() ? hex_value(escaped[i + 1]) : -1;
    int lo = i + 2 < escaped.size() ? hex_value(escaped[i + 2]) : -1;
    if (hi < 0 || lo < 0) throw Error("malformed escaped image name '" + escaped + "'");
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

std::string Layout::container_dir(const std::string& id) {
  return containers_dir() + "/" + id;
}

std::string Layout::container_upper(const std::string& id) {
  return container_dir(id) + "/upper";
}

std::string Layout::container_work(const std::string& id) {
  return container_dir(id) + "/work";
}

std::string Layout::container_json(const std::string& id) {
  return container_dir(id) + "/container.json";
}

std::string Layout::container_log(const std::string& id) {
  return container_dir(id) + "/layerfs.log";
}

}  // namespace layer::store
