#include "commit/committer.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>
#include <nlohmann/json.hpp>
#include <set>

#include "commit/blob_writer.hpp"
#include "oci/image.hpp"
#include "registry/reference.hpp"
#include "store/layout.hpp"
#include "unpack/unpacker.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::commit {

namespace {

using json = nlohmann::json;

std::string oci_layer_type(const std::string& t) {
  if (t == oci::kDockerLayerGzip) return std::string(oci::kOciLayerGzip);
  if (t == oci::kDockerLayerTar) return std::string(oci::kOciLayer);
  return t;
}

json descriptor(const std::string& media_type, const Digest& d, uint64_t size,
                const std::map<std::string, std::string>& annotations = {}) {
  json j = {{"mediaType", media_type}, {"digest", d.str()}, {"size", size}};
  if (!annotations.empty()) j["annotations"] = annotations;
  return j;
}

}  // namespace

std::string image_name(const std::string& name) {
  if (name.find('@') != std::string::npos)
    throw Error("'" + name + "': an image made by commit is named by a tag, not a digest");
  try {
    // podman's rule: a name without a registry host is local, not Docker Hub's.
    if (!registry::Reference::names_registry(name)) {
      std::string_view n = name;
      if (n.substr(0, 9) == "docker://") n.remove_prefix(9);
      return registry::Reference::parse("localhost/" + std::string(n)).str();
    }
    return registry::Reference::parse(name).str();
  } catch (const Error& e) {
    throw Error("bad image name: " + e.line());
  }
}

std::string rfc3339(int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  struct tm tm {};
  ::gmtime_r(&tt, &tm);
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return b;
}

