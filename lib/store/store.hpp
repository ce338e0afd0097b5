// Store: the content-addressable layer store (DESIGN.md, format version 1).
// A Store object owns the root dirfd and holds the store lock (shared for
// readers and pullers, exclusive for rmi/gc) for its lifetime. Methods are
// thread-safe: pulls ingest several layers at once from one Store.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "store/file_list.hpp"
#include "store/layout.hpp"
#include "util/byte_source.hpp"
#include "util/digest.hpp"
#include "util/unique_fd.hpp"

namespace layer::unpack {
struct LayerSpec;
struct Options;
struct Stats;
using ProgressFn = std::function<void(uint64_t compressed_bytes_read)>;
}  // namespace layer::unpack

namespace layer::store {

struct LayerInfo {
  Digest diff_id;
  std::vector<Digest> compressed;  // compressed digests this layer was seen as
  // Sizes of the compressed blobs this store verified while unpacking them
  // (records written before this field lack it).
  std::map<Digest, int64_t> compressed_sizes;
  uint64_t size = 0;  // bytes of file data in diff/
  uint64_t entries = 0;
  std::string unpacked_at;  // RFC 3339
  // Directories without a tar entry, made for an entry below them: path ->
  // that entry (unpack::Stats::implicit_dirs). Mostly empty.
  std::map<std::string, std::string> implicit_dirs;
  // 2: regular files over unpack::kInlineMax are metadata-only entries whose
  // data is a content object (objects.list names them). 1: all inline.
  int format = 1;
  uint64_t object_bytes = 0;  // bytes of the entries whose data is an object
};

struct ImageRecord {
  std::string ref;  // normalized name: "docker.io/library/debian:bookworm", "oci:/x:tag"
  Digest manifest;  // digest of the image manifest (not the index)
  Digest config;
  std::vector<Digest> diff_ids;  // bottom layer first
  std::string platform;          // "linux/amd64"
  std::string created;           // from the config
  std::string pulled_at;
  uint64_t size = 0;   // sum of the layers' unpacked sizes
  std::string broken;  // fsck --repair: why the image cannot be used ("" = fine)
};

// Who serves a container's mount: the layerfs daemon, or the kernel's
// overlayfs (layerctl mount --kernel; no daemon, pid stays 0).
inline constexpr const char* kEngineLayerfs = "layerfs";
inline constexpr const char* kEngineKernel = "kernel";

struct ContainerRecord {
  std::string id;  // 64 hex
  std::string name;
  std::string image;  // ref of the image
  std::vector<Digest> diff_ids;
  std::string mountpoint;  // absolute
  int pid = 0;             // layerfs daemon pid, 0 when not mounted
  bool read_only = false;
  // Mounted with suid / dev (layerctl mount --suid/--dev; a bundle's rootfs
  // is suid below its 0700 directory); nosuid, nodev otherwise.
  bool suid = false;
  bool dev = false;
  std::string created;
  std::string engine = kEngineLayerfs;
};

enum class LockMode { Shared, Exclusive };

// What gc removed (or, with dry_run, would remove).
struct GcItem {
  enum class Kind { Layer, Blob, Tmp, Quarantined, Object } kind;
  std::string name;    // digest, or the tmp/ or quarantine/ entry's name
  uint64_t bytes = 0;  // disk blocks freed (st_blocks * 512, hardlinks once)
};
struct GcReport {
  std::vector<GcItem> items;
  uint64_t bytes = 0;
};
enum class Ingest { Unpacked, AlreadyPresent };

class Store {
 public:
  // Opens (creating if absent) the store at `root`, refuses a newer format
  // version, takes the store lock and sweeps tmp/ of entries no live process
  // holds. Throws Error naming the root.
  // `sweep` false leaves tmp/ alone (gc sweeps it itself, to account for it).
  // A store of an older format is refused with one line that says how to
  // convert it (`layerctl migrate`).
  static Store open(const std::string& root, LockMode mode = LockMode::Shared, bool sweep = true);
  // Opens with the exclusive lock and accepts formats from
  // kOldestMigratableVersion, for migrate() only.
  static Store open_for_migration(const std::string& root);
  Store(Store&&) noexcept;
  ~Store();

  const std::string& root() const { return root_; }
  int root_fd() const { return root_fd_.get(); }

