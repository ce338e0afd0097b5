// Layout: the only code that builds store paths (DESIGN.md, store format
// version 1). All paths are relative to the store root, to be used with the
// root dirfd. Stateless; thread-safe.
#pragma once

#include <string>

#include "util/digest.hpp"

namespace layer::store {

inline constexpr int kStoreVersion = 1;

struct Layout {
  static std::string store_json() { return "store.json"; }
  static std::string lock() { return "lock"; }
  static std::string tmp() { return "tmp"; }
  static std::string blobs_dir(const std::string& algorithm);   // blobs/sha256
  static std::string blob(const Digest& d);                     // blobs/sha256/<hex>
  static std::string layers_dir(const std::string& algorithm);  // layers/sha256
  static std::string layer_dir(const Digest& diff_id);          // layers/sha256/<hex>
  static std::string layer_diff(const Digest& diff_id);         // .../diff
  static std::string layer_json(const Digest& diff_id);         // .../layer.json
  static std::string layer_files(const Digest& diff_id);        // .../files.json.zst
  // quarantine/: damaged layers and blobs fsck --repair moved aside.
  static std::string quarantine_dir() { return "quarantine"; }
  // tmp/<alg>-<hex>.lock: flock'ed while the layer is being unpacked.
  static std::string layer_lock(const Digest& diff_id);
  static std::string images_dir() { return "images"; }
  static std::string image_json(const std::string& ref);  // images/<escaped>.json
  static std::string escape_ref(const std::string& ref);  // reversible, no '/'
  static std::string unescape_ref(const std::string& escaped);
  static std::string containers_dir() { return "containers"; }
  static std::string container_dir(const std::string& id);    // containers/<id>
  static std::string container_upper(const std::string& id);  // .../upper
  static std::string container_work(const std::string& id);   // .../work
  static std::string container_json(const std::string& id);   // .../container.json
  static std::string container_log(const std::string& id);    // .../layerfs.log
};

}  // namespace layer::store
