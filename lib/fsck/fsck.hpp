// fsck: checks a store against itself (layer trees against the file lists
// recorded at unpack time, blobs against their digests, layer.json, image
// and container records against what they reference) and repairs what it
// can: damaged layers are quarantined and re-pulled from the image's source,
// or the images that use them are marked broken. Functions over a Store the
// caller owns; single-threaded.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "oci/image_source.hpp"
#include "store/store.hpp"

namespace layer::fsck {

enum class Severity { Damage, Note };
enum class Subject { Store, Layer, Blob, Image, Container, Object };

struct Finding {
  Severity severity = Severity::Damage;
  Subject subject = Subject::Store;
  std::string name;  // digest for a layer or blob, ref for an image, id for a container
  std::string path;  // inside the layer tree ("" when not about a path)
  std::string what;

  // One line: "layer sha256:...: 'usr/bin/ls': content changed (...)".
  std::string line() const;
};

struct Report {
  std::vector<Finding> findings;
  std::set<Digest> damaged_layers;       // trees or records that do not match
  std::set<Digest> damaged_blobs;        // content does not match the digest
  std::set<Digest> damaged_objects;      // content objects whose content does not match
  std::set<Digest> missing_layers;       // referenced by an image, not in the store
  std::set<std::string> damaged_images;  // refs whose layers or blobs are damaged or missing
  uint64_t layers = 0, blobs = 0, images = 0, containers = 0, objects = 0;
  uint64_t files = 0, hashed_bytes = 0;

  bool damaged() const;
};

struct Options {
  std::function<void(const Finding&)> on_finding;  // called as each is found
};

// REQUIRES: a store opened with any lock mode. Never changes the store.
Report check(const store::Store& st, const Options& opt = {});

// Opens the source of an image from its recorded ref (as `layerctl pull`
// would); throws Error when it cannot.
using SourceFactory = std::function<std::unique_ptr<oci::ImageSource>(const std::string& ref)>;

struct RepairAction {
  std::string name;  // layer digest, blob digest or image ref
  std::string what;  // "quarantined at quarantine/...", "re-pulled", "marked broken: ..."
};

// Quarantines every damaged layer and blob of `report`, re-pulls the images
// that used them (or miss layers) through `sources`, and marks the images it
// could not restore broken. Container uppers are never touched. REQUIRES:
// `st` opened with LockMode::Exclusive.
std::vector<RepairAction> repair(store::Store& st, const Report& report,
                                 const SourceFactory& sources,
                                 const std::function<void(const RepairAction&)>& on_action = {});

}  // namespace layer::fsck
