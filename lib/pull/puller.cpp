#include "pull/puller.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "format/overlay_format.hpp"
#include "lazy/lazy_record.hpp"
#include "lazy/toc_reader.hpp"
#include "lazy/toc_tree.hpp"
#include "oci/media_types.hpp"
#include "overlay/overlay.hpp"
#include "store/layout.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::pull {

namespace {

constexpr int kMaxIndexDepth = 4;  // index → index → ... → manifest
constexpr uint64_t kProgressStep = 256 << 10;

std::string now_rfc3339() {
  std::time_t t = std::time(nullptr);
  struct tm tm;
  ::gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Checks a fetched document against the descriptor that named it.
void verify_document(const std::string& what, const std::string& bytes, const oci::Descriptor& d) {
  Digest got = Hasher::of(bytes, d.digest.algorithm);
  if (got != d.digest)
    throw Error(what + " " + d.digest.str() + ": digest mismatch (content is " + got.str() + ")");
  if (static_cast<int64_t>(bytes.size()) != d.size)
    throw Error(what + " " + d.digest.str() + ": size " + std::to_string(bytes.size()) +
                " differs from the descriptor's " + std::to_string(d.size));
}

// Whether the directory `rel` of a layer's tree is opaque (hides the layers
// below it). False if it is not a directory there.
bool opaque_in(int diff_dirfd, const std::string& rel) {
  auto fd = sys::open_beneath(diff_dirfd, rel.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW, 0,
                              RESOLVE_NO_SYMLINKS);
  if (!fd) return false;
  return format::is_opaque(fd->get());
}

// Whether `rel` is a symlink in the tree at `diff` (relative to the store root).
bool symlink_in(const store::Store& store, const Digest& diff_id, const std::string& rel) {
  std::string path = store::Layout::layer_diff(diff_id) + "/" + rel;
  auto fd =
      sys::open_beneath(store.root_fd(), path.c_str(), O_PATH | O_NOFOLLOW, 0, RESOLVE_NO_SYMLINKS);
  struct stat st;
  return fd && ::fstat(fd->get(), &st) == 0 && S_ISLNK(st.st_mode);
}

// What the store verified about a compressed blob when it unpacked it: the
// layer it holds and (in records that have it) its size.
struct KnownBlob {
  Digest diff_id;
  int64_t size = -1;
};
using KnownBlobs = std::map<Digest, KnownBlob>;

KnownBlobs known_blobs(const std::vector<store::LayerInfo>& layers) {
  KnownBlobs out;
  for (const auto& info : layers)
    for (const auto& d : info.compressed) {
      auto it = info.compressed_sizes.find(d);
      out.emplace(d, KnownBlob{info.diff_id, it == info.compressed_sizes.end() ? -1 : it->second});
    }
  return out;
}

// A layer present by diff_id is reused without fetching its blob, so nothing
// checks the descriptor's digest and size while streaming: check them
// against what the store verified instead. A compressed form the store has
// never seen cannot contradict it (the content is the diff_id's, which the
// config's digest vouches for).
// Whether layer diff_id, present lazily, must be completed (its blob fetched
// whole and checked against its tree) before this pull may use it. A lazy
// layer's tree is what its TOC says, and nothing has yet checked that the TOC
// belongs to a blob of this diff_id: another image naming the diff_id gets it
// as it is only from the same blob and TOC (digest, size, annotations).
bool must_complete(const store::Store& store, const Options& opt, const Digest& diff_id,
                   const oci::Descriptor& d) {
  if (!store.is_lazy_layer(diff_id)) return false;
  if (!opt.lazy) return true;
  const std::string dir = store.root() + "/" + store::Layout::layer_dir(diff_id);
  oci::Descriptor rec;
  try {
    UniqueFd fd = sys::xopen_at(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY, 0, dir);
    rec = lazy::read_lazy_layer(fd.get(), dir).record.blob;
  } catch (const Error&) {
    return true;  // completed meanwhile, or unreadable: completion sorts it out
  }
  return !(rec.digest == d.digest && rec.size == d.size && rec.annotations == d.annotations);
}

void check_reuse(const KnownBlobs& known, size_t i, const oci::Descriptor& d,
                 const Digest& diff_id) {
  auto it = known.find(d.digest);
  if (it == known.end()) return;
  std::string where = "manifest: layers[" + std::to_string(i) + "] " + d.digest.str();
  if (it->second.diff_id != diff_id)
    throw Error(where + " is the blob of layer " + it->second.diff_id.str() +
                ", but the config gives diff_id " + diff_id.str());
  if (it->second.size >= 0 && it->second.size != d.size)
    throw Error(where + ": the descriptor says " + std::to_string(d.size) +
                " bytes, but this blob is " + std::to_string(it->second.size) +
                " bytes (as verified when the store unpacked it)");
}

}  // namespace

void check_write_through(const store::Store& store, const std::vector<Digest>& diff_ids, size_t i,
                         const store::LayerInfo& info, int diff_dirfd, const std::string& image) {
  if (i == 0 || info.implicit_dirs.empty()) return;
  // The layers below, merged exactly as a mount merges them (whiteouts,
  // opaque directories), read-only.
  overlay::Config mo;
  for (size_t j = i; j-- > 0;)
    mo.lowerdirs.push_back(store.root() + "/" + store::Layout::layer_diff(diff_ids[j]));
  std::unique_ptr<overlay::Overlay> ov = overlay::Overlay::open(mo);
  for (const auto& [dir, entry] : info.implicit_dirs) {
    // Walk down to `dir` in the merged lower view. A component this layer
    // has an entry for replaces what is below unless both are directories;
    // an implicit one merges with whatever is below, and a symlink there is
    // what the entry was written through.
    overlay::Node* cur = ov->root();
    ov->ref(cur);
    std::string through;
    for (size_t pos = 0; pos <= dir.size();) {
      size_t slash = dir.find('/', pos);
      if (slash == std::string::npos) slash = dir.size();
      std::string comp = dir.substr(pos, slash - pos), prefix = dir.substr(0, slash);
      pos = slash + 1;
      bool implicit = info.implicit_dirs.count(prefix) != 0;
      if (!implicit && opaque_in(diff_dirfd, prefix)) break;
      struct stat st;
      auto r = ov->lookup(cur, comp, &st);
      if (!r) break;
      ov->unref(cur);
      cur = r.value();
      if (S_ISDIR(st.st_mode)) continue;
      if (S_ISLNK(st.st_mode) && implicit) through = prefix;
      break;
    }
    std::string target;
    if (!through.empty())
      if (auto t = ov->readlink(cur)) target = t.value();
    ov->unref(cur);
    if (through.empty()) continue;
    std::string holder = "a lower layer";
    for (size_t j = i; j-- > 0;)
      if (symlink_in(store, diff_ids[j], through)) {
        holder = "layer " + diff_ids[j].str();
        break;
      }
    throw Error("image " + image + ": layer " + info.diff_id.str() + ": entry '" + entry +
                "' is written through the symlink '" + through + "' -> '" + target + "' of " +
                holder);
  }
}

namespace {

// Shared by the workers of one pull. Lock order: mu_ before cb_mu_ is never
// needed; each is taken alone.
class Ingestor {
 public:
  Ingestor(store::Store& store, oci::ImageSource& source, const std::string& name,
           const Options& opt, const oci::Manifest& m, const oci::ImageConfig& cfg)
      : store_(store), source_(source), name_(name), opt_(opt), m_(m), cfg_(cfg) {}