  // Blobs (manifests, configs; layer blobs only with --keep-blobs).
  bool has_blob(const Digest& d) const;
  void put_blob(const Digest& d, std::string_view data);  // verifies d, publishes atomically
  std::optional<std::string> read_blob(const Digest& d, size_t max) const;
  // Publishes dirfd/name, a file in a staging dir that the caller wrote,
  // fsynced and hashed to `d` while writing, as blob d (rename, fsync of
  // blobs/). A blob already present is kept and the file left where it is.
  void adopt_blob(const Digest& d, int dirfd, const std::string& name);
  // An open, read-only fd of blob d; invalid if absent.
  UniqueFd open_blob(const Digest& d) const;

  // Layers.
  bool has_layer(const Digest& diff_id) const;
  std::optional<LayerInfo> layer_info(const Digest& diff_id) const;
  std::vector<LayerInfo> layers() const;
  // The file list recorded at unpack time; nullopt for a layer unpacked
  // before file lists existed. Throws Error if it is unreadable or corrupt.
  std::optional<FileList> file_list(const Digest& diff_id) const;
  // Streams `src` through unpack::unpack_layer into a private staging dir and
  // publishes it as layers/<diff_id> (fsync, rename, fsync). Holds a
  // per-layer lock, so concurrent processes unpack a layer once: a caller
  // that finds it present after waiting gets AlreadyPresent without reading
  // `src`. On any error nothing appears under layers/. `before_publish`, if
  // set, sees the finished layer (its record and its diff/ directory, still
  // in staging) last and may refuse it by throwing.
  using BeforePublish = std::function<void(const LayerInfo&, int diff_dirfd)>;
  Ingest ingest_layer(const unpack::LayerSpec& spec, ByteSource& src, const unpack::Options& opt,
                      const unpack::ProgressFn& progress = {},
                      const BeforePublish& before_publish = {});

  // ingest_layer with the tree written by `produce` (into the staging diff/,
  // with the options ingest_layer would unpack with) instead of unpacked from
  // a blob. `extra`, if set, writes more records into the staging layer
  // directory before it is synced (a lazy layer's lazy.json and TOC); such a
  // layer records no compressed blob as verified.
  using TreeProducer = std::function<unpack::Stats(int diff_dirfd, const unpack::Options&)>;
  using ExtraRecords = std::function<void(int layer_dirfd)>;
  Ingest ingest_tree(const unpack::LayerSpec& spec, const unpack::Options& opt,
                     const TreeProducer& produce, const ExtraRecords& extra,
                     const BeforePublish& before_publish = {});
  // A lazily pulled layer (issue 20) whose content objects are not all
  // present yet: it has a lazy.json.
  bool is_lazy_layer(const Digest& diff_id) const;
  // A lazy layer's objects: how many of those its entries name are present.
  // nullopt for a layer that is not lazy.
  struct LazyPresence {
    size_t present = 0;
    size_t total = 0;
  };
  std::optional<LazyPresence> lazy_presence(const Digest& diff_id) const;
  // Completes a lazily pulled layer from its whole blob `src`, streamed as
  // ingest_layer streams it (size, digest and diff_id verified): the blob
  // is unpacked into a throwaway staging tree with every file as a content
  // object, that tree must list exactly as the layer's (FileList::compare:
  // the TOC described the blob truly), the objects the layer still lacked
  // are published, and the layer becomes an ordinary one (layer.json
  // records the blob; lazy.json and toc.blob go). False, with `src` unread,
  // if the layer is not lazy (any more). Throws Error naming the first
  // difference; the layer then stays as it was.
  bool complete_lazy_layer(const unpack::LayerSpec& spec, ByteSource& src,
                           const unpack::Options& opt, const unpack::ProgressFn& progress = {});

  // Content objects (docs/store-format-2.md): objects/<alg>/<2 hex>/<rest>.
  int objects_fd() const { return objects_fd_.get(); }
  bool has_object(const Digest& d) const;
  // The objects a layer's entries redirect to (objects.list); empty for a
  // format-1 layer. Throws Error if the list is unreadable or malformed.
  std::vector<Digest> layer_objects(const Digest& diff_id) const;
  // Every object present, by listing objects/.
  std::vector<Digest> objects() const;
  // Publishes each file <hex> of `staging` (a directory on the store's file
  // system whose files are complete and, with `sync`, already on disk) as
  // object sha256:<hex>, by rename without replacing: an object published
  // meanwhile by another process is kept and the staged copy dropped. With
  // `sync`, the object directories are durable when this returns, so a layer
  // published after it never names a missing object.
  void publish_objects(int staging, bool sync);

