#include "registry/registry_client.hpp"

#include <dirent.h>
#include <fcntl.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include <nlohmann/json.hpp>

#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::registry {

namespace {

constexpr int kMaxAttempts = 6;  // per request, for connection failures, 5xx and 429
constexpr int kMaxRedirects = 10;
constexpr long kMaxRetryAfterSec = 60;
constexpr size_t kMaxErrorBody = 64 << 10;
constexpr size_t kMaxCertFile = 1 << 20;

struct DirClose {
  void operator()(DIR* d) const { ::closedir(d); }
};
struct CurlUrlFree {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};

std::string printable(std::string_view s, size_t max = 300) {
  std::string out(s.substr(0, max));
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  return out;
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::chrono::milliseconds backoff(int failures) {
  return std::chrono::milliseconds(std::min(200L << (failures - 1), 5000L));
}

// Retry-After: delta-seconds or an HTTP-date.
std::optional<std::chrono::milliseconds> retry_after(const HttpTransfer& t) {
  auto v = t.headers().get("retry-after");
  if (!v || v->empty()) return std::nullopt;
  long secs = -1;
  if (std::all_of(v->begin(), v->end(), [](char c) { return c >= '0' && c <= '9'; })) {
    secs = v->size() > 6 ? kMaxRetryAfterSec : std::atol(v->c_str());
  } else if (time_t when = curl_getdate(v->c_str(), nullptr); when > 0) {
    secs = std::max<long>(0, static_cast<long>(when - time(nullptr)));
  }
  if (secs < 0) return std::nullopt;
  return std::chrono::milliseconds(std::min(secs, kMaxRetryAfterSec) * 1000);
}

bool retryable_status(long st) {
  return st == 429 || st == 500 || st == 502 || st == 503 || st == 504;
}

struct Origin {
  std::string scheme, host, port;
  bool operator==(const Origin&) const = default;
};

std::optional<Origin> origin_of(const std::string& url) {
  std::unique_ptr<CURLU, CurlUrlFree> u(curl_url());
  if (!u || curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) return std::nullopt;
  auto get = [&](CURLUPart p, unsigned flags) {
    char* s = nullptr;
    if (curl_url_get(u.get(), p, &s, flags) != CURLUE_OK || !s) return std::string();
    std::string out(s);
    curl_free(s);
    return out;
  };
  Origin o{get(CURLUPART_SCHEME, 0), get(CURLUPART_HOST, 0),
           get(CURLUPART_PORT, CURLU_DEFAULT_PORT)};
  for (char& c : o.host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return o;
}

}  // namespace

TlsConfig load_tls_config(const std::string& endpoint, const RegistryOptions& opt) {
  TlsConfig tls;
  tls.verify = opt.tls_verify;
  std::vector<std::string> dirs;
  if (!opt.cert_dir.empty()) {
    dirs.push_back(opt.cert_dir);
  } else {
    dirs.push_back("/etc/containers/certs.d/" + endpoint);
    dirs.push_back("/etc/docker/certs.d/" + endpoint);
  }
  std::string extra;
  for (const auto& dir : dirs) {
    std::unique_ptr<DIR, DirClose> d(::opendir(dir.c_str()));
    if (!d) {
      if (!opt.cert_dir.empty()) throw Error("--cert-dir " + dir, errno);
      continue;
    }
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d.get())) names.emplace_back(e->d_name);
    std::sort(names.begin(), names.end());
    for (const auto& name : names) {
      if (name.empty() || name[0] == '.') continue;
      std::string path = dir + "/" + name;
      if (ends_with(name, ".crt")) {
        extra += sys::xread_file(AT_FDCWD, path, kMaxCertFile, path) + "\n";
      } else if (ends_with(name, ".cert")) {
        std::string key = path.substr(0, path.size() - 5) + ".key";
        if (::access(key.c_str(), R_OK) != 0)
          throw Error(path + ": client certificate without its key (" + key + ")");
        tls.client_cert = path;
        tls.client_key = key;
      }
    }
    break;  // the first directory that exists is the one used
  }
  if (!extra.empty()) {
    // The system store plus the extra CAs, as one PEM bundle.
    for (const char* bundle :
         {"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"}) {
      try {
        tls.ca_pem = sys::xread_file(AT_FDCWD, bundle, 16 << 20, bundle) + "\n";
        break;
      } catch (const Error&) {
      }
    }
    tls.ca_pem += extra;
  }
  return tls;
}

