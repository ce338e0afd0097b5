#include "push/layer_blobs.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "commit/blob_writer.hpp"
#include "commit/diff_writer.hpp"
#include "lazy/estargz_writer.hpp"
#include "lazy/toc_reader.hpp"
#include "lazy/zstd_chunked_writer.hpp"
#include "oci/media_types.hpp"
#include "store/layout.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::push {

namespace {

using json = nlohmann::json;

oci::Compression regen_compression(const std::string& media_type) {
  return oci::layer_kind(media_type) == oci::LayerKind::TarZstd ? oci::Compression::Zstd
                                                                : oci::Compression::Gzip;
}

std::string blob_name(size_t i) {
  return "layer-" + std::to_string(i);
}

// Writes the layer `diff` as an eStargz or zstd:chunked blob into `out`:
// the tar goes to a scratch file `tar_name` in `stage` first (the converters
// read a stream and copy its bytes). Fills `nd`; returns the blob's diff_id.
Digest write_lazy_layer(int diff, const commit::DiffOptions& dopt, int stage,
                        const std::string& tar_name, int out, Recompress how,
                        const std::string& what, oci::Descriptor& nd) {
  {
    UniqueFd tar =
        sys::xopen_at(stage, tar_name, O_WRONLY | O_CREAT | O_TRUNC, 0600, what + " tar");
    commit::DiffWriter dw(
        diff, {}, dopt,
        [&](const void* p, size_t n) {
          if (auto w = sys::write_all(tar.get(), p, n); !w) throw Error(what + " tar", w.error());
        },
        what);
    dw.write();
  }
  FdSource src(sys::xopen_at(stage, tar_name, O_RDONLY, 0, what + " tar"), what + " tar");
  auto sink = [&](const char* p, size_t n) {
    if (auto w = sys::write_all(out, p, n); !w) throw Error(what + " blob", w.error());
  };
  Digest diff_id;
  if (how == Recompress::Estargz) {
    lazy::EstargzResult res = lazy::write_estargz(src, sink);
    nd.media_type = std::string(oci::kOciLayerGzip);
    nd.annotations[lazy::kEstargzTocDigest] = res.toc_digest.str();
    nd.digest = res.blob_digest;
    nd.size = static_cast<int64_t>(res.blob_size);
    diff_id = res.diff_id;
  } else {
    lazy::ZstdChunkedResult res = lazy::write_zstd_chunked(src, sink);
    nd.media_type = std::string(oci::kOciLayerZstd);
    for (const auto& [k, v] : res.annotations) nd.annotations[k] = v;
    nd.digest = res.blob_digest;
    nd.size = static_cast<int64_t>(res.blob_size);
    diff_id = res.diff_id;
  }
  ::unlinkat(stage, tar_name.c_str(), 0);  // scratch; the staging dir goes anyway
  return diff_id;
}

}  // namespace

LayerBlobs::LayerBlobs(store::Store& st, const store::ImageRecord& img) : st_(st), img_(img) {
  auto man = st.read_blob(img.manifest, oci::kMaxDocumentBytes);
  auto cfg = st.read_blob(img.config, oci::kMaxDocumentBytes);
  if (!man || !cfg)
    throw Error("image '" + img.ref + "': its manifest or config is missing from the store");
  man_bytes_ = std::move(*man);
  cfg_bytes_ = std::move(*cfg);
  man_ = oci::parse_manifest(man_bytes_);
  if (man_.layers.size() != img.diff_ids.size())
    throw Error("image '" + img.ref + "': manifest and image record disagree on the layers");
  layers_ = man_.layers;
  diff_ids_ = img.diff_ids;
  regen_.assign(layers_.size(), false);
}

LayerBlobs::~LayerBlobs() {
  if (!stage_) return;
  try {
    sys::xremove_tree(st_.tmp_fd(), stage_->name);
  } catch (const Error&) {
    // tmp/ is swept at the next open.
  }
}