  // Converts a store of format 1: each layer is rebuilt with content objects
  // in staging (directories, links and small files shared with the old tree
  // by hard links), made durable and swapped in by one atomic exchange; the
  // version in store.json changes last. Resumable: a layer already of format
  // 2 is skipped. Refuses while a container is mounted. REQUIRES the store
  // from open_for_migration. Returns the number of layers converted.
  uint64_t migrate(const std::function<void(const Digest&)>& on_layer = {});

  // Images. put_image REQUIRES every diff_id present; it is published last.
  void put_image(const ImageRecord& rec);
  std::vector<ImageRecord> images() const;
  // By ref (exact or normalized), by full or short (>= 12 hex) config digest.
  std::optional<ImageRecord> find_image(const std::string& name) const;
  // Removes the image record, then every layer and blob no image or
  // container references. REQUIRES LockMode::Exclusive. Returns the layers
  // removed. Throws Error if a container uses the image.
  std::vector<Digest> remove_image(const std::string& name);
  // Marks an image unusable (fsck --repair, when a layer had to be
  // quarantined). Cleared by the next put_image of the same ref.
  void mark_image_broken(const std::string& ref, const std::string& reason);

  // Removes every layer and blob that no image or container references and
  // every tmp/ entry no live process holds, each by a rename into tmp/ and
  // then deletion, so a crash leaves nothing half-removed in view. Layers
  // under quarantine/ are kept unless `quarantine` is set (they were moved
  // there by fsck --repair for inspection). With dry_run, only reports.
  // REQUIRES LockMode::Exclusive. Safe against concurrent pulls and mounts:
  // every writer of layers and references holds the shared store lock from
  // before it publishes a layer until after it has written the image or
  // container record that references it, so under the exclusive lock no
  // layer is "published but not yet referenced".
  GcReport gc(bool dry_run = false, bool quarantine = false);

  // Moves a layer (or blob) out of layers/ (blobs/) into
  // quarantine/<kind>-<alg>-<hex>-<time>, for fsck --repair. Returns the new
  // path relative to the root. REQUIRES LockMode::Exclusive.
  std::string quarantine_layer(const Digest& diff_id);
  std::string quarantine_blob(const Digest& d);
  std::string quarantine_object(const Digest& d);

  // Containers (written by layerctl mount; read by rmi/gc).
  std::vector<ContainerRecord> containers() const;
  std::optional<ContainerRecord> find_container(const std::string& id_or_name) const;
  // How a record is published. kDurable: it survives a crash once written.
  // kAtomic: a crash may leave the record before it (whole), for state a
  // crash makes stale anyway (a daemon's pid), saving a directory fsync.
  enum class Publish { kDurable, kAtomic };
  // container.json, atomically
  void put_container(const ContainerRecord& rec, Publish how = Publish::kDurable);
  void remove_container(const std::string& id);    // its dir, upper included

  // A fresh private directory under tmp/ (flock'ed while the fd is open, so a
  // concurrent open() never sweeps it). Caller removes it or leaves it to the sweep.
  struct Staging {
    std::string name;  // relative to tmp/
    UniqueFd fd;       // the directory, flock'ed
  };
  Staging make_staging(const std::string& prefix) const;
  int tmp_fd() const { return tmp_fd_.get(); }

 private:
  Store() = default;
  // Removes (or, with dry_run, only lists) tmp/ entries no live process holds.
  std::vector<GcItem> sweep_tmp(bool dry_run = false) const;
  std::string quarantine(const std::string& from, const std::string& kind, const Digest& d);
  void write_record(const std::string& path, const std::string& text,
                    Publish how = Publish::kDurable);
  static Store open_impl(const std::string& root, LockMode mode, bool sweep, bool for_migration);
  void migrate_layer(const Digest& diff_id);

  LockMode mode_ = LockMode::Shared;
  std::string root_;
  UniqueFd root_fd_;
  UniqueFd lock_fd_;
  UniqueFd tmp_fd_;
  UniqueFd objects_fd_;  // objects/
  int version_ = kStoreVersion;  // of store.json; older only for migration
};

}  // namespace layer::store
