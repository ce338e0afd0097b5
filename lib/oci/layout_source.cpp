#include "oci/layout_source.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>

#include <climits>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "oci/media_types.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::oci {

namespace {

using json = nlohmann::json;

constexpr const char* kRefName = "org.opencontainers.image.ref.name";

std::string tag_of(const Descriptor& d) {
  auto it = d.annotations.find(kRefName);
  return it == d.annotations.end() ? std::string() : it->second;
}

json descriptor_json(const Descriptor& d) {
  json j = {{"mediaType", d.media_type}, {"digest", d.digest.str()}, {"size", d.size}};
  if (d.platform) {
    j["platform"] = {{"os", d.platform->os}, {"architecture", d.platform->architecture}};
    if (!d.platform->variant.empty()) j["platform"]["variant"] = d.platform->variant;
  }
  if (!d.annotations.empty()) j["annotations"] = d.annotations;
  return j;
}

// Reads all of an open file, refusing more than `max` bytes.
std::string read_capped(int fd, size_t max, const std::string& what) {
  std::string out;
  char buf[65536];
  for (;;) {
    auto n = sys::read_full(fd, buf, sizeof buf);
    if (!n) throw Error(what, n.error());
    if (*n == 0) return out;
    if (out.size() + *n > max)
      throw Error(what + ": larger than the limit of " + std::to_string(max) + " bytes");
    out.append(buf, *n);
  }
}

}  // namespace

LayoutSource::LayoutSource(const std::string& dir, const std::string& tag) : dir_(dir), tag_(tag) {
  if (dir.empty()) throw Error("oci: empty layout path");
  char buf[PATH_MAX];
  if (!::realpath(dir.c_str(), buf)) throw Error("oci:" + dir, errno);
  abs_dir_ = buf;
  dirfd_ = sys::xopen_at(AT_FDCWD, abs_dir_, O_RDONLY | O_DIRECTORY, 0, "oci:" + dir);
  std::string what = describe();

  std::string layout = sys::xread_file(dirfd_.get(), "oci-layout", 64 << 10, what + ": oci-layout");
  try {
    json j = json::parse(layout);
    std::string v = j.at("imageLayoutVersion").get<std::string>();
    if (v.rfind("1.", 0) != 0)
      throw Error(what + ": unsupported imageLayoutVersion '" + v.substr(0, 40) + "'");
  } catch (const json::exception&) {
    throw Error(what + ": oci-layout: not an OCI layout marker");
  }
  std::string index_text =
      sys::xread_file(dirfd_.get(), "index.json", kMaxDocumentBytes, what + ": index.json");
  Index index;
  std::vector<BadIndexEntry> bad;
  try {
    index = parse_index(index_text, &bad);
  } catch (const Error& e) {
    throw Error(what + ": index.json: " + e.line());
  }
  // Only the entry pulled must be valid; the others belong to other images.
  for (const auto& b : bad) {
    if (!tag_.empty() && b.ref_name == tag_) throw Error(what + ": index.json: " + b.message);
    warnings_.push_back(what + ": index.json: skipped " +
                        (b.ref_name.empty() ? "an untagged entry" : "'" + b.ref_name + "'") + ": " +
                        b.message);
  }

  std::vector<std::string> tags;
  for (const auto& d : index.manifests) {
    if (!is_manifest_type(d.media_type) && !is_index_type(d.media_type)) continue;
    std::string t = tag_of(d);
    if (!tag_.empty() && t != tag_) {
      bool known = false;
      for (const auto& x : tags) known |= x == t;
      if (!known) tags.push_back(t);
      continue;
    }
    selected_.push_back(d);
  }
  auto list = [&]() {
    std::string s;
    for (const auto& t : tags) s += (s.empty() ? "" : ", ") + (t.empty() ? "(untagged)" : t);
    return s.empty() ? std::string("none") : s;
  };
  if (selected_.empty()) {
    if (!tag_.empty())
      throw Error(what + ": no image tagged '" + tag_ + "' (tags: " + list() + ")");
    throw Error(what + ": the layout holds no image");
  }
  if (tag_.empty()) {
    for (const auto& d : selected_) {
      bool known = false;
      for (const auto& x : tags) known |= x == tag_of(d);
      if (!known) tags.push_back(tag_of(d));
    }
    if (tags.size() > 1)
      throw Error(what + ": the layout holds several images; name one with oci:DIR:TAG (tags: " +
                  list() + ")");
    name_tag_ = tags.empty() ? "" : tags[0];
  } else {
    name_tag_ = tag_;
  }
}

