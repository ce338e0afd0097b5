#include "push/pusher.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "commit/blob_writer.hpp"
#include "commit/diff_writer.hpp"
#include "oci/image.hpp"
#include "registry/reference.hpp"
#include "store/layout.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::push {

namespace {

using json = nlohmann::json;

// Repositories on the destination's registry that should hold the layer:
// those of the store's images with this diff_id (the image the layer was
// pulled with, or the parent of a committed image). Tried for a
// cross-repository mount, the image's own first.
std::vector<std::string> mount_sources(const std::vector<store::ImageRecord>& images,
                                       const store::ImageRecord& img, const Digest& diff_id,
                                       const registry::Reference& dest) {
  std::vector<std::string> out;
  auto consider = [&](const store::ImageRecord& im) {
    if (std::find(im.diff_ids.begin(), im.diff_ids.end(), diff_id) == im.diff_ids.end()) return;
    try {
      auto src = registry::Reference::parse(im.ref);
      if (src.domain == dest.domain && src.path != dest.path &&
          std::find(out.begin(), out.end(), src.path) == out.end())
        out.push_back(src.path);
    } catch (const Error&) {
      // Not a registry reference (an oci: or docker-archive: image).
    }
  };
  consider(img);
  for (const auto& im : images) consider(im);
  if (out.size() > 2) out.resize(2);
  return out;
}

oci::Compression regen_compression(const std::string& media_type) {
  return oci::layer_kind(media_type) == oci::LayerKind::TarZstd ? oci::Compression::Zstd
                                                                : oci::Compression::Gzip;
}

}  // namespace