RegistryClient::RegistryClient(Reference ref, const RegistryOptions& opt)
    : ref_(std::move(ref)),
      endpoint_(ref_.endpoint()),
      https_only_(opt.https_only),
      allow_http_(!opt.https_only && (ref_.is_loopback() || std::find_if(opt.insecure.begin(), opt.insecure.end(),
                                                     [&](const auto& r) {
                                                       return r == ref_.domain || r == endpoint_;
                                                     }) != opt.insecure.end())),
      http_(load_tls_config(endpoint_, opt)),
      auth_(http_, ref_.domain, ref_.path,
            find_credentials(ref_.domain, ref_.path, opt.creds, opt.auth_file), allow_http_) {}

std::string RegistryClient::transport_failure(const TransportError& e) const {
  return "registry " + ref_.domain + ": " + transport_message(e, endpoint_);
}

std::string RegistryClient::base_url() {
  ping();
  return base_;
}

void RegistryClient::ping() {
  std::call_once(pinged_, [this] {
    auto try_scheme = [&](const std::string& scheme) {
      HttpRequest req;
      req.url = scheme + "://" + endpoint_ + "/v2/";
      for (int failures = 0;;) {
        std::unique_ptr<HttpTransfer> t;
        try {
          t = http_.start(req);
          t->wait_headers();
        } catch (const TransportError& e) {
          if (e.kind() == TransportError::Kind::Transient && ++failures < kMaxAttempts) {
            std::this_thread::sleep_for(backoff(failures));
            continue;
          }
          throw;
        }
        if (retryable_status(t->status()) && ++failures < kMaxAttempts) {
          std::this_thread::sleep_for(retry_after(*t).value_or(backoff(failures)));
          continue;
        }
        return t;
      }
    };
    std::unique_ptr<HttpTransfer> t;
    std::string scheme = "https";
    try {
      t = try_scheme(scheme);
    } catch (const TransportError& e) {
      bool fallback = allow_http_ && e.kind() != TransportError::Kind::Resolve &&
                      e.kind() != TransportError::Kind::Connect;
      if (!fallback) {
        // skopeo says the same: an explicit --tls-verify=true keeps to HTTPS.
        bool would_have = https_only_ && e.kind() != TransportError::Kind::Resolve &&
                          e.kind() != TransportError::Kind::Connect && ref_.is_loopback();
        throw Error(transport_failure(e) +
                    (would_have ? " (--tls-verify=true: plain HTTP not tried)" : ""));
      }
      try {
        scheme = "http";
        t = try_scheme(scheme);
      } catch (const TransportError&) {
        throw Error(transport_failure(e));
      }
      if (t->status() != 200 && t->status() != 401) throw Error(transport_failure(e));
    }
    long st = t->status();
    if (st == 401)
      auth_.set_challenges(t->headers().all("www-authenticate"));
    else if (st != 200)
      throw Error("registry " + ref_.domain + ": " + endpoint_ +
                  " does not answer as an OCI registry (GET /v2/ gave HTTP " + std::to_string(st) +
                  ")");
    base_ = scheme + "://" + endpoint_;
  });
}

bool RegistryClient::same_origin(const std::string& url) const {
  auto a = origin_of(url);
  auto b = origin_of(base_ + "/");
  return a && b && *a == *b;
}