  void emit(const LayerEvent& e) {
    if (!opt_.on_layer) return;
    std::lock_guard<std::mutex> g(cb_mu_);
    opt_.on_layer(e);
  }

  LayerEvent event(size_t i, LayerState s, uint64_t bytes = 0) const {
    return LayerEvent{i,     m_.layers[i].digest, cfg_.diff_ids[i], m_.layers[i].size, s,
                      bytes, m_.layers.size()};
  }

  // Runs the queue on opt.jobs threads; rethrows the first failure.
  void run(const std::vector<size_t>& todo) {
    todo_ = todo;
    size_t n = std::min<size_t>(todo.size(), static_cast<size_t>(std::max(1, opt_.jobs)));
    std::vector<std::thread> threads;
    for (size_t t = 0; t < n; ++t) threads.emplace_back([this] { worker(); });
    for (auto& t : threads) t.join();
    if (error_) std::rethrow_exception(error_);
  }

  size_t reused() const { return reused_; }
  size_t lazy() const { return lazy_; }
  size_t completed() const { return completed_; }
  uint64_t fetched() const { return fetched_; }

 private:
  // A layer stream that counts bytes for progress and stops when another
  // layer of the same pull has failed.
  class CountingSource : public ByteSource {
   public:
    CountingSource(Ingestor& in, size_t index, ByteSource& src)
        : in_(in), index_(index), src_(src) {}
    size_t read(void* buf, size_t n) override {
      if (in_.cancel_.load()) throw Error("cancelled: another layer of the pull failed");
      size_t r = src_.read(buf, n);
      bytes_ += r;
      in_.fetched_ += r;
      if (r == 0 && !eof_) {
        eof_ = true;
        in_.emit(in_.event(index_, LayerState::Unpacking, bytes_));
      } else if (bytes_ - reported_ >= kProgressStep) {
        reported_ = bytes_;
        in_.emit(in_.event(index_, LayerState::Downloading, bytes_));
      }
      return r;
    }

