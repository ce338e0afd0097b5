// RegistrySource: oci::ImageSource over RegistryClient (see registry_source.hpp).
#include "registry/registry_source.hpp"

#include <nlohmann/json.hpp>

#include "lazy/range_fetcher.hpp"
#include "oci/media_types.hpp"
#include "registry/auth_file.hpp"
#include "registry/blob_stream.hpp"
#include "registry/registry_client.hpp"
#include "util/error.hpp"

namespace layer::registry {

namespace {

constexpr std::string_view kDockerSchema1 = "application/vnd.docker.distribution.manifest.v1";

const std::string kManifestAccept =
    "Accept: " + std::string(oci::kOciManifest) + ", " + std::string(oci::kOciIndex) + ", " +
    std::string(oci::kDockerManifest) + ", " + std::string(oci::kDockerManifestList);

bool is_manifest_type(std::string_view t) {
  return t == oci::kOciManifest || t == oci::kOciIndex || t == oci::kDockerManifest ||
         t == oci::kDockerManifestList;
}

std::string media_type_of(const std::string& content_type) {
  std::string t = content_type.substr(0, content_type.find(';'));
  while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.pop_back();
  for (char& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return t;
}

std::string printable(std::string_view s) {
  std::string out(s.substr(0, 200));
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return out;
}

class RegistrySource : public oci::ImageSource {
 public:
  RegistrySource(Reference ref, const RegistryOptions& opt)
      : client_(std::move(ref), opt), opt_(opt) {}

  std::string describe() const override { return "docker://" + client_.ref().str(); }

  oci::FetchedDocument get_manifest(const std::optional<Digest>& digest) override {
    const Reference& ref = client_.ref();
    std::optional<Digest> want = digest ? digest : ref.digest;
    std::string object = want ? want->str() : ref.tag;
    std::string what = "manifest '" + (digest ? ref.name() + "@" + digest->str() : ref.str()) + "'";
    HttpRequest req;
    req.headers.push_back(kManifestAccept);
    auto t = client_.send("/v2/" + ref.path + "/manifests/" + object, req);
    if (t->status() != 200) client_.fail(*t, what);
    check_length(*t, what, oci::kMaxDocumentBytes);

    oci::FetchedDocument doc;
    doc.bytes = read_all(*t, what);
    doc.content_type = t->headers().get("content-type").value_or("");
    std::string ct = media_type_of(doc.content_type);
    if (ct.rfind(kDockerSchema1, 0) == 0)
      throw Error(reg() + ": " + what + " is a Docker schema 1 manifest (" + ct +
                  "), which is not supported");
    if (!ct.empty() && !is_manifest_type(ct) && ct != "application/json")
      throw Error(reg() + ": " + what + " has unsupported media type '" + printable(ct) + "'");
    check_media_type(doc.bytes, ct, what);

    doc.digest = Hasher::of(doc.bytes, want ? want->algorithm : "sha256");
    if (want && doc.digest != *want)
      throw Error(reg() + ": digest mismatch for " + what + ": expected " + want->str() + ", got " +
                  doc.digest.str());
    if (auto header = t->headers().get("docker-content-digest");
        header && !want && Digest::valid(*header)) {
      Digest claimed = Digest::parse(*header);
      Digest got = claimed.algorithm == doc.digest.algorithm
                       ? doc.digest
                       : Hasher::of(doc.bytes, claimed.algorithm);
      if (got != claimed)
        throw Error(reg() + ": digest mismatch for " + what + ": the registry says " +
                    claimed.str() + ", the bytes hash to " + got.str());
    }
    return doc;
  }

  std::string get_blob(const oci::Descriptor& d) override {
    std::string what = "blob " + d.digest.str();
    if (d.size > static_cast<int64_t>(oci::kMaxDocumentBytes))
      throw Error(reg() + ": " + what + " is too large (" + std::to_string(d.size) + " bytes)");
    auto t = client_.send("/v2/" + client_.ref().path + "/blobs/" + d.digest.str(), HttpRequest{});
    if (t->status() != 200) client_.fail(*t, what);
    check_length(*t, what, oci::kMaxDocumentBytes);
    client_.check_content_length(*t, d.size, what);
    std::string bytes = read_all(*t, what);
    if (d.size >= 0 && bytes.size() != static_cast<size_t>(d.size))
      throw Error(reg() + ": size mismatch for " + what + ": expected " + std::to_string(d.size) +
                  " bytes, got " + std::to_string(bytes.size()));
    Digest got = Hasher::of(bytes, d.digest.algorithm);
    if (got != d.digest)
      throw Error(reg() + ": digest mismatch for " + what + ": got " + got.str());
    return bytes;
  }

  std::unique_ptr<ByteSource> open_blob(const oci::Descriptor& d) override {
    return std::make_unique<BlobStream>(client_, d);
  }

  std::unique_ptr<oci::RangeReader> open_ranges(const oci::Descriptor& d) override {
    return std::make_unique<lazy::BlobRanges>(client_, d);
  }

  std::string locator() const override { return locator_json(client_.ref(), opt_); }

 private:
  std::string reg() const { return "registry " + client_.ref().domain; }

  // A document's body; a transfer failure names the registry and `what`.
  std::string read_all(HttpTransfer& t, const std::string& what) {
    try {
      return t.read_all(oci::kMaxDocumentBytes);
    } catch (const TransportError& e) {
      throw Error(client_.transport_failure(e) + " (reading " + what + ")");
    }
  }

  void check_length(const HttpTransfer& t, const std::string& what, size_t max) const {
    auto len = t.headers().get("content-length");
    if (len && len->size() < 19 && std::strtoull(len->c_str(), nullptr, 10) > max)
      throw Error(reg() + ": " + what + " is larger than " + std::to_string(max) + " bytes");
  }

  // A document's own mediaType must agree with the Content-Type it came with.
  void check_media_type(const std::string& bytes, const std::string& ct,
                        const std::string& what) const {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(bytes);
    } catch (const nlohmann::json::exception&) {
      throw Error(reg() + ": " + what + " is not valid JSON");
    }
    if (!j.is_object()) throw Error(reg() + ": " + what + " is not a JSON object");
    if (!j.contains("mediaType")) return;
    if (!j["mediaType"].is_string())
      throw Error(reg() + ": " + what + ": mediaType is not a string");
    std::string mt = j["mediaType"].get<std::string>();
    if (!is_manifest_type(mt))
      throw Error(reg() + ": " + what + " has unsupported media type '" + printable(mt) + "'");
    if (is_manifest_type(ct) && mt != ct)
      throw Error(reg() + ": " + what + " was served as '" + ct + "' but its mediaType is '" + mt +
                  "'");
  }

  RegistryClient client_;
  RegistryOptions opt_;
};

}  // namespace

std::string locator_json(const Reference& ref, const RegistryOptions& opt) {
  nlohmann::json j = {{"repository", ref.name()},
                      {"tls_verify", opt.tls_verify},
                      {"https_only", opt.https_only},
                      {"cert_dir", opt.cert_dir},
                      {"insecure", opt.insecure},
                      {"auth_file", opt.auth_file}};
  return j.dump();
}

RegistryLocator parse_locator(const std::string& text) {
  RegistryLocator out;
  try {
    auto j = nlohmann::json::parse(text);
    out.repository = j.at("repository").get<std::string>();
    out.options.tls_verify = j.at("tls_verify").get<bool>();
    out.options.https_only = j.at("https_only").get<bool>();
    out.options.cert_dir = j.at("cert_dir").get<std::string>();
    out.options.insecure = j.at("insecure").get<std::vector<std::string>>();
    out.options.auth_file = j.at("auth_file").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("registry locator: ") + e.what());
  }
  return out;
}

std::unique_ptr<oci::ImageSource> open_registry_source(const std::string& ref,
                                                       const RegistryOptions& opt) {
  return std::make_unique<RegistrySource>(Reference::parse(ref), opt);
}

std::string normalize_reference(const std::string& ref) {
  return Reference::parse(ref).str();
}

std::string registry_key(const std::string& arg) {
  std::string key = normalize_auth_key(arg);
  std::string host = key.substr(0, key.find('/'));
  // Validate the host with the reference grammar ("HOST/x" must parse with HOST as domain).
  Reference probe;
  try {
    probe = Reference::parse(host + "/x");
  } catch (const Error&) {
    throw Error("'" + arg + "' is not a registry host[:port]");
  }
  if (probe.domain != host && !(probe.domain == kDockerHubDomain && host == "docker.io"))
    throw Error("'" + arg + "' is not a registry host[:port] (did you mean a reference?)");
  return key;
}

void check_login(const std::string& registry, const RegistryOptions& opt) {
  std::string key = registry_key(registry);
  Reference ref = Reference::parse(key.substr(0, key.find('/')) + "/x");
  ref.path.clear();
  RegistryClient(std::move(ref), opt).check_login();
}

}  // namespace layer::registry
