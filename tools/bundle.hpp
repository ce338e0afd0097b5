// make_bundle: what `layerctl bundle` and `layerctl run` share: a container
// mounted at DIR/rootfs with DIR/config.json, an OCI runtime bundle, and the
// removal of those files. Single-threaded use from a command.
#pragma once

#include <string>
#include <vector>

#include "store/store.hpp"

namespace layer::cli {

struct BundleRequest {
  std::string image;                 // ref or config digest, as given
  std::string dir;                   // absolute; created, or an existing empty directory
  std::string name;                  // empty: the short id
  std::vector<std::string> command;  // replaces the image's Cmd when not empty
};

struct Bundle {
  store::ContainerRecord rec;  // mounted, rec.pid set
  std::string dir;
  std::string rootfs;        // dir + "/rootfs"
  bool created_dir = false;  // dir was made by make_bundle
};

// Mounts the container and writes config.json. On failure nothing is left
// (no mount, container, config.json or directory it made). Throws Error.
Bundle make_bundle(store::Store& st, const BundleRequest& req);

// Removes config.json, the (unmounted) rootfs directory and dir if
// make_bundle created it. Never throws.
void remove_bundle_files(const Bundle& b) noexcept;

}  // namespace layer::cli