   private:
    Ingestor& in_;
    size_t index_;
    ByteSource& src_;
    uint64_t bytes_ = 0;
    uint64_t reported_ = 0;
    bool eof_ = false;
  };

  // Passes a layer blob through and writes a copy into a staging dir,
  // hashing it, so the blob can be kept once the layer is in.
  class KeepingSource : public ByteSource {
   public:
    KeepingSource(ByteSource& src, int dirfd, const oci::Descriptor& d)
        : src_(src),
          d_(d),
          hash_(d.digest.algorithm),
          out_(sys::xopen_at(dirfd, "blob", O_WRONLY | O_CREAT | O_EXCL, 0644,
                             "staging blob " + d.digest.str())) {}
    size_t read(void* buf, size_t n) override {
      size_t r = src_.read(buf, n);
      hash_.update(buf, r);
      bytes_ += r;
      if (auto w = sys::write_all(out_.get(), buf, r); !w)
        throw Error("staging blob " + d_.digest.str(), w.error());
      return r;
    }
    // True when the copy is the whole blob (the unpacker may stop short of
    // trailing bytes: they are read here), fsynced.
    bool finish() {
      char buf[64 << 10];
      while (read(buf, sizeof buf) > 0) {
      }
      if (static_cast<int64_t>(bytes_) != d_.size || hash_.finish() != d_.digest) return false;
      sys::xfsync(out_.get(), "staging blob " + d_.digest.str());
      return true;
    }

   private:
    ByteSource& src_;
    const oci::Descriptor& d_;
    Hasher hash_;
    UniqueFd out_;
    uint64_t bytes_ = 0;
  };

  void worker() {
    for (;;) {
      size_t i;
      {
        std::lock_guard<std::mutex> g(mu_);
        if (next_ >= todo_.size() || cancel_.load()) return;
        i = todo_[next_++];
      }
      try {
        ingest(i);
      } catch (...) {
        emit(event(i, LayerState::Failed));
        std::lock_guard<std::mutex> g(mu_);
        if (!error_) error_ = std::current_exception();
        cancel_.store(true);
      }
      layer_done_.notify_all();
    }
  }

