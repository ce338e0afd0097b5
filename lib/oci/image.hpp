// OCI image documents: descriptors, manifests, indexes, image configs and
// platforms, parsed with nlohmann/json and validated as hostile input
// (size caps, digest syntax, media types, rootfs.type, diff_id counts).
// Plain values; parsing is thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/digest.hpp"

namespace layer::oci {

inline constexpr size_t kMaxDocumentBytes = 4 << 20;  // manifests, indexes, configs
inline constexpr size_t kMaxLayers = 1024;            // layers in one manifest
inline constexpr size_t kMaxIndexEntries = 4096;      // manifests in one index

struct Platform {
  std::string os;            // "linux"
  std::string architecture;  // "amd64", "arm64", ...
  std::string variant;       // "v8", "v7", or empty
  // "linux/amd64", "linux/arm64/v8"; throws Error on anything else.
  static Platform parse(std::string_view s);
  static Platform host();  // this machine
  std::string str() const;
  // containerd's normalization: x86_64 → amd64, aarch64 → arm64 (v8 dropped),
  // arm → arm/v7, armhf → arm/v7, i386 → 386, lowercase.
  Platform normalized() const;
  bool operator==(const Platform&) const = default;
};

struct Descriptor {
  std::string media_type;
  Digest digest;
  int64_t size = -1;
  std::optional<Platform> platform;  // index entries only
  std::map<std::string, std::string> annotations;
  std::vector<std::string> urls;  // where a non-distributable layer may be fetched
};

struct Manifest {
  Descriptor config;
  std::vector<Descriptor> layers;
  std::string media_type;  // kOciManifest or kDockerManifest
};

struct Index {
  std::vector<Descriptor> manifests;
  std::string media_type;  // kOciIndex or kDockerManifestList
};

struct ImageConfig {
  std::vector<Digest> diff_ids;  // rootfs.diff_ids, bottom layer first
  Platform platform;             // os/architecture/variant of the image
  std::string created;           // RFC 3339 or empty
  std::string raw;               // the config JSON as fetched (verified bytes)
};

// Kind of a top-level document: by `mediaType` if present, else by shape.
// Throws Error if it could be read both as manifest and as index, or neither.
enum class DocKind { Manifest, Index };
DocKind classify(std::string_view json, std::string_view content_type = {});

// An index entry that is not a valid descriptor (bad digest, size, ...).
struct BadIndexEntry {
  size_t position;       // in "manifests"
  std::string ref_name;  // its org.opencontainers.image.ref.name annotation, if a string
  std::string message;   // the parse error, naming the field at fault
};

Manifest parse_manifest(std::string_view json);  // throws Error naming the field at fault
// With `bad` null an invalid entry throws; otherwise it is left out of the
// Index and described in *bad (an OCI layout's index.json holds entries for
// unrelated images: only the one pulled must be valid).
Index parse_index(std::string_view json, std::vector<BadIndexEntry>* bad = nullptr);
ImageConfig parse_config(std::string_view json);

// Picks the best manifest in `index` for `want` with containerd's matcher
// rules (arm64 → v8 default, arm v7 → v6 → v5 fallbacks, amd64 variants).
// Throws Error listing the platforms available when none matches.
const Descriptor& select_platform(const Index& index, const Platform& want);

// Refuses a config whose rootfs.diff_ids do not pair one-to-one with the
// manifest's layers.
void check_layers_match(const Manifest& m, const ImageConfig& c);

}  // namespace layer::oci
