#include "fsck/fsck.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "oci/image.hpp"
#include "pull/puller.hpp"
#include "store/file_list.hpp"
#include "store/layout.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::fsck {

namespace {

using store::Layout;

constexpr size_t kMaxRecordBytes = 4 << 20;

bool is_dir_at(int dirfd, const std::string& path) {
  struct stat st;
  return ::fstatat(dirfd, path.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

// The digest of the file dirfd/path, by streaming it.
Digest hash_file(int dirfd, const std::string& path, const std::string& algorithm,
                 uint64_t& bytes) {
  UniqueFd fd = sys::xopen_at(dirfd, path, O_RDONLY | O_NOFOLLOW, 0, path);
  Hasher h(algorithm);
  std::vector<char> buf(256 << 10);
  for (;;) {
    auto n = sys::read_full(fd.get(), buf.data(), buf.size());
    if (!n) throw Error("read " + path, n.error());
    h.update(buf.data(), *n);
    bytes += *n;
    if (*n < buf.size()) break;
  }
  return h.finish();
}

const char* subject_name(Subject s) {
  switch (s) {
    case Subject::Store:
      return "store";
    case Subject::Layer:
      return "layer";
    case Subject::Blob:
      return "blob";
    case Subject::Image:
      return "image";
    case Subject::Container:
      return "container";
    case Subject::Object:
      return "object";
  }
  return "?";
}

class Checker {
 public:
  Checker(const store::Store& st, const Options& opt) : st_(st), opt_(opt) {}

  Report run() {
    check_objects();
    check_layers();
    check_blobs();
    check_images();
    check_containers();
    return std::move(r_);
  }

 private:
  void add(Severity sev, Subject subj, const std::string& name, const std::string& path,
           const std::string& what) {
    Finding f{sev, subj, name, path, what};
    if (opt_.on_finding) opt_.on_finding(f);
    r_.findings.push_back(std::move(f));
  }
  void damage(Subject subj, const std::string& name, const std::string& what,
              const std::string& path = {}) {
    add(Severity::Damage, subj, name, path, what);
  }

  void check_layers() {
    int root = st_.root_fd();
    for (const char* alg : {"sha256", "sha512"}) {
      std::string dir = Layout::layers_dir(alg);
      for (const auto& hex : sys::xlist_dir(root, dir)) {
        std::string s = std::string(alg) + ":" + hex;
        ++r_.layers;
        if (!Digest::valid(s)) {
          damage(Subject::Store, dir + "/" + hex, "not a layer digest (foreign entry)");
          continue;
        }
        check_layer(Digest::parse(s));
      }
    }
  }

  void check_layer(const Digest& d) {
    int root = st_.root_fd();
    std::string name = d.str();
    auto bad = [&](const std::string& what, const std::string& path = {}) {
      damage(Subject::Layer, name, what, path);
      r_.damaged_layers.insert(d);
    };
    std::optional<store::LayerInfo> info;
    try {
      info = st_.layer_info(d);
    } catch (const Error& e) {
      bad("layer.json unreadable: " + e.line());
      return;
    }
    if (!info) {
      bad("no layer.json (an unfinished or foreign directory)");
      return;
    }
    if (info->diff_id != d) bad("layer.json names diff_id " + info->diff_id.str());
    if (!is_dir_at(root, Layout::layer_diff(d))) {
      bad("diff/ is missing");
      return;
    }
    std::optional<store::FileList> recorded;
    try {
      recorded = st_.file_list(d);
    } catch (const Error& e) {
      bad("file list unreadable: " + e.line());
      return;
    }
    if (!recorded) {
      add(Severity::Note, Subject::Layer, name, "",
          "no manifest (unpacked before file lists were recorded); tree not checked");
      return;
    }
    UniqueFd diff = sys::xopen_at(root, Layout::layer_diff(d), O_RDONLY | O_DIRECTORY | O_NOFOLLOW,
                                  0, st_.root() + "/" + Layout::layer_diff(d));
    std::set<Digest> named;
    store::FileList actual = store::FileList::scan(diff.get(), {}, &r_.hashed_bytes, &named);
    r_.files += actual.entries.size();
    for (const auto& diffl : store::FileList::compare(*recorded, actual))
      bad(diffl.what, diffl.path);
    check_layer_objects(d, named, bad);
  }

  // Every object the entries name is in objects.list (what gc keeps), present
  // and undamaged.
  template <typename Bad>
  void check_layer_objects(const Digest& d, const std::set<Digest>& named, Bad& bad) {
    std::vector<Digest> listed;
    try {
      listed = st_.layer_objects(d);
    } catch (const Error& e) {
      bad("objects.list unreadable: " + e.line());
      return;
    }
    std::set<Digest> list(listed.begin(), listed.end());
    // A lazily pulled layer names objects still to be fetched (docs/lazy-pull.md).
    const bool lazy = st_.is_lazy_layer(d);
    size_t to_fetch = 0;
    for (const auto& o : named) {
      if (!list.count(o)) bad("names object " + o.str() + ", which objects.list lacks");
      if (!st_.has_object(o) && lazy)
        ++to_fetch;
      else if (!st_.has_object(o))
        bad("names object " + o.str() + ", which is not in the store");
      else if (r_.damaged_objects.count(o))
        bad("names damaged object " + o.str());
    }
    if (lazy)
      add(Severity::Note, Subject::Layer, d.str(), "",
          "pulled lazily: " + std::to_string(to_fetch) + " of " + std::to_string(named.size()) +
              " objects still to fetch");
  }

  void check_objects() {
    int objects = st_.objects_fd();
    for (const auto& o : st_.objects()) {
      ++r_.objects;
      std::string rel = Layout::object_redirect(o).substr(1);
      try {
        Digest got = hash_file(objects, rel, o.algorithm, r_.hashed_bytes);
        if (got != o) {
          damage(Subject::Object, o.str(), "content has digest " + got.str());
          r_.damaged_objects.insert(o);
        }
      } catch (const Error& e) {
        damage(Subject::Object, o.str(), e.line());
        r_.damaged_objects.insert(o);
      }
    }
  }

  void check_blobs() {
    int root = st_.root_fd();
    for (const char* alg : {"sha256", "sha512"}) {
      std::string dir = Layout::blobs_dir(alg);
      for (const auto& hex : sys::xlist_dir(root, dir)) {
        std::string s = std::string(alg) + ":" + hex;
        ++r_.blobs;
        if (!Digest::valid(s)) {
          damage(Subject::Store, dir + "/" + hex, "not a blob digest (foreign entry)");
          continue;
        }
        Digest d = Digest::parse(s);
        try {
          Digest got = hash_file(root, dir + "/" + hex, alg, r_.hashed_bytes);
          if (got != d) {
            damage(Subject::Blob, s, "content has digest " + got.str());
            r_.damaged_blobs.insert(d);
          }
        } catch (const Error& e) {
          damage(Subject::Blob, s, e.line());
          r_.damaged_blobs.insert(d);
        }
      }
    }
  }

  void check_images() {
    std::vector<store::ImageRecord> images;
    try {
      images = st_.images();
    } catch (const Error& e) {
      damage(Subject::Store, "images", "image records unreadable: " + e.line());
      return;
    }
    for (const auto& im : images) {
      ++r_.images;
      auto bad = [&](const std::string& what) {
        damage(Subject::Image, im.ref, what);
        r_.damaged_images.insert(im.ref);
      };
      if (!im.broken.empty()) bad("marked broken: " + im.broken);
      for (const auto& d : im.diff_ids) {
        if (!st_.has_layer(d)) {
          bad("layer " + d.str() + " is not in the store");
          r_.missing_layers.insert(d);
        } else if (r_.damaged_layers.count(d)) {
          bad("uses damaged layer " + d.str());
        }
      }
      for (const auto& [kind, d] : {std::pair<const char*, Digest>{"manifest", im.manifest},
                                    std::pair<const char*, Digest>{"config", im.config}}) {
        if (!st_.has_blob(d))
          bad(std::string(kind) + " blob " + d.str() + " is not in the store");
        else if (r_.damaged_blobs.count(d))
          bad(std::string(kind) + " blob " + d.str() + " is damaged");
      }
      if (st_.has_blob(im.config) && !r_.damaged_blobs.count(im.config)) {
        try {
          auto cfg = oci::parse_config(*st_.read_blob(im.config, 64 << 20));
          if (cfg.diff_ids != im.diff_ids) bad("layers differ from its config's rootfs.diff_ids");
        } catch (const Error& e) {
          bad("config unreadable: " + e.line());
        }
      }
    }
  }

  void check_containers() {
    std::vector<store::ContainerRecord> cs;
    try {
      cs = st_.containers();
    } catch (const Error& e) {
      damage(Subject::Store, "containers", "container records unreadable: " + e.line());
      return;
    }
    for (const auto& c : cs) {
      ++r_.containers;
      std::string name = c.id.substr(0, 12) + (c.name.empty() ? "" : " (" + c.name + ")");
      try {
        if (!c.image.empty() && !st_.find_image(c.image))
          damage(Subject::Container, name, "image '" + c.image + "' is not in the store");
      } catch (const Error& e) {
        damage(Subject::Container, name, e.line());
      }
      for (const auto& d : c.diff_ids) {
        if (!st_.has_layer(d))
          damage(Subject::Container, name, "layer " + d.str() + " is not in the store");
        else if (r_.damaged_layers.count(d))
          damage(Subject::Container, name, "uses damaged layer " + d.str());
      }
      // A read-only container has no upper (layerctl mount --read-only).
      if (!c.read_only && !is_dir_at(st_.root_fd(), Layout::container_upper(c.id)))
        damage(Subject::Container, name, "upper directory is missing");
    }
  }

  const store::Store& st_;
  const Options& opt_;
  Report r_;
};

}  // namespace

std::string Finding::line() const {
  std::string s = std::string(subject_name(subject)) + " " + name + ": ";
  if (!path.empty()) s += "'" + path + "': ";
  return s + what;
}

bool Report::damaged() const {
  return std::any_of(findings.begin(), findings.end(),
                     [](const Finding& f) { return f.severity == Severity::Damage; });
}

Report check(const store::Store& st, const Options& opt) {
  return Checker(st, opt).run();
}

std::vector<RepairAction> repair(store::Store& st, const Report& report,
                                 const SourceFactory& sources,
                                 const std::function<void(const RepairAction&)>& on_action) {
  std::vector<RepairAction> out;
  auto act = [&](const std::string& name, const std::string& what) {
    RepairAction a{name, what};
    if (on_action) on_action(a);
    out.push_back(std::move(a));
  };
  // 1. Move the damaged things aside: out of view, never deleted.
  std::map<Digest, std::string> quarantined;
  for (const auto& d : report.damaged_layers) {
    if (!sys::exists_at(st.root_fd(), Layout::layer_dir(d))) continue;
    quarantined[d] = st.quarantine_layer(d);
    act("layer " + d.str(), "quarantined at " + quarantined[d]);
  }
  // A damaged object goes first: the re-pull of its layers writes it anew.
  for (const auto& d : report.damaged_objects) {
    if (!st.has_object(d)) continue;
    act("object " + d.str(), "quarantined at " + st.quarantine_object(d));
  }
  for (const auto& d : report.damaged_blobs) {
    if (!st.has_blob(d)) continue;
    act("blob " + d.str(), "quarantined at " + st.quarantine_blob(d));
  }
  // 2. Re-pull every image that lost a layer or blob, or missed one already.
  std::vector<store::ImageRecord> images = st.images();
  for (const auto& im : images) {
    bool affected = report.damaged_images.count(im.ref) > 0;
    for (const auto& d : im.diff_ids) affected = affected || !st.has_layer(d);
    affected = affected || !st.has_blob(im.manifest) || !st.has_blob(im.config);
    if (!affected) continue;
    std::string why;
    try {
      std::unique_ptr<oci::ImageSource> src = sources(im.ref);
      pull::Options po;
      po.jobs = 2;
      po.unpack.rootless = ::geteuid() != 0;
      pull::Result res = pull::pull(st, *src, im.ref, po);
      if (res.image.diff_ids != im.diff_ids) {
        act("image " + im.ref, "re-pulled, but its source now holds a different image (" +
                                   res.image.manifest.str() + ")");
      } else {
        act("image " + im.ref, "re-pulled from its source");
      }
    } catch (const Error& e) {
      why = e.line();
    }
    // The record as it stands now; mark it if a layer is still missing.
    std::vector<std::string> lost;
    auto now = st.find_image(im.ref);
    const auto& ids = now ? now->diff_ids : im.diff_ids;
    for (const auto& d : ids)
      if (!st.has_layer(d)) lost.push_back(d.str());
    if (now && (!st.has_blob(now->manifest) || !st.has_blob(now->config)))
      lost.push_back("its manifest or config blob");
    if (lost.empty() && why.empty()) continue;
    if (lost.empty()) {
      act("image " + im.ref, "not re-pulled (" + why + "), but nothing it needs is missing");
      continue;
    }
    std::string reason = "missing " + lost.front();
    if (lost.size() > 1) reason += " and " + std::to_string(lost.size() - 1) + " more";
    if (!why.empty()) reason += "; re-pull failed: " + why;
    st.mark_image_broken(im.ref, reason);
    act("image " + im.ref, "marked broken: " + reason);
  }
  return out;
}

}  // namespace layer::fsck
