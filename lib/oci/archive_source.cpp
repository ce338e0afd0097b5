#include "oci/archive_source.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <vector>

#include "oci/media_types.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::oci {

namespace {

using json = nlohmann::json;

constexpr size_t kMaxMembers = 1'000'000;
constexpr size_t kMaxMemberName = 4096;
constexpr size_t kMaxImages = 1024;  // entries in manifest.json
constexpr int kMaxLinkHops = 8;

struct ArchiveReadFree {
  void operator()(archive* a) const { archive_read_free(a); }
};
using ArchiveR = std::unique_ptr<archive, ArchiveReadFree>;

// Lexically normalizes a member path: drops "./" and empty components,
// resolves ".." without ever leaving the archive root. Returns "" for a path
// that is absolute, escapes the root, names the root itself, or carries NUL.
std::string normalize(std::string_view path) {
  if (path.empty() || path[0] == '/' || path.find('\0') != std::string_view::npos) return {};
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    std::string_view c = path.substr(
        start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (c == "..") {
      if (parts.empty()) return {};
      parts.pop_back();
    } else if (!c.empty() && c != ".") {
      parts.push_back(c);
    }
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  std::string out;
  for (auto p : parts) {
    if (!out.empty()) out += '/';
    out += p;
  }
  return out;
}

std::string shown(std::string_view s) {
  std::string out(s.substr(0, 120));
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return out;
}

// One libarchive reader over the archive fd, with its own offset (pread), so
// that readers on several threads share the fd without sharing a position.
class TarStream {
 public:
  TarStream(int fd, int64_t file_size, const std::string& what)
      : fd_(fd), size_(file_size), what_(what), buf_(1 << 20), a_(archive_read_new()) {
    archive* a = a_.get();
    archive_read_support_format_tar(a);
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_zstd(a);
    archive_read_support_filter_xz(a);
    archive_read_support_filter_bzip2(a);
    if (archive_read_open2(a, this, nullptr, &TarStream::on_read, &TarStream::on_skip, nullptr) !=
        ARCHIVE_OK)
      fail("open");
  }
  archive* get() const { return a_.get(); }
  [[noreturn]] void fail(const std::string& doing) const {
    const char* m = archive_error_string(a_.get());
    throw Error(what_ + ": " + doing + ": " + (m ? m : "unreadable tar"));
  }
  // Advances to the member named `name` (normalized); false at the end.
  bool seek_to(const std::string& name) {
    archive_entry* e;
    for (;;) {
      int r = archive_read_next_header(a_.get(), &e);
      if (r == ARCHIVE_EOF) return false;
      if (r < ARCHIVE_WARN) fail("reading member headers");
      const char* p = archive_entry_pathname(e);
      if (p && normalize(p) == name) return true;
    }
  }

 private:
  static la_ssize_t on_read(archive* a, void* self, const void** out) {
    auto* s = static_cast<TarStream*>(self);
    ssize_t n =
        sys::retry_eintr([&] { return ::pread(s->fd_, s->buf_.data(), s->buf_.size(), s->off_); });
    if (n < 0) {
      archive_set_error(a, errno, "read %s: %s", s->what_.c_str(), std::strerror(errno));
      return -1;
    }
    s->off_ += n;
    *out = s->buf_.data();
    return n;
  }
  static la_int64_t on_skip(archive*, void* self, la_int64_t request) {
    auto* s = static_cast<TarStream*>(self);
    la_int64_t left = s->size_ - s->off_;
    la_int64_t n = request < left ? request : (left > 0 ? left : 0);
    s->off_ += n;
    return n;
  }

  int fd_;
  int64_t size_;
  int64_t off_ = 0;
  std::string what_;
  std::vector<char> buf_;
  ArchiveR a_;
};

// A member's bytes, streamed.
class MemberSource : public ByteSource {
 public:
  MemberSource(std::unique_ptr<TarStream> s, std::string what, int64_t limit)
      : s_(std::move(s)), what_(std::move(what)), left_(limit) {}
  size_t read(void* buf, size_t n) override {
    if (left_ == 0) return 0;
    if (left_ > 0 && static_cast<int64_t>(n) > left_) n = static_cast<size_t>(left_);
    la_ssize_t r = archive_read_data(s_->get(), buf, n);
    if (r < 0) s_->fail("reading " + what_);
    if (left_ > 0) left_ -= r;
    return static_cast<size_t>(r);
  }

 private:
  std::unique_ptr<TarStream> s_;
  std::string what_;
  int64_t left_;  // -1: unlimited
};

std::string strip_docker_io(std::string s) {
  for (const char* p : {"docker.io/library/", "docker.io/"})
    if (s.rfind(p, 0) == 0) return s.substr(std::strlen(p));
  return s;
}

bool has_tag(const std::string& ref) {
  size_t slash = ref.rfind('/');
  return ref.find(':', slash == std::string::npos ? 0 : slash) != std::string::npos ||
         ref.find('@') != std::string::npos;
}

}  // namespace

ArchiveSource::ArchiveSource(const std::string& file, const std::string& ref)
    : file_(file), ref_(ref) {
  if (file.empty()) throw Error("docker-archive: empty archive path");
  char buf[PATH_MAX];
  if (!::realpath(file.c_str(), buf)) throw Error("docker-archive:" + file, errno);
  abs_file_ = buf;
  fd_ = sys::xopen_at(AT_FDCWD, abs_file_, O_RDONLY, 0, describe());
  struct stat st;
  if (::fstat(fd_.get(), &st) < 0) throw_errno(describe());
  if (!S_ISREG(st.st_mode)) throw Error(describe() + ": not a regular file");
  index_members();
  const std::string what = describe();

  if (!members_.count("manifest.json"))
    throw Error(what + ": no manifest.json (not a docker save archive)");
  json manifests;
  try {
    manifests = json::parse(read_member("manifest.json", kMaxDocumentBytes));
  } catch (const json::exception& e) {
    throw Error(what + ": manifest.json: invalid JSON: " + e.what());
  }
  if (!manifests.is_array() || manifests.empty())
    throw Error(what + ": manifest.json: not a non-empty array");
  if (manifests.size() > kMaxImages)
    throw Error(what + ": manifest.json: more than " + std::to_string(kMaxImages) + " images");

  // Pick the image.
  auto tags_of = [&](const json& e) {
    std::vector<std::string> out;
    if (e.is_object() && e.contains("RepoTags") && e["RepoTags"].is_array())
      for (const auto& t : e["RepoTags"])
        if (t.is_string()) out.push_back(t.get<std::string>());
    return out;
  };
  size_t chosen = SIZE_MAX;
  if (ref_.empty()) {
    if (manifests.size() > 1) {
      std::string all;
      for (const auto& e : manifests)
        for (const auto& t : tags_of(e)) all += (all.empty() ? "" : ", ") + t;
      throw Error(what + ": the archive holds " + std::to_string(manifests.size()) +
                  " images; name one with docker-archive:FILE:REF or :@N (tags: " + all + ")");
    }
    chosen = 0;
  } else if (ref_[0] == '@') {
    char* end = nullptr;
    unsigned long n = std::strtoul(ref_.c_str() + 1, &end, 10);
    if (ref_.size() < 2 || *end != '\0' || n >= manifests.size())
      throw Error(what + ": no image " + ref_ + " (the archive holds " +
                  std::to_string(manifests.size()) + ")");
    chosen = n;
  } else {
    std::string want = strip_docker_io(has_tag(ref_) ? ref_ : ref_ + ":latest");
    for (size_t i = 0; i < manifests.size() && chosen == SIZE_MAX; ++i)
      for (const auto& t : tags_of(manifests[i]))
        if (strip_docker_io(t) == want) {
          chosen = i;
          repo_tag_ = t;
        }
    if (chosen == SIZE_MAX) throw Error(what + ": no image tagged '" + ref_ + "' in the archive");
  }
  const json& entry = manifests[chosen];
  if (!entry.is_object()) throw Error(what + ": manifest.json: entry is not an object");
  if (repo_tag_.empty()) {
    auto tags = tags_of(entry);
    if (!tags.empty()) repo_tag_ = tags[0];
  }
  if (!entry.contains("Config") || !entry["Config"].is_string())
    throw Error(what + ": manifest.json: missing 'Config'");
  if (!entry.contains("Layers") || !entry["Layers"].is_array())
    throw Error(what + ": manifest.json: missing 'Layers'");
  std::vector<std::string> layer_paths;
  for (const auto& l : entry["Layers"]) {
    if (!l.is_string()) throw Error(what + ": manifest.json: a layer path is not a string");
    layer_paths.push_back(l.get<std::string>());
  }
  if (layer_paths.size() > kMaxLayers)
    throw Error(what + ": manifest.json: more than " + std::to_string(kMaxLayers) + " layers");

  // The config: named by its digest in both formats; check the name.
  std::string config_path = resolve(entry["Config"].get<std::string>());
  std::string config = read_member(config_path, kMaxDocumentBytes);
  Digest config_digest = Hasher::of(config);
  std::string base = config_path.substr(config_path.rfind('/') + 1);
  if (base.size() == 69 && base.compare(64, 5, ".json") == 0) base.resize(64);
  if (base.size() == 64 && base != config_digest.hex)
    throw Error(what + ": config " + shown(config_path) + ": content has digest " +
                config_digest.str());
  ImageConfig cfg;
  try {
    cfg = parse_config(config);
  } catch (const Error& e) {
    throw Error(what + ": " + e.line());
  }
  if (cfg.diff_ids.size() != layer_paths.size())
    throw Error(what + ": config has " + std::to_string(cfg.diff_ids.size()) + " diff_ids for " +
                std::to_string(layer_paths.size()) + " layers in manifest.json");
  blob_paths_[config_digest] = config_path;

  // Docker 25+: the real manifest is in the OCI layout beside manifest.json.
  if (members_.count("index.json")) {
    Index index;
    try {
      index = parse_index(read_member("index.json", kMaxDocumentBytes));
    } catch (const Error& e) {
      throw Error(what + ": index.json: " + e.line());
    }
    std::vector<Descriptor> todo = index.manifests;
    for (int depth = 0; depth < 2 && manifest_.empty(); ++depth) {
      std::vector<Descriptor> next;
      for (const auto& d : todo) {
        std::string path = "blobs/" + d.digest.algorithm + "/" + d.digest.hex;
        if (!members_.count(path)) continue;
        if (!is_manifest_type(d.media_type) && !is_index_type(d.media_type)) continue;
        std::string bytes = read_member(path, kMaxDocumentBytes);
        if (Hasher::of(bytes, d.digest.algorithm) != d.digest ||
            static_cast<int64_t>(bytes.size()) != d.size)
          throw Error(what + ": " + path + ": content does not match its descriptor");
        try {
          if (is_index_type(d.media_type)) {
            for (auto& c : parse_index(bytes).manifests) next.push_back(c);
          } else if (parse_manifest(bytes).config.digest == config_digest) {
            manifest_ = bytes;
            manifest_media_type_ = d.media_type;
            break;
          }
        } catch (const Error& e) {
          throw Error(what + ": " + path + ": " + e.line());
        }
      }
      todo = next;
    }
  }
  if (manifest_.empty())
    synthesize_manifest(layer_paths, cfg.diff_ids, config_digest,
                        static_cast<int64_t>(config.size()));
}

void ArchiveSource::index_members() {
  struct stat st;
  if (::fstat(fd_.get(), &st) < 0) throw_errno(describe());
  TarStream s(fd_.get(), st.st_size, describe());
  archive_entry* e;
  for (;;) {
    int r = archive_read_next_header(s.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) s.fail("reading member headers");
    if (members_.size() >= kMaxMembers)
      throw Error(describe() + ": more than " + std::to_string(kMaxMembers) + " members");
    const char* p = archive_entry_pathname(e);
    if (!p || std::strlen(p) > kMaxMemberName) continue;
    std::string name = normalize(p);
    if (name.empty()) continue;  // absolute, escaping or root: never referenced
    Member m;
    if (const char* h = archive_entry_hardlink(e)) {
      m.link = h;
      m.hardlink = true;
    } else if (archive_entry_filetype(e) == AE_IFLNK) {
      const char* t = archive_entry_symlink(e);
      m.link = t ? t : "";
    } else if (archive_entry_filetype(e) != AE_IFREG) {
      continue;  // directories and the rest hold nothing we read
    }
    m.size = archive_entry_size(e);
    if (!members_.emplace(name, m).second)
      throw Error(describe() + ": member '" + shown(name) + "' appears twice");
  }
}

std::string ArchiveSource::resolve(const std::string& path) const {
  std::string name = normalize(path);
  if (name.empty()) throw Error(describe() + ": invalid member path '" + shown(path) + "'");
  for (int hop = 0; hop <= kMaxLinkHops; ++hop) {
    auto it = members_.find(name);
    if (it == members_.end())
      throw Error(describe() + ": no member '" + shown(name) + "' in the archive");
    const Member& m = it->second;
    if (m.link.empty()) return name;
    std::string next;
    if (m.hardlink) {
      next = normalize(m.link);
    } else if (!m.link.empty() && m.link[0] != '/') {
      size_t slash = name.rfind('/');
      next = normalize((slash == std::string::npos ? "" : name.substr(0, slash + 1)) + m.link);
    }
    if (next.empty())
      throw Error(describe() + ": member '" + shown(name) + "' links outside the archive");
    name = next;
  }
  throw Error(describe() + ": member '" + shown(path) + "': too many levels of links");
}

std::unique_ptr<ByteSource> ArchiveSource::open_member(const std::string& name,
                                                       int64_t limit) const {
  struct stat st;
  if (::fstat(fd_.get(), &st) < 0) throw_errno(describe());
  auto s = std::make_unique<TarStream>(fd_.get(), st.st_size, describe());
  if (!s->seek_to(name))
    throw Error(describe() + ": member '" + shown(name) + "' vanished from the archive");
  return std::make_unique<MemberSource>(std::move(s), name, limit);
}

std::string ArchiveSource::read_member(const std::string& name, size_t max) const {
  auto it = members_.find(name);
  if (it == members_.end()) throw Error(describe() + ": no member '" + shown(name) + "'");
  if (it->second.size > static_cast<int64_t>(max))
    throw Error(describe() + ": " + shown(name) + ": " + std::to_string(it->second.size) +
                " bytes, more than the limit of " + std::to_string(max));
  auto src = open_member(name, static_cast<int64_t>(max) + 1);
  std::string out;
  char buf[65536];
  while (size_t n = src->read(buf, sizeof buf)) {
    out.append(buf, n);
    if (out.size() > max)
      throw Error(describe() + ": " + shown(name) + ": more than " + std::to_string(max) +
                  " bytes");
  }
  return out;
}

void ArchiveSource::synthesize_manifest(const std::vector<std::string>& layer_paths,
                                        const std::vector<Digest>& diff_ids,
                                        const Digest& config_digest, int64_t config_size) {
  // Legacy archives carry no manifest: describe the members as an OCI
  // manifest. An uncompressed layer's digest is its diff_id (checked while
  // unpacking); a compressed one is hashed here once.
  json layers = json::array();
  for (size_t i = 0; i < layer_paths.size(); ++i) {
    std::string path = resolve(layer_paths[i]);
    int64_t size = members_.at(path).size;
    unsigned char magic[6] = {};
    size_t got = 0;
    {
      auto src = open_member(path, -1);
      while (got < sizeof magic) {
        size_t n = src->read(magic + got, sizeof magic - got);
        if (n == 0) break;
        got += n;
      }
    }
    std::string media;
    if (got >= 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
      media = std::string(kOciLayerGzip);
    } else if (got >= 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f &&
               magic[3] == 0xfd) {
      media = std::string(kOciLayerZstd);
    } else if ((got >= 3 && magic[0] == 'B' && magic[1] == 'Z' && magic[2] == 'h') ||
               (got >= 6 && std::memcmp(magic,
                                        "\xfd"
                                        "7zXZ",
                                        5) == 0)) {
      throw Error(describe() + ": layer " + shown(path) + ": bzip2/xz layers are not supported");
    } else {
      media = std::string(kOciLayer);
    }
    Digest digest = diff_ids[i];
    if (media != kOciLayer) {
      Hasher h;
      auto src = open_member(path, -1);
      std::vector<char> buf(1 << 20);
      while (size_t n = src->read(buf.data(), buf.size())) h.update(buf.data(), n);
      digest = h.finish();
    }
    blob_paths_[digest] = path;
    layers.push_back({{"mediaType", media}, {"digest", digest.str()}, {"size", size}});
  }
  json m = {{"schemaVersion", 2},
            {"mediaType", kOciManifest},
            {"config",
             {{"mediaType", kOciConfig}, {"digest", config_digest.str()}, {"size", config_size}}},
            {"layers", layers}};
  manifest_ = m.dump();
  manifest_media_type_ = std::string(kOciManifest);
}

std::string ArchiveSource::describe() const {
  return "docker-archive:" + file_ + (ref_.empty() ? "" : ":" + ref_);
}

std::string ArchiveSource::default_name() const {
  if (!repo_tag_.empty()) return repo_tag_;
  return "docker-archive:" + abs_file_ + (ref_.empty() ? "" : ":" + ref_);
}

FetchedDocument ArchiveSource::get_manifest(const std::optional<Digest>& digest) {
  FetchedDocument doc;
  if (!digest || *digest == Hasher::of(manifest_, digest->algorithm)) {
    doc.bytes = manifest_;
    doc.content_type = manifest_media_type_;
    doc.digest = Hasher::of(doc.bytes, digest ? digest->algorithm : "sha256");
    return doc;
  }
  doc.bytes = read_member("blobs/" + digest->algorithm + "/" + digest->hex, kMaxDocumentBytes);
  doc.digest = Hasher::of(doc.bytes, digest->algorithm);
  return doc;
}

std::string ArchiveSource::get_blob(const Descriptor& d) {
  auto it = blob_paths_.find(d.digest);
  std::string path = it != blob_paths_.end()
                         ? it->second
                         : resolve("blobs/" + d.digest.algorithm + "/" + d.digest.hex);
  return read_member(path, kMaxDocumentBytes);
}

std::unique_ptr<ByteSource> ArchiveSource::open_blob(const Descriptor& d) {
  auto it = blob_paths_.find(d.digest);
  std::string path = it != blob_paths_.end()
                         ? it->second
                         : resolve("blobs/" + d.digest.algorithm + "/" + d.digest.hex);
  return open_member(path, d.size >= 0 ? d.size + 1 : -1);
}

}  // namespace layer::oci