Result push(store::Store& st, const store::ImageRecord& img, const std::string& dest,
            const Options& opt) {
  registry::Reference ref = registry::Reference::parse(dest);
  if (ref.digest) throw Error("'" + dest + "': push to a tag, not a digest");
  Result r;
  r.ref = ref.str();
  auto man_bytes = st.read_blob(img.manifest, oci::kMaxDocumentBytes);
  auto cfg_bytes = st.read_blob(img.config, oci::kMaxDocumentBytes);
  if (!man_bytes || !cfg_bytes)
    throw Error("image '" + img.ref + "': its manifest or config is missing from the store");
  oci::Manifest man = oci::parse_manifest(*man_bytes);
  if (man.layers.size() != img.diff_ids.size())
    throw Error("image '" + img.ref + "': manifest and image record disagree on the layers");

  registry::RegistryClient client(ref, opt.registry);
  registry::Uploader up(client);
  const std::vector<store::ImageRecord> images = st.images();
  const size_t total = man.layers.size() + 1;
  auto emit = [&](BlobEvent e) {
    if (opt.on_blob) opt.on_blob(e);
  };
  auto chunk_for = [&](uint64_t size) -> uint64_t {
    if (opt.chunk_size > 0) return opt.chunk_size;
    return size > kChunkThreshold ? kDefaultChunk : 0;
  };
  auto send_file = [&](BlobEvent ev, int fd) {
    ev.state = BlobState::Uploading;
    emit(ev);
    up.upload(ev.digest, fd, ev.size, chunk_for(ev.size), [&](uint64_t n) {
      BlobEvent p = ev;
      p.sent = n;
      emit(p);
    });
    r.bytes_sent += ev.size;
    ++r.uploaded;
    ev.state = BlobState::Done;
    ev.sent = ev.size;
    emit(ev);
  };

  std::vector<Digest> diff_ids = img.diff_ids;
  json layers = json::array();
  for (size_t i = 0; i < man.layers.size(); ++i) {
    oci::Descriptor d = man.layers[i];
    BlobEvent ev{
        i, total, "layer", d.digest, static_cast<uint64_t>(d.size), 0, BlobState::Checking};
    emit(ev);
    auto keep = [&](const oci::Descriptor& x) {
      json j = {{"mediaType", x.media_type}, {"digest", x.digest.str()}, {"size", x.size}};
      if (!x.annotations.empty()) j["annotations"] = x.annotations;
      layers.push_back(j);
    };
    if (up.blob_exists(d.digest)) {
      ++r.existed;
      ev.state = BlobState::Exists;
      emit(ev);
      keep(d);
      continue;
    }
    bool mounted = false;
    for (const auto& from : mount_sources(images, img, img.diff_ids[i], ref)) {
      if ((mounted = up.mount(d.digest, from))) break;
    }
    if (mounted) {
      ++r.mounted;
      ev.state = BlobState::Mounted;
      emit(ev);
      keep(d);
      continue;
    }
    if (UniqueFd fd = st.open_blob(d.digest)) {
      struct stat sb;
      if (::fstat(fd.get(), &sb) != 0) throw Error("blob " + d.digest.str(), errno);
      if (static_cast<int64_t>(sb.st_size) != d.size)
        throw Error("blob " + d.digest.str() + " in the store has " + std::to_string(sb.st_size) +
                    " bytes, the manifest says " + std::to_string(d.size));
      send_file(ev, fd.get());
      keep(d);
      continue;
    }
    // Not kept: a new blob from the unpacked layer.
    ev.state = BlobState::Regenerating;
    emit(ev);
    store::Store::Staging stage = st.make_staging("push-");
    try {
      UniqueFd diff =
          sys::xopen_at(st.root_fd(), store::Layout::layer_diff(img.diff_ids[i]),
                        O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, "layer " + img.diff_ids[i].str());
      UniqueFd out = sys::xopen_at(stage.fd.get(), "blob", O_RDWR | O_CREAT | O_EXCL, 0600,
                                   "push staging blob");
      oci::Compression comp = regen_compression(d.media_type);
      commit::BlobWriter bw(out.get(), comp, -1, "layer " + img.diff_ids[i].str());
      commit::DiffOptions dopt;
      dopt.objects_dir = st.objects_fd();  // format-2 entries read from their objects
      commit::DiffWriter dw(
          diff.get(), {}, dopt, [&](const void* p, size_t n) { bw.write(p, n); },
          "layer " + img.diff_ids[i].str());
      dw.write();
      bw.finish();
      oci::Descriptor nd;
      nd.media_type = std::string(commit::layer_media_type(comp));
      nd.digest = bw.digest();
      nd.size = static_cast<int64_t>(bw.size());
      nd.annotations = d.annotations;
      diff_ids[i] = bw.diff_id();
      ++r.regenerated;
      ev.digest = nd.digest;
      ev.size = bw.size();
      if (up.blob_exists(nd.digest)) {  // the same regeneration pushed before
        ++r.existed;
        ev.state = BlobState::Exists;
        emit(ev);
      } else {
        send_file(ev, out.get());
      }
      keep(nd);
    } catch (...) {
      try {
        sys::xremove_tree(st.tmp_fd(), stage.name);
      } catch (const Error&) {
      }
      throw;
    }
    sys::xremove_tree(st.tmp_fd(), stage.name);
  }

  // Config and manifest: as stored, or rewritten for regenerated layers.
  std::string cfg = *cfg_bytes;
  std::string manifest_bytes = *man_bytes;
  std::string manifest_type =
      man.media_type.empty() ? std::string(oci::kOciManifest) : man.media_type;
  Digest cfg_digest = img.config;
  if (r.regenerated > 0) {
    json c = json::parse(cfg);
    json ids = json::array();
    for (const auto& d : diff_ids) ids.push_back(d.str());
    c["rootfs"]["diff_ids"] = ids;
    cfg = c.dump();
    cfg_digest = Hasher::of(cfg);
    for (auto& l : layers) {  // an OCI manifest: a Docker gzip layer is the same bytes
      std::string t = l["mediaType"].get<std::string>();
      if (t == oci::kDockerLayerGzip) l["mediaType"] = oci::kOciLayerGzip;
      if (t == oci::kDockerLayerTar) l["mediaType"] = oci::kOciLayer;
    }
    json m = {
        {"schemaVersion", 2},
        {"mediaType", oci::kOciManifest},
        {"config",
         {{"mediaType", oci::kOciConfig}, {"digest", cfg_digest.str()}, {"size", cfg.size()}}},
        {"layers", layers}};
    manifest_bytes = m.dump();
    manifest_type = std::string(oci::kOciManifest);
    r.rewritten = true;
  }
  BlobEvent ev{man.layers.size(), total, "config", cfg_digest, cfg.size(), 0, BlobState::Checking};
  emit(ev);
  if (up.blob_exists(cfg_digest)) {
    ++r.existed;
    ev.state = BlobState::Exists;
  } else {
    up.upload_data(cfg_digest, cfg);
    ++r.uploaded;
    r.bytes_sent += cfg.size();
    ev.state = BlobState::Done;
    ev.sent = cfg.size();
  }
  emit(ev);
  r.manifest = up.put_manifest(ref.tag, manifest_type, manifest_bytes);
  r.requests = up.counts();
  return r;
}

}  // namespace layer::push