UniqueFd LayerBlobs::open(size_t i) const {
  const oci::Descriptor& d = layers_[i];
  UniqueFd fd;
  if (regen_[i]) {
    fd = sys::xopen_at(stage_->fd.get(), blob_name(i), O_RDONLY, 0, "blob " + d.digest.str());
  } else {
    fd = st_.open_blob(d.digest);
    if (!fd) return fd;
  }
  struct stat sb;
  if (::fstat(fd.get(), &sb) != 0) throw Error("blob " + d.digest.str(), errno);
  if (static_cast<int64_t>(sb.st_size) != d.size)
    throw Error("blob " + d.digest.str() + " in the store has " + std::to_string(sb.st_size) +
                " bytes, the manifest says " + std::to_string(d.size));
  return fd;
}

void LayerBlobs::regenerate(size_t i, Recompress how) {
  const Digest& diff_id = img_.diff_ids[i];
  const std::string what = "layer " + diff_id.str();
  if (!stage_) stage_ = st_.make_staging("push-");
  UniqueFd diff = sys::xopen_at(st_.root_fd(), store::Layout::layer_diff(diff_id),
                                O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, what);
  UniqueFd out = sys::xopen_at(stage_->fd.get(), blob_name(i), O_RDWR | O_CREAT | O_TRUNC, 0600,
                               "push staging blob");
  oci::Descriptor nd;
  nd.annotations = layers_[i].annotations;
  for (const char* key : {lazy::kEstargzTocDigest, lazy::kZstdChunkedChecksum,
                          lazy::kZstdChunkedPosition, lazy::kZstdChunkedChecksumOld,
                          lazy::kZstdChunkedPositionOld, lazy::kZstdChunkedTarSplitPosition})
    nd.annotations.erase(key);  // they described the old blob
  commit::DiffOptions dopt;
  dopt.objects_dir = st_.objects_fd();  // format-2 entries read from their objects
  if (how == Recompress::Keep) {
    oci::Compression comp = regen_compression(layers_[i].media_type);
    commit::BlobWriter bw(out.get(), comp, -1, what);
    commit::DiffWriter dw(
        diff.get(), {}, dopt, [&](const void* p, size_t n) { bw.write(p, n); }, what);
    dw.write();
    bw.finish();
    nd.media_type = std::string(commit::layer_media_type(comp));
    nd.digest = bw.digest();
    nd.size = static_cast<int64_t>(bw.size());
    diff_ids_[i] = bw.diff_id();
  } else {
    diff_ids_[i] = write_lazy_layer(diff.get(), dopt, stage_->fd.get(), blob_name(i) + ".tar", out.get(),
                                    how, what, nd);
  }
  layers_[i] = nd;
  regen_[i] = true;
  ++regenerated_;
}

LayerBlobs::Documents LayerBlobs::documents() const {
  Documents d;
  d.config = cfg_bytes_;
  d.manifest = man_bytes_;
  d.manifest_type = man_.media_type.empty() ? std::string(oci::kOciManifest) : man_.media_type;
  d.config_digest = img_.config;
  d.manifest_digest = img_.manifest;
  if (regenerated_ == 0) return d;
  json c = json::parse(cfg_bytes_);
  json ids = json::array();
  for (const auto& id : diff_ids_) ids.push_back(id.str());
  c["rootfs"]["diff_ids"] = ids;
  d.config = c.dump();
  d.config_digest = Hasher::of(d.config);
  json layers = json::array();
  for (const auto& l : layers_) {
    // An OCI manifest: a Docker gzip layer is the same bytes.
    std::string t = l.media_type;
    if (t == oci::kDockerLayerGzip) t = oci::kOciLayerGzip;
    if (t == oci::kDockerLayerTar) t = oci::kOciLayer;
    json j = {{"mediaType", t}, {"digest", l.digest.str()}, {"size", l.size}};
    if (!l.annotations.empty()) j["annotations"] = l.annotations;
    layers.push_back(j);
  }
  json m = {{"schemaVersion", 2},
            {"mediaType", oci::kOciManifest},
            {"config",
             {{"mediaType", oci::kOciConfig},
              {"digest", d.config_digest.str()},
              {"size", d.config.size()}}},
            {"layers", layers}};
  d.manifest = m.dump();
  d.manifest_type = std::string(oci::kOciManifest);
  d.manifest_digest = Hasher::of(d.manifest);
  return d;
}

}  // namespace layer::push
