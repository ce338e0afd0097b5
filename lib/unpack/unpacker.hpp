// unpack_layer: streams one layer blob through the compressed digest check,
// decompression (gzip/zstd by media type, checked against magic bytes), the
// diff_id check (trailing bytes after the tar end included) and libarchive's
// tar reader into a staging directory, converting OCI whiteouts to the
// overlay format and refusing hostile entries. Decompression runs on its own
// thread, overlapped with writing. Thread-safe: concurrent calls share nothing.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <unordered_map>

#include "util/byte_source.hpp"
#include "util/digest.hpp"

namespace layer::unpack {

struct LayerSpec {
  std::string media_type;  // decides the decompressor
  Digest digest;           // compressed digest (descriptor)
  int64_t size = -1;       // descriptor size; -1 if unknown
  Digest diff_id;          // from the image config
  std::string image;       // for error messages only
};

struct Limits {
  uint64_t max_bytes = 64ull << 30;  // uncompressed tar bytes
  uint64_t max_entries = 4'000'000;
  uint64_t max_name = 4096;       // bytes per path
  uint64_t max_xattr = 64 << 10;  // bytes per xattr value
};

// Files up to this size stay inline in the layer tree (docs/store-format-2.md:
// a metadata-only entry costs an inode plus, on ext4, a 4 KiB xattr block).
inline constexpr uint64_t kInlineMax = 4096;

struct Options {
  Limits limits;
  // Rootless: whiteouts as zero-size files with the user-namespace whiteout
  // xattr, opaque dirs marked there too (lib/format), no chown, devices
  // skipped. Default: geteuid() != 0.
  bool rootless = false;
  // Store::ingest_layer: syncfs the staging tree before publishing it, so a
  // power loss cannot leave a published layer with missing data. Off only
  // where durability does not matter (throwaway stores, benchmarks of the
  // unpack alone).
  bool sync = true;
  // Hash each regular file's content (sha256) as it is written and return
  // the digests in Stats::content_digests, for the layer's file list
  // (store::FileList). Costs one sha256 pass on the writer thread.
  bool record_digests = true;
  // Content objects (store format 2, docs/store-format-2.md). With
  // objects_dir >= 0 (the store's objects/ dir, only read here), a regular
  // file of more than inline_max bytes becomes a metadata-only entry: a
  // sparse file of its size with the metacopy and redirect markers
  // (lib/format; the user namespace when rootless) naming object
  // sha256:<hex>. An
  // object found under objects_dir or already staged is not written again;
  // a new one is staged as object_staging/<hex> (0444, same file system) for
  // the caller to publish, fsynced, before the layer.
  int objects_dir = -1;
  int object_staging = -1;
  // Store::ingest_layer makes content objects (sets the two fds above) only
  // when this is set: store format 2. Off: every file inline (format 1's
  // layout, for comparisons: layerctl pull --inline-files).
  bool share_content = true;
  uint64_t inline_max = kInlineMax;
};

struct Stats {
  uint64_t compressed_bytes = 0;
  uint64_t tar_bytes = 0;
  uint64_t entries = 0;
  uint64_t file_bytes = 0;
  // Options::record_digests: the content sha256 of the regular file at each
  // path of the staging tree, as the last entry for that path left it (a
  // hardlink gets its target's digest). A path missing here is read instead.
  std::unordered_map<std::string, Digest> content_digests;
  // Directories made only because an entry below them needed a parent (no
  // entry of their own): path -> that entry. Where an earlier layer of an
  // image has a symlink at such a path, the entry was written "through" it
  // (pull::check_write_through refuses that image).
  std::map<std::string, std::string> implicit_dirs;
  // Options::objects_dir: the objects the layer's entries name, the bytes of
  // those entries, and the bytes of the objects staged anew.
  std::set<Digest> objects;
  uint64_t object_bytes = 0;
  uint64_t new_object_bytes = 0;
};

using ProgressFn = std::function<void(uint64_t compressed_bytes_read)>;

// REQUIRES: staging_dir is an empty directory. Throws layer::Error whose
// message names spec.image, the layer digest and (for entry errors) the entry.
// On error the staging dir holds garbage for the caller to remove.
Stats unpack_layer(int staging_dir, const LayerSpec& spec, ByteSource& src, const Options& opt,
                   const ProgressFn& progress = {});

}  // namespace layer::unpack