Result commit(store::Store& st, const store::ContainerRecord& c, const std::string& name,
              const Options& opt) {
  using store::Layout;
  const std::string ref = image_name(name);
  const std::string what = "container " + c.name;
  if (c.read_only) throw Error(what + ": read-only, it has no changes to commit");

  // The parent: the image the container was made from, with the same layers.
  auto parent = st.find_image(c.image);
  if (!parent || parent->diff_ids != c.diff_ids)
    throw Error(what + ": its image '" + c.image +
                "' is gone or was replaced (its config is needed for the new image)");
  auto cfg_bytes = st.read_blob(parent->config, oci::kMaxDocumentBytes);
  auto man_bytes = st.read_blob(parent->manifest, oci::kMaxDocumentBytes);
  if (!cfg_bytes || !man_bytes)
    throw Error(what + ": the config or manifest of image '" + c.image + "' is missing");
  oci::Manifest parent_manifest = oci::parse_manifest(*man_bytes);
  if (parent_manifest.layers.size() != parent->diff_ids.size())
    throw Error("image '" + c.image + "': manifest and config disagree on the layers");

  // The layer dirs, top first, as the mount stacked them.
  UniqueFd upper = sys::xopen_at(st.root_fd(), Layout::container_upper(c.id),
                                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0,
                                 st.root() + "/" + Layout::container_upper(c.id));
  std::vector<UniqueFd> lower_fds;
  std::vector<LowerDir> lowers;
  for (auto it = c.diff_ids.rbegin(); it != c.diff_ids.rend(); ++it) {
    std::string p = Layout::layer_diff(*it);
    lower_fds.push_back(sys::xopen_at(st.root_fd(), p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0,
                                      "layer " + it->str()));
    lowers.push_back(LowerDir{lower_fds.back().get(), st.root() + "/" + p});
  }

  // Tar → compressor → staging file, hashed on the way.
  store::Store::Staging stage = st.make_staging("commit-");
  Result r;
  try {
    UniqueFd blob = sys::xopen_at(stage.fd.get(), "blob", O_WRONLY | O_CREAT | O_EXCL, 0644,
                                  "commit staging blob");
    BlobWriter bw(blob.get(), opt.compression, opt.level, what + ": layer blob");
    DiffOptions dopt;
    dopt.clamp_mtime = opt.timestamp;
    dopt.progress = opt.progress;
    dopt.objects_dir = st.objects_fd();
    DiffWriter dw(
        upper.get(), std::move(lowers), dopt, [&](const void* p, size_t n) { bw.write(p, n); },
        what);
    r.stats = dw.write();
    bw.finish();
    if (opt.sync) sys::xfsync(blob.get(), "commit staging blob");
    blob.reset();
    r.digest = bw.digest();
    r.diff_id = bw.diff_id();
    r.blob_size = bw.size();
    r.tar_bytes = bw.tar_bytes();
    r.media_type = std::string(layer_media_type(opt.compression));

    // Into the store like a pulled layer, from the blob just written.
    unpack::LayerSpec spec;
    spec.media_type = r.media_type;
    spec.digest = r.digest;
    spec.size = static_cast<int64_t>(r.blob_size);
    spec.diff_id = r.diff_id;
    spec.image = ref;
    unpack::Options uopt;
    uopt.rootless = ::geteuid() != 0;
    uopt.sync = opt.sync;
    FdSource src(sys::xopen_at(stage.fd.get(), "blob", O_RDONLY, 0, "commit staging blob"),
                 "layer blob " + r.digest.str());
    r.layer_existed = st.ingest_layer(spec, src, uopt) == store::Ingest::AlreadyPresent;
    st.adopt_blob(r.digest, stage.fd.get(), "blob");
  } catch (...) {
    try {
      sys::xremove_tree(st.tmp_fd(), stage.name);
    } catch (const Error&) {
    }
    throw;
  }
  sys::xremove_tree(st.tmp_fd(), stage.name);

  // The config: the parent's, plus the layer and its history entry.
  const std::string created = rfc3339(opt.timestamp ? *opt.timestamp : std::time(nullptr));
  json cfg;
  try {
    cfg = json::parse(*cfg_bytes);
    if (!cfg.is_object()) throw Error("not an object");
    if (!cfg.contains("rootfs") || !cfg["rootfs"].is_object())
      cfg["rootfs"] = {{"type", "layers"}, {"diff_ids", json::array()}};
    cfg["rootfs"]["diff_ids"].push_back(r.diff_id.str());
    if (!cfg.contains("history") || !cfg["history"].is_array()) cfg["history"] = json::array();
    json h = {{"created", created}, {"created_by", opt.created_by}};
    if (!opt.comment.empty()) h["comment"] = opt.comment;
    cfg["history"].push_back(h);
    cfg["created"] = created;
  } catch (const std::exception& e) {
    throw Error("image '" + c.image + "': config " + parent->config.str() + ": " + e.what());
  }
  const std::string new_cfg = cfg.dump();
  const Digest cfg_digest = Hasher::of(new_cfg);
  oci::ImageConfig check = oci::parse_config(new_cfg);

  // The manifest: OCI media types (a Docker gzip layer is the same bytes).
  json layers = json::array();
  for (const auto& l : parent_manifest.layers)
    layers.push_back(descriptor(oci_layer_type(l.media_type), l.digest,
                                static_cast<uint64_t>(l.size), l.annotations));
  layers.push_back(descriptor(r.media_type, r.digest, r.blob_size));
  json man = {{"schemaVersion", 2},
              {"mediaType", oci::kOciManifest},
              {"config", descriptor(std::string(oci::kOciConfig), cfg_digest, new_cfg.size())},
              {"layers", layers}};
  const std::string new_man = man.dump();
  const Digest man_digest = Hasher::of(new_man);
  oci::check_layers_match(oci::parse_manifest(new_man), check);

  st.put_blob(cfg_digest, new_cfg);
  st.put_blob(man_digest, new_man);
  store::ImageRecord& rec = r.image;
  rec.ref = ref;
  rec.manifest = man_digest;
  rec.config = cfg_digest;
  rec.diff_ids = c.diff_ids;
  rec.diff_ids.push_back(r.diff_id);
  rec.platform = parent->platform;
  rec.created = created;
  rec.pulled_at = rfc3339(std::time(nullptr));
  std::set<Digest> counted;
  for (const auto& d : rec.diff_ids) {
    if (!counted.insert(d).second) continue;
    if (auto info = st.layer_info(d)) rec.size += info->size;
  }
  st.put_image(rec);
  return r;
}

}  // namespace layer::commit
