#include "registry/uploader.hpp"

#include "registry/http_body.hpp"
#include "util/error.hpp"

namespace layer::registry {

namespace {

constexpr size_t kMaxBody = 64 << 10;  // answers to uploads are small

std::string with_query(const std::string& path, const std::string& kv) {
  return path + (path.find('?') == std::string::npos ? "?" : "&") + kv;
}

std::string url_escape(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

}  // namespace

std::string Uploader::path_of(const std::string& location) {
  std::string base = client_.base_url();
  if (location.rfind(base + "/", 0) == 0) return location.substr(base.size());
  if (!location.empty() && location[0] == '/' && (location.size() < 2 || location[1] != '/'))
    return location;
  throw Error("registry " + client_.ref().domain + " gave an upload location on another host ('" +
              location.substr(0, 200) + "'); not supported");
}

void Uploader::check_digest(HttpTransfer& t, const Digest& want, const std::string& what) {
  auto got = t.headers().get("docker-content-digest");
  if (got && *got != want.str())
    throw Error("registry " + client_.ref().domain + " stored " + what + " as " +
                got->substr(0, 100) + ", not " + want.str());
}

bool Uploader::blob_exists(const Digest& d) {
  HttpRequest req;
  req.method = "HEAD";
  ++counts_.heads;
  auto t = client_.send("/v2/" + client_.ref().path + "/blobs/" + d.str(), req);
  if (t->status() == 200) return true;
  if (t->status() == 404) return false;
  client_.fail(*t, "blob " + d.str());
}

std::string Uploader::start_upload() {
  if (!location_.empty()) return std::exchange(location_, std::string());
  HttpRequest req;
  req.method = "POST";
  ++counts_.posts;
  auto t = client_.send("/v2/" + client_.ref().path + "/blobs/uploads/", req);
  if (t->status() != 202) client_.fail(*t, "upload to " + client_.ref().name());
  auto loc = t->headers().get("location");
  if (!loc || loc->empty())
    throw Error("registry " + client_.ref().domain + ": upload started without a Location");
  return *loc;
}

bool Uploader::mount(const Digest& d, const std::string& from_repo) {
  HttpRequest req;
  req.method = "POST";
  ++counts_.mounts;
  std::string path = "/v2/" + client_.ref().path + "/blobs/uploads/?mount=" + d.str() +
                     "&from=" + url_escape(from_repo);
  auto t = client_.send(path, req);
  if (t->status() == 201) {
    check_digest(*t, d, "mounted blob " + d.str());
    return true;
  }
  if (t->status() == 202) {  // not mountable: an ordinary upload session
    auto loc = t->headers().get("location");
    if (loc && !loc->empty()) location_ = *loc;
    return false;
  }
  client_.fail(*t, "mount of blob " + d.str() + " from " + from_repo);
}

void Uploader::upload(const Digest& d, int fd, uint64_t size, uint64_t chunk_size,
                      const std::function<void(uint64_t)>& progress) {
  const std::string what = "blob " + d.str();
  std::string loc = start_upload();
  uint64_t sent = 0;
  if (chunk_size > 0 && size > chunk_size) {
    while (sent < size) {
      uint64_t len = std::min(chunk_size, size - sent);
      HttpRequest req;
      req.method = "PATCH";
      req.headers.push_back("Content-Type: application/octet-stream");
      req.headers.push_back("Content-Range: " + std::to_string(sent) + "-" +
                            std::to_string(sent + len - 1));
      uint64_t base = sent;
      req.body =
          std::make_shared<FileBody>(fd, static_cast<off_t>(sent), len, what, [&](uint64_t n) {
            if (progress) progress(base + n);
          });
      ++counts_.patches;
      auto t = client_.send(path_of(loc), req);
      if (t->status() != 202) client_.fail(*t, what + " (chunk at " + std::to_string(sent) + ")");
      // Range: "0-<last byte received>" (some registries omit "bytes=").
      if (auto range = t->headers().get("range")) {
        std::string r = *range;
        if (r.rfind("bytes=", 0) == 0) r = r.substr(6);
        auto dash = r.find('-');
        if (dash == std::string::npos ||
            std::strtoull(r.c_str() + dash + 1, nullptr, 10) != sent + len - 1)
          throw Error("registry " + client_.ref().domain + " acknowledged " + what + " up to '" +
                      r.substr(0, 60) + "', expected 0-" + std::to_string(sent + len - 1));
      }
      if (auto next = t->headers().get("location"); next && !next->empty()) loc = *next;
      sent += len;
    }
    HttpRequest req;
    req.method = "PUT";
    req.headers.push_back("Content-Type: application/octet-stream");
    ++counts_.puts;
    auto t = client_.send(path_of(with_query(loc, "digest=" + d.str())), req);
    if (t->status() != 201) client_.fail(*t, what);
    check_digest(*t, d, what);
    return;
  }
  HttpRequest req;
  req.method = "PUT";
  req.headers.push_back("Content-Type: application/octet-stream");
  req.body = std::make_shared<FileBody>(fd, 0, size, what, progress);
  ++counts_.puts;
  auto t = client_.send(path_of(with_query(loc, "digest=" + d.str())), req);
  if (t->status() != 201) client_.fail(*t, what);
  check_digest(*t, d, what);
}

void Uploader::upload_data(const Digest& d, const std::string& data) {
  const std::string what = "blob " + d.str();
  std::string loc = start_upload();
  HttpRequest req;
  req.method = "PUT";
  req.headers.push_back("Content-Type: application/octet-stream");
  req.body = std::make_shared<StringBody>(data);
  ++counts_.puts;
  auto t = client_.send(path_of(with_query(loc, "digest=" + d.str())), req);
  if (t->status() != 201) client_.fail(*t, what);
  check_digest(*t, d, what);
}

Digest Uploader::put_manifest(const std::string& tag_or_digest, const std::string& media_type,
                              const std::string& bytes) {
  Digest want = Hasher::of(bytes);
  HttpRequest req;
  req.method = "PUT";
  req.headers.push_back("Content-Type: " + media_type);
  req.body = std::make_shared<StringBody>(bytes);
  ++counts_.puts;
  auto t = client_.send("/v2/" + client_.ref().path + "/manifests/" + tag_or_digest, req);
  std::string what = "manifest " + client_.ref().name() + ":" + tag_or_digest;
  if (t->status() != 201) client_.fail(*t, what);
  (void)t->read_all(kMaxBody);
  check_digest(*t, want, what);
  return want;
}

}  // namespace layer::registry
