// Layout: the only code that builds store paths (DESIGN.md, store format
// version 2: docs/store-format-2.md). All paths are relative to the store root, to be used with the
// root dirfd. Stateless; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "util/digest.hpp"

namespace layer::store {

inline constexpr int kStoreVersion = 2;
// Format 1 had no content objects; `layerctl migrate` converts it.
inline constexpr int kOldestMigratableVersion = 1;

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
  // objects.list: the content objects the layer's entries redirect to.
  static std::string layer_objects(const Digest& diff_id);  // .../objects.list
  // A lazily pulled layer (docs/lazy-pull.md): where its blob is (lazy.json)
  // and the blob's bytes that hold its verified TOC, at their offsets in a
  // sparse file (toc.blob). Both go once the layer is complete.
  static std::string layer_lazy(const Digest& diff_id);      // .../lazy.json
  static std::string layer_toc_blob(const Digest& diff_id);  // .../toc.blob
  static constexpr const char* kLazyJson = "lazy.json";
  static constexpr const char* kTocBlob = "toc.blob";
  // Content objects: objects/<alg>/<2 hex>/<rest hex>, immutable, 0444.
  // objects/ is the kernel's data-only lower layer (datadir+=).
  static std::string objects_dir() { return "objects"; }
  // Access lists of lazily pulled blobs (docs/lazy-pull.md): hints only.
  static std::string access_dir() { return "access"; }
  static std::string access_list(const Digest& blob);  // access/<alg>-<hex>
  static std::string objects_alg_dir(const std::string& algorithm);  // objects/sha256
  static std::string object_fanout(const Digest& d);                 // objects/sha256/ab
  static std::string object(const Digest& d);                        // objects/sha256/ab/cdef...
  // The redirect marker's value on a layer entry whose data is object d:
  // "/sha256/ab/cdef...", absolute from objects/.
  static std::string object_redirect(const Digest& d);
  // The object a redirect value names; nullopt for anything else (relative,
  // other shape, bad hex), so only what object_redirect made is accepted.
  static std::optional<Digest> parse_object_redirect(std::string_view value);
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