std::unique_ptr<HttpTransfer> RegistryClient::follow(std::string url, HttpRequest req,
                                                     const std::string& authorization) {
  for (int hop = 0; hop <= kMaxRedirects; ++hop) {
    req.url = url;
    // Credentials belong to the registry: never sent to the host of a redirect.
    req.authorization = same_origin(url) ? authorization : std::string();
    if (req.body) req.body->rewind();
    auto t = http_.start(req);
    t->wait_headers();
    long st = t->status();
    if (st != 301 && st != 302 && st != 303 && st != 307 && st != 308) return t;
    std::string next = t->redirect_url();
    if (next.empty()) return t;
    auto to = origin_of(next);
    if (!to || (to->scheme != "https" && to->scheme != "http"))
      throw Error("registry " + ref_.domain + " redirected to an unusable URL");
    if (url.rfind("https:", 0) == 0 && to->scheme == "http" && !allow_http_)
      throw Error("registry " + ref_.domain + " redirected from HTTPS to plain HTTP (" + to->host +
                  "); refusing");
    url = next;
  }
  throw Error("registry " + ref_.domain + ": too many redirects");
}

std::unique_ptr<HttpTransfer> RegistryClient::send(const std::string& path, HttpRequest req) {
  ping();
  bool auth_retried = false;
  for (int failures = 0;;) {
    std::string authorization = auth_.header();
    std::unique_ptr<HttpTransfer> t;
    try {
      t = follow(base_ + path, req, authorization);
    } catch (const TransportError& e) {
      bool again =
          e.kind() == TransportError::Kind::Transient || e.kind() == TransportError::Kind::Connect;
      if (again && ++failures < kMaxAttempts) {
        std::this_thread::sleep_for(backoff(failures));
        continue;
      }
      throw Error(transport_failure(e));
    }
    long st = t->status();
    if (st == 401 && !auth_retried &&
        auth_.refresh(t->headers().all("www-authenticate"), authorization)) {
      auth_retried = true;
      continue;
    }
    if (retryable_status(st) && ++failures < kMaxAttempts) {
      std::this_thread::sleep_for(retry_after(*t).value_or(backoff(failures)));
      continue;
    }
    return t;
  }
}

void RegistryClient::check_login() {
  ping();
  if (!auth_.has_credentials()) throw Error("registry " + ref_.domain + ": no credentials given");
  auto t = send("/v2/", HttpRequest{});
  if (t->status() == 401 || t->status() == 403)
    throw Error("registry " + ref_.domain + " refused the " + auth_.attempt() + " (HTTP " +
                std::to_string(t->status()) + ")");
  if (t->status() != 200) fail(*t, "/v2/");
}

void RegistryClient::fail(HttpTransfer& t, const std::string& what) {
  std::string code, message;
  try {
    auto j = nlohmann::json::parse(t.read_all(kMaxErrorBody));
    if (j.is_object() && j.contains("errors") && j["errors"].is_array() && !j["errors"].empty()) {
      const auto& e = j["errors"][0];
      if (e.is_object() && e.contains("code") && e["code"].is_string())
        code = e["code"].get<std::string>();
      if (e.is_object() && e.contains("message") && e["message"].is_string())
        message = printable(e["message"].get<std::string>());
    }
  } catch (const std::exception&) {
  }
  long st = t.status();
  std::string reg = "registry " + ref_.domain;
  std::string says = message.empty() ? "" : " (registry says: " + message + ")";
  switch (st) {
    case 401:
      throw Error(reg + ": HTTP 401 unauthorized for " + what + "; tried " + auth_.attempt() +
                  says);
    case 403:
      throw Error(reg + ": HTTP 403 forbidden: access to " + what + " denied; tried " +
                  auth_.attempt() + says);
    case 404:
      if (code == "NAME_UNKNOWN")
        throw Error(reg + ": repository '" + ref_.name() + "' not found (" + what + ")");
      if (code == "BLOB_UNKNOWN") throw Error(reg + ": blob unknown: " + what + " not found");
      throw Error(reg + ": manifest unknown: " + what + " not found" +
                  (code == "MANIFEST_UNKNOWN" ? "" : says));
    case 429:
      throw Error(reg + ": too many requests (HTTP 429) for " + what + "; gave up retrying");
    default:
      throw Error(reg + ": HTTP " + std::to_string(st) + " for " + what +
                  (code.empty() ? "" : " [" + code + "]") + says);
  }
}

}  // namespace layer::registry
