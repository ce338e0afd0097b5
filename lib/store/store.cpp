#include "store/store.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "oci/image.hpp"
#include "store/disk_usage.hpp"
#include "store/file_list.hpp"
#include "store/layout.hpp"
#include "store/records.hpp"
#include "unpack/unpacker.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::store {

using detail::container_from_json;
using detail::container_to_json;
using detail::image_from_json;
using detail::image_to_json;
using detail::kMaxRecordBytes;
using detail::layer_from_json;
using detail::layer_to_json;
using detail::mkdir_at;
using detail::now_rfc3339;
using detail::random_hex;
using detail::read_json;
using nlohmann::json;

namespace detail {

// Takes flock(op) on `fd`, then checks that `name` beneath `dirfd` still is
// the inode of `fd`: whoever removes a lock file or staging dir holds its
// lock while doing so, so a lock taken on an unlinked inode is retried.
bool lock_and_verify(int fd, int dirfd, const std::string& name, int op) {
  if (sys::retry_eintr([&] { return ::flock(fd, op); }) < 0) {
    if (errno == EWOULDBLOCK) return false;
    throw_errno("flock " + name);
  }
  struct stat a, b;
  if (::fstat(fd, &a) < 0) throw_errno("stat " + name);
  if (::fstatat(dirfd, name.c_str(), &b, AT_SYMLINK_NOFOLLOW) < 0) {
    if (errno == ENOENT) return false;
    throw_errno("stat " + name);
  }
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

LayerLock::LayerLock(int root_fd, const Digest& diff_id) : root_fd_(root_fd) {
  name_ = Layout::layer_lock(diff_id);
  for (;;) {
    fd_ = sys::xopen_at(root_fd_, name_, O_RDWR | O_CREAT | O_NOFOLLOW, 0600, name_);
    if (lock_and_verify(fd_.get(), root_fd_, name_, LOCK_EX)) return;
    fd_.reset();
  }
}

LayerLock::~LayerLock() {
  // Unlinked while held: a waiter that then gets the lock sees the name gone
  // (or a new inode) and retries on the new file.
  ::unlinkat(root_fd_, name_.c_str(), 0);
}

StagingTree make_staging_tree(int staging_dir) {
  StagingTree t;
  if (::mkdirat(staging_dir, "diff", 0755) < 0) throw_errno("mkdir staging diff");
  t.diff =
      sys::xopen_at(staging_dir, "diff", O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, "staging diff");
  if (::mkdirat(staging_dir, "objects", 0700) < 0) throw_errno("mkdir staging objects");
  t.objects = sys::xopen_at(staging_dir, "objects", O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0,
                            "staging objects");
  return t;
}

void drop_staging(int tmp_fd, const std::string& name) noexcept {
  try {
    sys::xremove_tree(tmp_fd, name);
  } catch (...) {
    // The sweep removes it at the next open.
  }
}

}  // namespace detail

using detail::LayerLock;
using detail::lock_and_verify;

namespace {

// A container id is used as a path component: 1-128 of [A-Za-z0-9_.-], not
// starting with '.'.
void check_container_id(const std::string& id) {
  bool ok = !id.empty() && id.size() <= 128 && id[0] != '.';
  for (char c : id)
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '_' || c == '-' || c == '.');
  if (!ok) throw Error("invalid container id '" + id + "'");
}

}  // namespace

Store::Store(Store&&) noexcept = default;
Store::~Store() = default;

Store Store::open(const std::string& root, LockMode mode, bool sweep) {
  return open_impl(root, mode, sweep, false);
}

Store Store::open_for_migration(const std::string& root) {
  return open_impl(root, LockMode::Exclusive, true, true);
}

