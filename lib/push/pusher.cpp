#include "push/pusher.hpp"

#include <algorithm>

<<<<<<< HEAD
#include "commit/blob_writer.hpp"
#include "commit/diff_writer.hpp"
#include "lazy/estargz_writer.hpp"
#include "lazy/toc_reader.hpp"
#include "lazy/zstd_chunked_writer.hpp"
=======
>>>>>>> main
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

<<<<<<< HEAD
oci::Compression regen_compression(const std::string& media_type) {
  return oci::layer_kind(media_type) == oci::LayerKind::TarZstd ? oci::Compression::Zstd
                                                                : oci::Compression::Gzip;
}

// Writes the layer `diff` as an eStargz or zstd:chunked blob into `out`:
// the tar goes to a scratch file in `stage` first (the converters read a
// stream and copy its bytes). Fills `nd`; returns the blob's diff_id.
Digest write_lazy_layer(int diff, int stage, int out, Recompress how, const std::string& what,
                        oci::Descriptor& nd) {
  {
    UniqueFd tar = sys::xopen_at(stage, "tar", O_WRONLY | O_CREAT | O_EXCL, 0600, what + " tar");
    commit::DiffWriter dw(
        diff, {}, {},
        [&](const void* p, size_t n) {
          if (auto w = sys::write_all(tar.get(), p, n); !w) throw Error(what + " tar", w.error());
        },
        what);
    dw.write();
  }
  FdSource src(sys::xopen_at(stage, "tar", O_RDONLY, 0, what + " tar"), what + " tar");
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
  return diff_id;
}

=======
>>>>>>> main
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

<<<<<<< HEAD
  std::vector<Digest> diff_ids = img.diff_ids;
  json layers = json::array();
  auto keep = [&](const oci::Descriptor& x) {
    json j = {{"mediaType", x.media_type}, {"digest", x.digest.str()}, {"size", x.size}};
    if (!x.annotations.empty()) j["annotations"] = x.annotations;
    layers.push_back(j);
  };
  // A new blob from the unpacked layer: a new tar of the same files, written
  // as the stored layer's compression, or as opt.recompress says.
  auto regenerate = [&](size_t i, BlobEvent ev) {
    const oci::Descriptor& d = man.layers[i];
    std::string what = "layer " + img.diff_ids[i].str();
    ev.state = BlobState::Regenerating;
    emit(ev);
    store::Store::Staging stage = st.make_staging("push-");
    try {
      UniqueFd diff = sys::xopen_at(st.root_fd(), store::Layout::layer_diff(img.diff_ids[i]),
                                    O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, what);
      UniqueFd out = sys::xopen_at(stage.fd.get(), "blob", O_RDWR | O_CREAT | O_EXCL, 0600,
                                   "push staging blob");
      oci::Descriptor nd;
      nd.annotations = d.annotations;
      for (const char* key : {lazy::kEstargzTocDigest, lazy::kZstdChunkedChecksum,
                              lazy::kZstdChunkedPosition, lazy::kZstdChunkedChecksumOld,
                              lazy::kZstdChunkedPositionOld, lazy::kZstdChunkedTarSplitPosition})
        nd.annotations.erase(key);  // they described the old blob
      if (opt.recompress == Recompress::Keep) {
        oci::Compression comp = regen_compression(d.media_type);
        commit::BlobWriter bw(out.get(), comp, -1, what);
        commit::DiffWriter dw(
            diff.get(), {}, {}, [&](const void* p, size_t n) { bw.write(p, n); }, what);
        dw.write();
        bw.finish();
        nd.media_type = std::string(commit::layer_media_type(comp));
        nd.digest = bw.digest();
        nd.size = static_cast<int64_t>(bw.size());
        diff_ids[i] = bw.diff_id();
      } else {
        diff_ids[i] =
            write_lazy_layer(diff.get(), stage.fd.get(), out.get(), opt.recompress, what, nd);
      }
      ++r.regenerated;
      ev.digest = nd.digest;
      ev.size = static_cast<uint64_t>(nd.size);
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
  };
  for (size_t i = 0; i < man.layers.size(); ++i) {
    oci::Descriptor d = man.layers[i];
    BlobEvent ev{
        i, total, "layer", d.digest, static_cast<uint64_t>(d.size), 0, BlobState::Checking};
    emit(ev);
    if (opt.recompress != Recompress::Keep) {
      regenerate(i, ev);
      continue;
    }
=======
  for (size_t i = 0; i < blobs.size(); ++i) {
    const oci::Descriptor d = blobs.layer(i);
    BlobEvent ev{
        i, total, "layer", d.digest, static_cast<uint64_t>(d.size), 0, BlobState::Checking};
    emit(ev);
>>>>>>> main
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
<<<<<<< HEAD
    // Not kept: a new blob from the unpacked layer.
    regenerate(i, ev);
=======
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
>>>>>>> main
  }

  // Config and manifest: as stored, or rewritten for regenerated layers.
  const LayerBlobs::Documents docs = blobs.documents();
  r.rewritten = blobs.regenerated() > 0;
  BlobEvent ev{blobs.size(),       total, "config",           docs.config_digest,
               docs.config.size(), 0,     BlobState::Checking};
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
