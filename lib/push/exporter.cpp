#include "push/exporter.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "oci/media_types.hpp"
#include "push/layer_blobs.hpp"
#include "registry/reference.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::push {

namespace {

using json = nlohmann::json;

constexpr const char* kRefName = "org.opencontainers.image.ref.name";
constexpr const char* kLayoutFile = "{\"imageLayoutVersion\":\"1.0.0\"}";
constexpr size_t kMaxIndexBytes = 4 << 20;

// "oci:DIR[:TAG]" → (DIR, TAG): the path ends at the first ':' after the
// transport, as in containers/image (and layerctl pull).
std::pair<std::string, std::string> split_dest(const std::string& dest, size_t prefix) {
  std::string rest = dest.substr(prefix);
  size_t colon = rest.find(':');
  if (colon == std::string::npos) return {rest, ""};
  return {rest.substr(0, colon), rest.substr(colon + 1)};
}

std::string blob_path(const Digest& d) {
  return "blobs/" + d.algorithm + "/" + d.hex;
}

// One blob to write: from a file (a layer) or from memory (config, manifest).
struct Blob {
  Digest digest;
  uint64_t size = 0;
  UniqueFd fd;        // a layer blob, or
  std::string bytes;  // a document
};

// The image's blobs, layers first, then the config and the manifest; layers
// the store did not keep are regenerated into `lb`'s staging dir.
std::vector<Blob> collect(LayerBlobs& lb, ExportResult& r, LayerBlobs::Documents& docs) {
  std::vector<Blob> out;
  for (size_t i = 0; i < lb.size(); ++i) {
    UniqueFd fd = lb.open(i);
    if (!fd) {
      lb.regenerate(i);
      ++r.regenerated;
      fd = lb.open(i);
    }
    out.push_back({lb.layer(i).digest, static_cast<uint64_t>(lb.layer(i).size), std::move(fd), {}});
  }
  docs = lb.documents();
  out.push_back({docs.config_digest, docs.config.size(), {}, docs.config});
  out.push_back({docs.manifest_digest, docs.manifest.size(), {}, docs.manifest});
  r.manifest = docs.manifest_digest;
  return out;
}

json index_entry(const LayerBlobs::Documents& docs, const std::string& tag) {
  json e = {{"mediaType", docs.manifest_type},
            {"digest", docs.manifest_digest.str()},
            {"size", docs.manifest.size()}};
  if (!tag.empty()) e["annotations"] = {{kRefName, tag}};
  return e;
}

// Writes `b` as dirfd/blobs/ALG/HEX unless a file of its size is there.
void write_layout_blob(int dirfd, const std::string& where, Blob& b, ExportResult& r) {
  const std::string path = blob_path(b.digest);
  struct stat sb;
  if (::fstatat(dirfd, path.c_str(), &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(sb.st_mode) &&
      static_cast<uint64_t>(sb.st_size) == b.size)
    return;
  const std::string tmp = "blobs/" + b.digest.algorithm + "/.tmp-" + b.digest.hex;
  if (!b.fd) {
    sys::xwrite_file_atomic(dirfd, tmp, dirfd, path, b.bytes);
  } else {
    UniqueFd out = sys::xopen_at(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644, where + "/" + tmp);
    if (auto c = sys::copy_range(b.fd.get(), out.get(), 0, static_cast<off_t>(b.size)); !c)
      throw Error(where + "/" + tmp, c.error());
    sys::xfsync(out.get(), where + "/" + tmp);
    if (::renameat(dirfd, tmp.c_str(), dirfd, path.c_str()) != 0)
      throw Error(where + "/" + path, errno);
    ++r.layers;
  }
  r.bytes += b.size;
}

ExportResult export_oci(store::Store& st, const store::ImageRecord& img, const std::string& dest) {
  auto [dir, tag] = split_dest(dest, 4);
  if (dir.empty()) throw Error("'" + dest + "': no layout directory");
  ExportResult r;
  r.dest = dest;
  sys::xmkdir_p(dir);
  UniqueFd dfd = sys::xopen_dir(dir);
  const bool is_layout = sys::exists_at(dfd.get(), "oci-layout");
  if (!is_layout) {
    UniqueFd dup(::fcntl(dfd.get(), F_DUPFD_CLOEXEC, 0));
    if (!dup) throw Error("'" + dir + "'", errno);
    std::unique_ptr<DIR, int (*)(DIR*)> d(::fdopendir(dup.get()), ::closedir);
    if (!d) throw Error("'" + dir + "'", errno);
    dup.release();  // the DIR owns it now
    while (auto* e = ::readdir(d.get())) {
      std::string n = e->d_name;
      if (n != "." && n != "..")
        throw Error("'" + dest + "': " + dir + " is neither empty nor an OCI layout");
    }
  }
  json index = {{"schemaVersion", 2}, {"manifests", json::array()}};
  if (sys::exists_at(dfd.get(), "index.json")) {
    try {
      index = json::parse(sys::xread_file(dfd.get(), "index.json", kMaxIndexBytes, dir));
    } catch (const json::exception& e) {
      throw Error("'" + dest + "': index.json: " + e.what());
    }
    if (!index.is_object() || !index.contains("manifests") || !index["manifests"].is_array())
      throw Error("'" + dest + "': index.json has no manifests list");
  }
  for (const char* sub : {"blobs", "blobs/sha256"})
    if (::mkdirat(dfd.get(), sub, 0755) != 0 && errno != EEXIST)
      throw Error(dir + "/" + sub, errno);

  LayerBlobs lb(st, img);
  LayerBlobs::Documents docs;
  std::vector<Blob> blobs = collect(lb, r, docs);
  for (auto& b : blobs) write_layout_blob(dfd.get(), dir, b, r);

  // The index last: until it names the manifest, the layout is unchanged.
  json kept = json::array();
  for (const auto& m : index["manifests"]) {
    std::string name;
    if (m.is_object() && m.contains("annotations") && m["annotations"].is_object() &&
        m["annotations"].contains(kRefName) && m["annotations"][kRefName].is_string())
      name = m["annotations"][kRefName].get<std::string>();
    if (name != tag) kept.push_back(m);
  }
  kept.push_back(index_entry(docs, tag));
  index["manifests"] = kept;
  if (!is_layout) sys::xwrite_file_atomic(dfd.get(), ".oci-layout.tmp", dfd.get(), "oci-layout", kLayoutFile);
  sys::xwrite_file_atomic(dfd.get(), ".index.json.tmp", dfd.get(), "index.json", index.dump(2) + "\n");
  return r;
}

struct ArchiveFree {
  void operator()(archive* a) const { archive_write_free(a); }
};
struct EntryFree {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};

// A tar written member by member to a file descriptor (borrowed).
class TarOut {
 public:
  TarOut(int fd, std::string what) : a_(archive_write_new()), what_(std::move(what)) {
    if (!a_) throw Error(what_ + ": archive_write_new failed");
    if (archive_write_set_format_pax_restricted(a_.get()) != ARCHIVE_OK ||
        archive_write_open_fd(a_.get(), fd) != ARCHIVE_OK)
      fail();
  }
  void add(const std::string& name, uint64_t size, int fd, std::string_view bytes) {
    std::unique_ptr<archive_entry, EntryFree> e(archive_entry_new());
    archive_entry_set_pathname(e.get(), name.c_str());
    archive_entry_set_filetype(e.get(), AE_IFREG);
    archive_entry_set_perm(e.get(), 0644);
    archive_entry_set_size(e.get(), static_cast<la_int64_t>(size));
    if (archive_write_header(a_.get(), e.get()) != ARCHIVE_OK) fail();
    if (fd < 0) {
      write(bytes.data(), bytes.size());
      return;
    }
    char buf[256 << 10];
    uint64_t left = size;
    for (off_t off = 0; left > 0;) {
      ssize_t n = ::pread(fd, buf, std::min<uint64_t>(sizeof buf, left), off);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw Error(what_ + ": " + name, errno);
      if (n == 0) throw Error(what_ + ": " + name + ": shorter than " + std::to_string(size));
      write(buf, static_cast<size_t>(n));
      off += n;
      left -= static_cast<uint64_t>(n);
    }
  }
  void close() {
    if (archive_write_close(a_.get()) != ARCHIVE_OK) fail();
  }

 private:
  void write(const void* p, size_t n) {
    if (n > 0 && archive_write_data(a_.get(), p, n) != static_cast<la_ssize_t>(n)) fail();
  }
  [[noreturn]] void fail() {
    const char* m = archive_error_string(a_.get());
    throw Error(what_ + ": " + (m ? m : "tar write failed"));
  }
  std::unique_ptr<archive, ArchiveFree> a_;
  std::string what_;
};

ExportResult export_archive(store::Store& st, const store::ImageRecord& img,
                            const std::string& dest) {
  auto [file, name] = split_dest(dest, 15);
  if (file.empty()) throw Error("'" + dest + "': no archive file");
  // RepoTags: REF as given, else the image's name when it is a registry name.
  std::string repo_tag;
  try {
    if (!name.empty())
      repo_tag = registry::Reference::parse(name).str();
    else if (!is_export_destination(img.ref))
      repo_tag = registry::Reference::parse(img.ref).str();
  } catch (const Error& e) {
    if (!name.empty()) throw Error("'" + dest + "': " + e.line());
  }
  if (repo_tag.find('@') != std::string::npos) repo_tag.clear();
  ExportResult r;
  r.dest = dest;
  LayerBlobs lb(st, img);
  LayerBlobs::Documents docs;
  std::vector<Blob> blobs = collect(lb, r, docs);

  json layers = json::array();
  for (size_t i = 0; i < lb.size(); ++i) layers.push_back(blob_path(lb.layer(i).digest));
  json entry = {{"Config", blob_path(docs.config_digest)},
                {"RepoTags", repo_tag.empty() ? json::array() : json::array({repo_tag})},
                {"Layers", layers}};
  const std::string manifest_json = json::array({entry}).dump() + "\n";
  const std::string index =
      json({{"schemaVersion", 2},
            {"manifests", json::array({index_entry(docs, repo_tag)})}})
          .dump() +
      "\n";

  const std::string tmp = file + ".tmp-layerctl";
  UniqueFd out = sys::xopen_at(AT_FDCWD, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644, tmp);
  try {
    TarOut tar(out.get(), "'" + dest + "'");
    tar.add("oci-layout", std::string_view(kLayoutFile).size(), -1, kLayoutFile);
    std::set<Digest> written;
    for (auto& b : blobs) {
      if (!written.insert(b.digest).second) continue;
      tar.add(blob_path(b.digest), b.size, b.fd ? b.fd.get() : -1, b.bytes);
      r.bytes += b.size;
      if (b.fd) ++r.layers;
    }
    tar.add("index.json", index.size(), -1, index);
    tar.add("manifest.json", manifest_json.size(), -1, manifest_json);
    tar.close();
    sys::xfsync(out.get(), tmp);
    if (::rename(tmp.c_str(), file.c_str()) != 0) throw Error("'" + file + "'", errno);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  return r;
}

}  // namespace

bool is_export_destination(const std::string& dest) {
  return dest.rfind("oci:", 0) == 0 || dest.rfind("docker-archive:", 0) == 0;
}

ExportResult export_image(store::Store& st, const store::ImageRecord& img,
                          const std::string& dest) {
  if (dest.rfind("oci:", 0) == 0) return export_oci(st, img, dest);
  if (dest.rfind("docker-archive:", 0) == 0) return export_archive(st, img, dest);
  throw Error("'" + dest + "': not an export destination (oci:DIR[:TAG], docker-archive:FILE[:REF])");
}

}  // namespace layer::push