  // Before layer i is published: if it made directories it has no entries
  // for, the layers below must be in the store to check them (rarely needed;
  // they were queued before it, so they are being unpacked or are present).
  void check_before_publish(size_t i, const store::LayerInfo& info, int diff_dirfd) {
    if (i == 0 || info.implicit_dirs.empty()) return;
    // Bounded: two processes pulling images that stack two such layers in
    // opposite orders could each hold one and wait for the other. After the
    // bound the layer is published unchecked, and the check of the whole
    // image before its record is written still refuses a bad image.
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    {
      std::unique_lock<std::mutex> lk(mu_);
      for (size_t j = 0; j < i;) {
        if (store_.has_layer(cfg_.diff_ids[j])) {
          ++j;
          continue;
        }
        if (cancel_.load()) throw Error("cancelled: another layer of the pull failed");
        if (std::chrono::steady_clock::now() > give_up) return;
        // Another process may be the one unpacking it: poll as well.
        layer_done_.wait_for(lk, std::chrono::milliseconds(100));
      }
    }
    check_write_through(store_, cfg_.diff_ids, i, info, diff_dirfd, name_);
  }

  void ingest(size_t i) {
    const oci::Descriptor& d = m_.layers[i];
    const Digest& diff_id = cfg_.diff_ids[i];
    if (must_complete(store_, opt_, diff_id, d)) return complete(i);
    // Another process may have published it since the pull began.
    if (store_.has_layer(diff_id)) {
      check_present(i);
      ++reused_;
      emit(event(i, LayerState::Exists));
      return;
    }
    if (opt_.lazy && ingest_lazy(i)) return;
    emit(event(i, LayerState::Downloading));
    // Sources name the blob in their errors.
    std::unique_ptr<ByteSource> blob = source_.open_blob(d);
    CountingSource counted(*this, i, *blob);
    std::optional<store::Store::Staging> stage;
    std::optional<KeepingSource> keeping;
    if (opt_.keep_blobs && !store_.has_blob(d.digest)) {
      stage = store_.make_staging("blob-");
      keeping.emplace(counted, stage->fd.get(), d);
    }
    ByteSource& in = keeping ? static_cast<ByteSource&>(*keeping) : counted;
    auto drop_stage = [&] {
      if (!stage) return;
      try {
        sys::xremove_tree(store_.tmp_fd(), stage->name);
      } catch (const Error&) {
        // tmp/ is swept at the next open.
      }
    };
    unpack::LayerSpec spec = spec_of(i);
    store::Ingest r;
    try {
      r = store_.ingest_layer(spec, in, opt_.unpack, {},
                              [&](const store::LayerInfo& info, int diff_dirfd) {
                                check_before_publish(i, info, diff_dirfd);
                              });
      // The blob as fetched, so a push sends the same digest.
      if (r == store::Ingest::Unpacked && keeping && keeping->finish())
        store_.adopt_blob(d.digest, stage->fd.get(), "blob");
    } catch (...) {
      drop_stage();
      throw;
    }
    drop_stage();
    if (r == store::Ingest::AlreadyPresent) {
      check_present(i);
      ++reused_;
      emit(event(i, LayerState::Exists));
    } else {
      emit(event(i, LayerState::Done, static_cast<uint64_t>(d.size)));
    }
  }

  unpack::LayerSpec spec_of(size_t i) const {
    unpack::LayerSpec spec;
    spec.media_type = m_.layers[i].media_type;
    spec.digest = m_.layers[i].digest;
    spec.size = m_.layers[i].size;
    spec.diff_id = cfg_.diff_ids[i];
    spec.image = name_;
    return spec;
  }

  // Layer i is in the store from a lazy pull: fetch its whole blob, check it
  // and make the layer an ordinary one (Store::complete_lazy_layer).
  void complete(size_t i) {
    const oci::Descriptor& d = m_.layers[i];
    emit(event(i, LayerState::Downloading));
    std::unique_ptr<ByteSource> blob = source_.open_blob(d);
    CountingSource counted(*this, i, *blob);
    unpack::LayerSpec spec = spec_of(i);
    if (store_.complete_lazy_layer(spec, counted, opt_.unpack)) {
      ++completed_;
      emit(event(i, LayerState::Done, static_cast<uint64_t>(d.size)));
    } else {
      ++reused_;
      emit(event(i, LayerState::Exists));
    }
  }