std::string LayoutSource::describe() const {
  return "oci:" + dir_ + (tag_.empty() ? "" : ":" + tag_);
}

std::string LayoutSource::default_name() const {
  return "oci:" + abs_dir_ + (name_tag_.empty() ? "" : ":" + name_tag_);
}

UniqueFd LayoutSource::open_blob_fd(const Digest& d) const {
  // Digest is validated (algorithm and lowercase hex only), so the path is
  // two plain components; RESOLVE_BENEATH keeps symlinks inside the layout.
  std::string path = "blobs/" + d.algorithm + "/" + d.hex;
  auto r = sys::open_beneath(dirfd_.get(), path.c_str(), O_RDONLY | O_NOCTTY);
  if (!r) throw Error(describe() + ": blob " + d.str(), r.error());
  struct stat st;
  if (::fstat(r->get(), &st) < 0) throw_errno(describe() + ": blob " + d.str());
  if (!S_ISREG(st.st_mode)) throw Error(describe() + ": blob " + d.str() + ": not a regular file");
  return std::move(r).value();
}

std::string LayoutSource::read_small_blob(const Digest& d) const {
  UniqueFd fd = open_blob_fd(d);
  return read_capped(fd.get(), kMaxDocumentBytes, describe() + ": blob " + d.str());
}

FetchedDocument LayoutSource::get_manifest(const std::optional<Digest>& digest) {
  FetchedDocument doc;
  if (digest) {
    doc.bytes = read_small_blob(*digest);
    doc.digest = Hasher::of(doc.bytes, digest->algorithm);
    return doc;
  }
  if (selected_.size() == 1) {
    const Descriptor& d = selected_[0];
    doc.bytes = read_small_blob(d.digest);
    doc.digest = Hasher::of(doc.bytes, d.digest.algorithm);
    if (doc.digest != d.digest)
      throw Error(describe() + ": manifest " + d.digest.str() + ": digest mismatch (blob is " +
                  doc.digest.str() + ")");
    if (static_cast<int64_t>(doc.bytes.size()) != d.size)
      throw Error(describe() + ": manifest " + d.digest.str() + ": size " +
                  std::to_string(doc.bytes.size()) + " differs from the descriptor's " +
                  std::to_string(d.size));
    doc.content_type = d.media_type;
    return doc;
  }
  // One tag over several platforms as flat index.json entries: hand the
  // puller an index of exactly those entries to select from.
  json idx = {{"schemaVersion", 2}, {"mediaType", kOciIndex}, {"manifests", json::array()}};
  for (const auto& d : selected_) idx["manifests"].push_back(descriptor_json(d));
  doc.bytes = idx.dump();
  doc.digest = Hasher::of(doc.bytes);
  doc.content_type = std::string(kOciIndex);
  return doc;
}

std::string LayoutSource::get_blob(const Descriptor& d) {
  return read_small_blob(d.digest);
}

std::unique_ptr<ByteSource> LayoutSource::open_blob(const Descriptor& d) {
  // One byte past the descriptor's size, so an over-long blob is caught by
  // the size check without reading all of it.
  long long limit = d.size >= 0 ? d.size + 1 : -1;
  return std::make_unique<FdSource>(open_blob_fd(d.digest), describe() + ": blob " + d.digest.str(),
                                    limit);
}

}  // namespace layer::oci
