#include "push/pusher.hpp"

#include <algorithm>

#include "oci/image.hpp"
#include "push/layer_blobs.hpp"
#include "registry/reference.hpp"
#include "util/error.hpp"

namespace layer::push {

namespace {

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

}  // namespace

Result push(store::Store& st, const store::ImageRecord& img, const std::string& dest,
            const Options& opt) {
  registry::Reference ref = registry::Reference::parse(dest);
  if (ref.digest) throw Error("'" + dest + "': push to a tag, not a digest");
  Result r;
  r.ref = ref.str();
  LayerBlobs blobs(st, img);

  registry::RegistryClient client(ref, opt.registry);
  registry::Uploader up(client);
  const std::vector<store::ImageRecord> images = st.images();
  const size_t total = blobs.size() + 1;
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

  for (size_t i = 0; i < blobs.size(); ++i) {
    const oci::Descriptor d = blobs.layer(i);
    BlobEvent ev{
        i, total, "layer", d.digest, static_cast<uint64_t>(d.size), 0, BlobState::Checking};
    emit(ev);
    if (up.blob_exists(d.digest)) {
      ++r.existed;
      ev.state = BlobState::Exists;
      emit(ev);
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
      continue;
    }
    if (UniqueFd fd = blobs.open(i)) {
      send_file(ev, fd.get());
      continue;
    }
    // Not kept (pull --drop-blobs): a new blob from the unpacked layer.
    ev.state = BlobState::Regenerating;
    emit(ev);
    blobs.regenerate(i);
    ++r.regenerated;
    ev.digest = blobs.layer(i).digest;
    ev.size = static_cast<uint64_t>(blobs.layer(i).size);
    if (up.blob_exists(ev.digest)) {  // the same regeneration pushed before
      ++r.existed;
      ev.state = BlobState::Exists;
      emit(ev);
    } else {
      send_file(ev, blobs.open(i).get());
    }
  }

  // Config and manifest: as stored, or rewritten for regenerated layers.
  const LayerBlobs::Documents docs = blobs.documents();
  r.rewritten = blobs.regenerated() > 0;
  BlobEvent ev{blobs.size(), total, "config", docs.config_digest, docs.config.size(), 0,
               BlobState::Checking};
  emit(ev);
  if (up.blob_exists(docs.config_digest)) {
    ++r.existed;
    ev.state = BlobState::Exists;
  } else {
    up.upload_data(docs.config_digest, docs.config);
    ++r.uploaded;
    r.bytes_sent += docs.config.size();
    ev.state = BlobState::Done;
    ev.sent = docs.config.size();
  }
  emit(ev);
  r.manifest = up.put_manifest(ref.tag, docs.manifest_type, docs.manifest);
  r.requests = up.counts();
  return r;
}

}  // namespace layer::push