  // Lazy pull of layer i: its TOC by Range requests, verified, and the
  // metadata tree written from it. False (nothing done) for a layer with no
  // TOC or a source without Range reads.
  bool ingest_lazy(size_t i) {
    const oci::Descriptor& d = m_.layers[i];
    const std::string context = "image " + name_ + ": layer " + d.digest.str();
    std::optional<lazy::TocSource> ts;
    try {
      ts = lazy::TocSource::of(d);
    } catch (const Error& e) {
      throw Error("image " + name_ + ": " + e.line());
    }
    if (!ts) return false;
    std::unique_ptr<oci::RangeReader> ranges = source_.open_ranges(d);
    std::string locator = source_.locator();
    if (!ranges || locator.empty()) return false;
    emit(event(i, LayerState::Downloading));
    lazy::RecordingReader recorded(*ranges);
    lazy::Toc toc;
    try {
      toc = lazy::read_toc(recorded, *ts, "layer " + d.digest.str());
    } catch (const Error& e) {
      throw Error("image " + name_ + ": " + e.line());
    }
    fetched_ += recorded.bytes();
    emit(event(i, LayerState::Unpacking, recorded.bytes()));
    unpack::LayerSpec spec = spec_of(i);
    lazy::LazyRecord rec{d, locator, name_};
    auto produce = [&](int diff, const unpack::Options& uopt) {
      return lazy::write_toc_tree(diff, toc, uopt, context);
    };
    auto extra = [&](int dir) { lazy::write_lazy_record(dir, rec, recorded.pieces()); };
    store::Ingest r = store_.ingest_tree(spec, opt_.unpack, produce, extra,
                                         [&](const store::LayerInfo& info, int diff_dirfd) {
                                           check_before_publish(i, info, diff_dirfd);
                                         });
    if (r == store::Ingest::AlreadyPresent) {
      check_present(i);
      ++reused_;
      emit(event(i, LayerState::Exists));
    } else {
      ++lazy_;
      emit(event(i, LayerState::Done, recorded.bytes()));
    }
    return true;
  }

  // Layer i was published by another pull meanwhile: check the descriptor
  // against its record.
  void check_present(size_t i) {
    std::vector<store::LayerInfo> info;
    if (auto l = store_.layer_info(cfg_.diff_ids[i])) info.push_back(std::move(*l));
    check_reuse(known_blobs(info), i, m_.layers[i], cfg_.diff_ids[i]);
  }

  store::Store& store_;
  oci::ImageSource& source_;
  const std::string& name_;
  const Options& opt_;
  const oci::Manifest& m_;
  const oci::ImageConfig& cfg_;