Store Store::open_impl(const std::string& root, LockMode mode, bool sweep, bool for_migration) {
  Store s;
  s.root_ = root;
  s.mode_ = mode;
  if (root.empty()) throw Error("store root is empty");
  auto r = sys::open_at(AT_FDCWD, root.c_str(), O_RDONLY | O_DIRECTORY);
  if (!r && r.error() == ENOENT) {
    sys::xmkdir_p(root, 0700);
    r = sys::open_at(AT_FDCWD, root.c_str(), O_RDONLY | O_DIRECTORY);
  }
  if (!r) throw Error("store " + root, r.error());
  s.root_fd_ = std::move(r).value();
  int rfd = s.root_fd_.get();

  s.lock_fd_ = sys::xopen_at(rfd, Layout::lock(), O_RDWR | O_CREAT | O_NOFOLLOW, 0600,
                             root + "/" + Layout::lock());
  int op = mode == LockMode::Exclusive ? LOCK_EX : LOCK_SH;
  if (sys::retry_eintr([&] { return ::flock(s.lock_fd_.get(), op); }) < 0)
    throw_errno("lock store " + root);

  bool fresh = !sys::exists_at(rfd, Layout::store_json());
  if (!fresh) {
    json j = read_json(rfd, Layout::store_json());
    if (!j.is_object() || !j.contains("version") || !j["version"].is_number_integer())
      throw Error("store " + root + ": store.json has no version");
    int v = j["version"].get<int>();
    if (v > kStoreVersion)
      throw Error("store " + root + " has format version " + std::to_string(v) +
                  ", newer than this layerctl understands (" + std::to_string(kStoreVersion) + ")");
    if (v < 1) throw Error("store " + root + ": bad format version " + std::to_string(v));
    if (v < kStoreVersion && !(for_migration && v >= kOldestMigratableVersion))
      throw Error("store " + root + " has format version " + std::to_string(v) +
                  ": convert it with 'layerctl --root " + root + " migrate'");
    s.version_ = v;
  }

  mkdir_at(rfd, Layout::tmp(), 0700);
  mkdir_at(rfd, "blobs", 0700);
  mkdir_at(rfd, "layers", 0755);
  for (const char* alg : {"sha256", "sha512"}) {
    mkdir_at(rfd, Layout::blobs_dir(alg), 0700);
    mkdir_at(rfd, Layout::layers_dir(alg), 0755);
  }
  mkdir_at(rfd, Layout::images_dir(), 0700);
  mkdir_at(rfd, Layout::containers_dir(), 0755);
  // objects/ is a data-only lower layer of kernel mounts: searchable by all.
  mkdir_at(rfd, Layout::objects_dir(), 0755);
  mkdir_at(rfd, Layout::objects_alg_dir("sha256"), 0755);
  s.objects_fd_ = sys::xopen_at(rfd, Layout::objects_dir(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW,
                                0, root + "/" + Layout::objects_dir());
  s.tmp_fd_ = sys::xopen_at(rfd, Layout::tmp(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0,
                            root + "/" + Layout::tmp());
  if (sweep) s.sweep_tmp();

  if (fresh) {
    Staging st = s.make_staging("store-json-");
    sys::xwrite_file_atomic(st.fd.get(), "store.json", rfd, Layout::store_json(),
                            json{{"version", kStoreVersion}}.dump() + "\n");
    sys::xremove_tree(s.tmp_fd_.get(), st.name);
  }
  return s;
}

// Removes every entry of tmp/ whose flock we can take without waiting: its
// owner is gone (a crashed pull) or it was never locked. Live processes hold
// their staging dirs and layer lock files locked.
std::vector<GcItem> Store::sweep_tmp(bool dry_run) const {
  std::vector<GcItem> out;
  for (const auto& name : sys::xlist_dir(root_fd_.get(), Layout::tmp())) {
    auto r = sys::open_at(tmp_fd_.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    if (!r) {
      // A symlink or socket we cannot open: nothing to lock, just remove it.
      if (r.error() == ELOOP || r.error() == ENXIO) {
        out.push_back({GcItem::Kind::Tmp, name, DiskUsage().add(tmp_fd_.get(), name)});
        if (!dry_run) ::unlinkat(tmp_fd_.get(), name.c_str(), 0);
      }
      continue;
    }
    if (!lock_and_verify(r->get(), tmp_fd_.get(), name, LOCK_EX | LOCK_NB)) continue;
    out.push_back({GcItem::Kind::Tmp, name, DiskUsage().add(tmp_fd_.get(), name)});
    if (dry_run) continue;
    try {
      sys::xremove_tree(tmp_fd_.get(), name);
    } catch (const Error&) {
      // Left for the next sweep; opening the store must not fail on garbage.
      out.pop_back();
    }
  }
  return out;
}

Store::Staging Store::make_staging(const std::string& prefix) const {
  for (;;) {
    std::string name = prefix + random_hex(8);
    if (::mkdirat(tmp_fd_.get(), name.c_str(), 0700) < 0) {
      if (errno == EEXIST) continue;
      throw_errno("mkdir " + root_ + "/tmp/" + name);
    }
    auto r = sys::open_at(tmp_fd_.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (!r) {
      if (r.error() == ENOENT) continue;  // swept before we could lock it
      throw Error("open " + root_ + "/tmp/" + name, r.error());
    }
    if (lock_and_verify(r->get(), tmp_fd_.get(), name, LOCK_EX))
      return Staging{name, std::move(r).value()};
  }
}

// ---- blobs

bool Store::has_blob(const Digest& d) const {
  return sys::exists_at(root_fd_.get(), Layout::blob(d));
}

void Store::put_blob(const Digest& d, std::string_view data) {
  Digest got = Hasher::of(data, d.algorithm);
  if (got != d) throw Error("blob " + d.str() + ": content has digest " + got.str());
  if (has_blob(d)) return;
  Staging st = make_staging("blob-");
  try {
    sys::xwrite_file_atomic(st.fd.get(), "blob", root_fd_.get(), Layout::blob(d), data, 0644);
  } catch (...) {
    sys::xremove_tree(tmp_fd_.get(), st.name);
    throw;
  }
  sys::xremove_tree(tmp_fd_.get(), st.name);
}

void Store::adopt_blob(const Digest& d, int dirfd, const std::string& name) {
  if (has_blob(d)) return;
  if (::renameat(dirfd, name.c_str(), root_fd_.get(), Layout::blob(d).c_str()) < 0)
    throw_errno("publish blob " + d.str());
  UniqueFd dir = sys::xopen_at(root_fd_.get(), Layout::blobs_dir(d.algorithm),
                               O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, "blobs dir");
  sys::xfsync(dir.get(), root_ + "/" + Layout::blobs_dir(d.algorithm));
}

UniqueFd Store::open_blob(const Digest& d) const {
  auto fd = sys::open_at(root_fd_.get(), Layout::blob(d).c_str(), O_RDONLY | O_NOFOLLOW);
  if (!fd) {
    if (fd.error() == ENOENT) return UniqueFd();
    throw Error(root_ + "/" + Layout::blob(d), fd.error());
  }
  return std::move(fd).value();
}

std::optional<std::string> Store::read_blob(const Digest& d, size_t max) const {
  if (!has_blob(d)) return std::nullopt;
  std::string data = sys::xread_file(root_fd_.get(), Layout::blob(d), max, "blob " + d.str());
  if (Hasher::of(data, d.algorithm) != d)
    throw Error("blob " + d.str() + " in store " + root_ + " is corrupt");
  return data;
}

// ---- layers

bool Store::has_layer(const Digest& diff_id) const {
  return sys::exists_at(root_fd_.get(), Layout::layer_json(diff_id));
}

std::optional<LayerInfo> Store::layer_info(const Digest& diff_id) const {
  if (!has_layer(diff_id)) return std::nullopt;
  std::string path = Layout::layer_json(diff_id);
  try {
    return layer_from_json(read_json(root_fd_.get(), path));
  } catch (const json::exception& e) {
    throw Error(root_ + "/" + path + ": " + e.what());
  }
}

std::vector<LayerInfo> Store::layers() const {
  std::vector<LayerInfo> out;
  for (const char* alg : {"sha256", "sha512"}) {
    for (const auto& hex : sys::xlist_dir(root_fd_.get(), Layout::layers_dir(alg))) {
      std::string s = std::string(alg) + ":" + hex;
      if (!Digest::valid(s)) continue;
      if (auto info = layer_info(Digest::parse(s))) out.push_back(std::move(*info));
    }
  }
  return out;
}

namespace {

// A syncfs(fd) on a thread of its own, started at construction; wait()
// returns its errno (0 on success). The destructor waits too, so an
// exception never leaves the thread running. fd < 0: does nothing.
class EarlySync {
 public:
  explicit EarlySync(int fd) {
    if (fd >= 0) thread_ = std::thread([this, fd] { err_ = ::syncfs(fd) < 0 ? errno : 0; });
  }
  ~EarlySync() { wait(); }
  EarlySync(const EarlySync&) = delete;
  EarlySync& operator=(const EarlySync&) = delete;

  int wait() {
    if (thread_.joinable()) thread_.join();
    return err_;
  }

 private:
  std::thread thread_;
  int err_ = 0;  // written by thread_ before it ends, read after join
};

}  // namespace

Ingest Store::ingest_tree(const unpack::LayerSpec& spec, const unpack::Options& opt,
                          const TreeProducer& produce, const ExtraRecords& extra,
                          const BeforePublish& before_publish) {
  LayerLock lock(root_fd_.get(), spec.diff_id);
  // Present: `src` is not read, so spec.digest is unverified and not recorded.
  if (has_layer(spec.diff_id)) return Ingest::AlreadyPresent;
  Staging st = make_staging("layer-");
  try {
    detail::StagingTree tree = detail::make_staging_tree(st.fd.get());
    UniqueFd diff = std::move(tree.diff), staged = std::move(tree.objects);
    unpack::Options uopt = opt;
    if (opt.share_content) {
      uopt.objects_dir = objects_fd_.get();
      uopt.object_staging = staged.get();
    }
    unpack::Stats stats = produce(diff.get(), uopt);
    // The tree's data goes to disk while the file list is built below; the
    // syncfs after it then has only the record files left to write.
    EarlySync early(opt.sync ? st.fd.get() : -1);
    LayerInfo info;
    info.diff_id = spec.diff_id;
    // unpack_layer verified the blob's digest, and its size when given; a
    // lazy layer's blob is verified only when it is complete.
    if (!extra) {
      info.compressed = {spec.digest};
      if (spec.size >= 0) info.compressed_sizes[spec.digest] = spec.size;
    }
    info.size = stats.file_bytes;
    info.entries = stats.entries;
    info.unpacked_at = now_rfc3339();
    info.implicit_dirs = std::move(stats.implicit_dirs);
    info.format = 2;
    info.object_bytes = stats.object_bytes;
    detail::write_object_list(st.fd.get(), stats.objects);
    UniqueFd lj = sys::xopen_at(st.fd.get(), "layer.json", O_WRONLY | O_CREAT | O_EXCL, 0644,
                                "staging layer.json");
    std::string text = layer_to_json(info).dump(2) + "\n";
    if (auto w = sys::write_all(lj.get(), text.data(), text.size()); !w)
      throw Error("write staging layer.json", w.error());
    lj.reset();
    if (extra) extra(st.fd.get());
    if (opt.record_digests) {
      // Metadata walk of the fresh tree; contents were hashed while written.
      std::string list = FileList::scan(diff.get(), stats.content_digests).serialize();
      UniqueFd ff = sys::xopen_at(st.fd.get(), "files.json.zst", O_WRONLY | O_CREAT | O_EXCL, 0644,
                                  "staging files.json.zst");
      if (auto w = sys::write_all(ff.get(), list.data(), list.size()); !w)
        throw Error("write staging files.json.zst", w.error());
    }
    // One syncfs for the whole tree instead of an fsync per file: after it,
    // every file, directory and the layer.json are durable, so the rename
    // below publishes a complete layer. The early syncfs has already written
    // most of it; an error it saw is not reported again by this one.
    if (int err = early.wait(); err) throw Error("syncfs " + root_, err);
    // Objects first, then the layer that names them. Their data is durable
    // (the early syncfs began after the last was written), so they are
    // published now and the one syncfs below makes their names durable
    // with the rest: a crash leaves objects nothing names yet (gc's), never
    // a layer naming a missing one.
    publish_objects(staged.get(), false);
    staged.reset();
    sys::xremove_tree(st.fd.get(), "objects");
    if (opt.sync && ::syncfs(st.fd.get()) < 0) throw_errno("syncfs " + root_);
    if (before_publish) before_publish(info, diff.get());
    UniqueFd layers = sys::xopen_at(root_fd_.get(), Layout::layers_dir(spec.diff_id.algorithm),
                                    O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, "layers dir");
    // A leftover directory without layer.json (never published by us; a
    // foreign mess) would block the rename: move it to tmp/ for the sweep.
    if (sys::exists_at(layers.get(), spec.diff_id.hex)) {
      Staging junk = make_staging("junk-");
      if (::renameat(layers.get(), spec.diff_id.hex.c_str(), junk.fd.get(), "old") < 0)
        throw_errno("move aside " + Layout::layer_dir(spec.diff_id));
      sys::xremove_tree(tmp_fd_.get(), junk.name);
    }
    if (::renameat(tmp_fd_.get(), st.name.c_str(), layers.get(), spec.diff_id.hex.c_str()) < 0)
      throw_errno("publish " + Layout::layer_dir(spec.diff_id));
    sys::xfsync(layers.get(), Layout::layers_dir(spec.diff_id.algorithm));
  } catch (...) {
    try {
      sys::xremove_tree(tmp_fd_.get(), st.name);
    } catch (const Error&) {
      // The sweep removes it at the next open.
    }
    throw;
  }
  return Ingest::Unpacked;
}

// Writes a small record file atomically (through a staging dir).
void Store::write_record(const std::string& path, const std::string& text, Publish how) {
  Staging st = make_staging("record-");
  try {
    sys::xwrite_file_atomic(st.fd.get(), "record", root_fd_.get(), path, text, 0644,
                            how == Publish::kDurable);
  } catch (...) {
    sys::xremove_tree(tmp_fd_.get(), st.name);
    throw;
  }
  sys::xremove_tree(tmp_fd_.get(), st.name);
}

// ---- images

void Store::put_image(const ImageRecord& rec) {
  for (const auto& d : rec.diff_ids)
    if (!has_layer(d))
      throw Error("image " + rec.ref + ": layer " + d.str() + " is not in the store");
  if (rec.ref.empty()) throw Error("image record without a name");
  write_record(Layout::image_json(rec.ref), image_to_json(rec).dump(2) + "\n");
}

std::vector<ImageRecord> Store::images() const {
  std::vector<ImageRecord> out;
  for (const auto& name : sys::xlist_dir(root_fd_.get(), Layout::images_dir())) {
    if (name.size() <= 5 || name.compare(name.size() - 5, 5, ".json") != 0) continue;
    std::string path = Layout::images_dir() + "/" + name;
    try {
      out.push_back(image_from_json(read_json(root_fd_.get(), path)));
    } catch (const json::exception& e) {
      throw Error(root_ + "/" + path + ": " + e.what());
    }
  }
  return out;
}

std::optional<ImageRecord> Store::find_image(const std::string& name) const {
  auto all = images();
  for (const auto& r : all)
    if (r.ref == name) return r;
  // Short names: "debian" → "docker.io/library/debian:latest", or a committed
  // "localhost/debian:latest" (podman's name for local images) before it.
  std::string tagged = name;
  auto slash = name.rfind('/');
  auto colon = name.rfind(':');
  if (name.find('@') == std::string::npos &&
      (colon == std::string::npos || (slash != std::string::npos && colon < slash)))
    tagged += ":latest";
  for (const std::string& cand :
       {tagged, "localhost/" + tagged, "docker.io/" + tagged, "docker.io/library/" + tagged}) {
    for (const auto& r : all)
      if (r.ref == cand) return r;
  }
  // Config digest, full or a prefix of at least 12 hex digits.
  std::string hex = name;
  if (hex.rfind("sha256:", 0) == 0) hex = hex.substr(7);
  bool is_hex =
      hex.size() >= 12 && hex.size() <= 64 && std::all_of(hex.begin(), hex.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
      });
  if (!is_hex) return std::nullopt;
  std::optional<ImageRecord> found;
  for (const auto& r : all) {
    if (r.config.hex.compare(0, hex.size(), hex) != 0) continue;
    if (found && found->config != r.config)
      throw Error("image id '" + name + "' is ambiguous: matches " + found->ref + " and " + r.ref);
    if (!found) found = r;
  }
  return found;
}

std::vector<Digest> Store::remove_image(const std::string& name) {
  if (mode_ != LockMode::Exclusive)
    throw Error("store " + root_ + ": removing an image needs the exclusive store lock");
  auto rec = find_image(name);
  if (!rec) throw Error("image '" + name + "' is not in the store");
  // All records with the same ref go; other refs of the same id stay.
  for (const auto& c : containers())
    if (c.image == rec->ref)
      throw Error("image '" + name + "' is used by container " + c.id.substr(0, 12));
  std::string path = Layout::image_json(rec->ref);
  if (::unlinkat(root_fd_.get(), path.c_str(), 0) < 0 && errno != ENOENT)
    throw_errno("remove " + root_ + "/" + path);
  sys::xfsync(root_fd_.get(), Layout::images_dir());
  std::vector<Digest> removed;
  for (const auto& item : gc().items)
    if (item.kind == GcItem::Kind::Layer && Digest::valid(item.name))
      removed.push_back(Digest::parse(item.name));
  return removed;
}

void Store::mark_image_broken(const std::string& ref, const std::string& reason) {
  std::string path = Layout::image_json(ref);
  if (!sys::exists_at(root_fd_.get(), path)) throw Error("image '" + ref + "' is not in the store");
  ImageRecord rec;
  try {
    rec = image_from_json(read_json(root_fd_.get(), path));
  } catch (const json::exception& e) {
    throw Error(root_ + "/" + path + ": " + e.what());
  }
  rec.broken = reason.empty() ? "broken" : reason;
  write_record(path, image_to_json(rec).dump(2) + "\n");
}

std::optional<FileList> Store::file_list(const Digest& diff_id) const {
  std::string path = Layout::layer_files(diff_id);
  if (!sys::exists_at(root_fd_.get(), path)) return std::nullopt;
  std::string data = sys::xread_file(root_fd_.get(), path, size_t{1} << 30, root_ + "/" + path);
  return FileList::parse(data, root_ + "/" + path);
}

// ---- containers

std::vector<ContainerRecord> Store::containers() const {
  std::vector<ContainerRecord> out;
  for (const auto& id : sys::xlist_dir(root_fd_.get(), Layout::containers_dir())) {
    std::string path = Layout::container_json(id);
    if (!sys::exists_at(root_fd_.get(), path)) continue;
    try {
      out.push_back(container_from_json(read_json(root_fd_.get(), path)));
    } catch (const json::exception& e) {
      throw Error(root_ + "/" + path + ": " + e.what());
    }
  }
  return out;
}

std::optional<ContainerRecord> Store::find_container(const std::string& id_or_name) const {
  auto all = containers();
  for (const auto& c : all)
    if (c.id == id_or_name || (!c.name.empty() && c.name == id_or_name)) return c;
  if (id_or_name.size() < 4) return std::nullopt;
  std::optional<ContainerRecord> found;
  for (const auto& c : all) {
    if (c.id.compare(0, id_or_name.size(), id_or_name) != 0) continue;
    if (found) throw Error("container id '" + id_or_name + "' is ambiguous");
    found = c;
  }
  return found;
}

void Store::put_container(const ContainerRecord& rec, Publish how) {
  check_container_id(rec.id);
  mkdir_at(root_fd_.get(), Layout::container_dir(rec.id), 0700);
  write_record(Layout::container_json(rec.id), container_to_json(rec).dump(2) + "\n", how);
}

void Store::remove_container(const std::string& id) {
  check_container_id(id);
  std::string dir = Layout::container_dir(id);
  if (!sys::exists_at(root_fd_.get(), dir)) return;
  Staging junk = make_staging("rm-");
  if (::renameat(root_fd_.get(), dir.c_str(), junk.fd.get(), "old") < 0)
    throw_errno("remove " + root_ + "/" + dir);
  sys::xfsync(root_fd_.get(), Layout::containers_dir());
  sys::xremove_tree(tmp_fd_.get(), junk.name);
}

}  // namespace layer::store