  std::mutex mu_;                       // guards next_, error_
  std::condition_variable layer_done_;  // a worker finished a layer (with mu_)
  std::vector<size_t> todo_;            // set before the workers start
  size_t next_ = 0;                     // guarded by mu_
  std::exception_ptr error_;            // guarded by mu_
  std::atomic<bool> cancel_{false};
  std::atomic<size_t> reused_{0};
  std::atomic<size_t> lazy_{0};
  std::atomic<size_t> completed_{0};
  std::atomic<uint64_t> fetched_{0};
  std::mutex cb_mu_;  // serializes opt_.on_layer
};

}  // namespace

Result pull(store::Store& store, oci::ImageSource& source, const std::string& name,
            const Options& opt) {
  const std::string what = source.describe();
  auto fail = [&](const Error& e) -> Error { return Error(what + ": " + e.line()); };

  // Resolve the manifest, through indexes, to one platform's image manifest.
  oci::FetchedDocument doc = source.get_manifest(std::nullopt);
  if (doc.bytes.size() > oci::kMaxDocumentBytes)
    throw Error(what + ": manifest larger than " + std::to_string(oci::kMaxDocumentBytes) +
                " bytes");
  Digest manifest_digest = Hasher::of(doc.bytes);
  oci::Manifest manifest;
  try {
    for (int depth = 0;; ++depth) {
      if (oci::classify(doc.bytes, doc.content_type) == oci::DocKind::Manifest) {
        manifest = oci::parse_manifest(doc.bytes);
        break;
      }
      if (depth >= kMaxIndexDepth) throw Error("image indexes nested too deeply");
      oci::Index index = oci::parse_index(doc.bytes);
      oci::Descriptor child = oci::select_platform(index, opt.platform);
      doc = source.get_manifest(child.digest);
      verify_document("manifest", doc.bytes, child);
      manifest_digest = child.digest;
      doc.content_type = child.media_type;
    }
  } catch (const Error& e) {
    throw fail(e);
  }

  // The config: verified against the manifest before anything is stored.
  std::string config_bytes = source.get_blob(manifest.config);
  oci::ImageConfig cfg;
  try {
    verify_document("config", config_bytes, manifest.config);
    cfg = oci::parse_config(config_bytes);
    oci::check_layers_match(manifest, cfg);
  } catch (const Error& e) {
    throw fail(e);
  }
  store.put_blob(manifest.config.digest, config_bytes);
  store.put_blob(manifest_digest, doc.bytes);

  // Layers: those present by diff_id are skipped before their blob is opened.
  Ingestor ingestor(store, source, name, opt, manifest, cfg);
  std::vector<size_t> todo;
  std::set<Digest> queued;
  std::vector<size_t> duplicates;
  std::optional<KnownBlobs> known;  // read once, if any layer is present
  for (size_t i = 0; i < manifest.layers.size(); ++i) {
    const bool to_complete = must_complete(store, opt, cfg.diff_ids[i], manifest.layers[i]);
    if (store.has_layer(cfg.diff_ids[i]) && !to_complete) {
      try {
        if (!known) known = known_blobs(store.layers());
        check_reuse(*known, i, manifest.layers[i], cfg.diff_ids[i]);
      } catch (const Error& e) {
        throw fail(e);
      }
      ingestor.emit(ingestor.event(i, LayerState::Exists));
    } else if (!queued.insert(cfg.diff_ids[i]).second) {
      duplicates.push_back(i);  // the same layer twice in one image: unpack it once
      ingestor.emit(ingestor.event(i, LayerState::Waiting));
    } else {
      todo.push_back(i);
      ingestor.emit(ingestor.event(i, LayerState::Waiting));
    }
  }
  size_t present_before = manifest.layers.size() - todo.size() - duplicates.size();
  ingestor.run(todo);
  for (size_t i : duplicates) ingestor.emit(ingestor.event(i, LayerState::Done));
  // Layers that were already present were checked (if at all) as part of
  // another image: check them against this image's lower layers too.
  for (size_t i = 1; i < cfg.diff_ids.size(); ++i) {
    auto info = store.layer_info(cfg.diff_ids[i]);
    if (!info || info->implicit_dirs.empty()) continue;
    UniqueFd diff = sys::xopen_at(store.root_fd(), store::Layout::layer_diff(cfg.diff_ids[i]),
                                  O_PATH | O_DIRECTORY | O_NOFOLLOW, 0, "layer diff");
    check_write_through(store, cfg.diff_ids, i, *info, diff.get(), name);
  }

  Result r;
  r.layers_total = manifest.layers.size();
  r.layers_reused = present_before + ingestor.reused();
  r.bytes_fetched = ingestor.fetched();
  r.layers_lazy = ingestor.lazy();
  r.layers_completed = ingestor.completed();
  store::ImageRecord& rec = r.image;
  rec.ref = name;
  rec.manifest = manifest_digest;
  rec.config = manifest.config.digest;
  rec.diff_ids = cfg.diff_ids;
  rec.platform = cfg.platform.os.empty() || cfg.platform.architecture.empty()
                     ? std::string()
                     : cfg.platform.normalized().str();
  rec.created = cfg.created;
  rec.pulled_at = now_rfc3339();
  std::set<Digest> counted;
  for (const auto& d : cfg.diff_ids) {
    if (!counted.insert(d).second) continue;
    if (auto info = store.layer_info(d)) rec.size += info->size;
  }
  store.put_image(rec);
  return r;
}

}  // namespace layer::pull
