#include "registry/authenticator.hpp"

#include <thread>

#include <nlohmann/json.hpp>

#include "registry/http_transfer.hpp"
#include "util/error.hpp"

namespace layer::registry {

namespace {

constexpr size_t kMaxTokenResponse = 1 << 20;
constexpr int kTokenAttempts = 3;
// Distribution's token spec: 60 s when expires_in is absent; renew a little early.
constexpr long kDefaultTokenLifetimeSec = 60;
constexpr long kRenewMarginSec = 10;

struct CurlUrlFree {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};

std::string url_part(CURLU* u, CURLUPart part) {
  char* s = nullptr;
  if (curl_url_get(u, part, &s, 0) != CURLUE_OK || !s) return {};
  std::string out(s);
  curl_free(s);
  return out;
}

bool loopback_host(const std::string& h) {
  return h == "localhost" || h == "[::1]" || h == "::1" || h.rfind("127.", 0) == 0;
}

}  // namespace

Authenticator::Authenticator(HttpClient& http, std::string registry, std::string repo,
                             CredentialSearch creds, RealmPolicy realm_policy)
    : http_(http),
      registry_(std::move(registry)),
      repo_(std::move(repo)),
      creds_(std::move(creds)),
      realm_policy_(realm_policy) {}

std::string Authenticator::attempt() const {
  if (creds_.found) return "credentials from " + creds_.found->source;
  return "anonymous; no credentials found in: " + creds_.tried_str();
}

void Authenticator::take_challenges(const std::vector<std::string>& values) {
  // Prefer Bearer, then Basic; ignore schemes we do not speak.
  Challenge basic;
  for (const auto& v : values) {
    for (auto& c : Challenge::parse(v)) {
      if (c.scheme == "bearer") {
        challenge_ = std::move(c);
        return;
      }
      if (c.scheme == "basic" && basic.scheme.empty()) basic = std::move(c);
    }
  }
  if (!basic.scheme.empty()) challenge_ = std::move(basic);
}

void Authenticator::set_challenges(const std::vector<std::string>& www_authenticate) {
  std::lock_guard lock(mu_);
  take_challenges(www_authenticate);
}

std::string Authenticator::scope_for() const {
  std::string scope = challenge_.param("scope");
  if (!scope.empty() || repo_.empty()) return scope;  // no repository: a login check
  return "repository:" + repo_ + ":pull";
}

std::string Authenticator::header() {
  std::lock_guard lock(mu_);
  if (challenge_.scheme == "basic") {
    if (!creds_.found) return {};
    return "Basic " + base64_encode(creds_.found->username + ":" + creds_.found->password);
  }
  if (challenge_.scheme != "bearer") return {};
  std::string scope = scope_for();
  auto it = tokens_.find(scope);
  if (it == tokens_.end() || std::chrono::steady_clock::now() >= it->second.expires)
    it = tokens_.insert_or_assign(scope, fetch_token(scope)).first;
  return "Bearer " + it->second.value;
}

bool Authenticator::refresh(const std::vector<std::string>& www_authenticate,
                            const std::string& sent) {
  std::lock_guard lock(mu_);
  take_challenges(www_authenticate);
  if (challenge_.scheme == "basic") return sent.empty() && creds_.found.has_value();
  if (challenge_.scheme != "bearer") return false;
  for (auto it = tokens_.begin(); it != tokens_.end();) {
    if ("Bearer " + it->second.value == sent)
      it = tokens_.erase(it);
    else
      ++it;
  }
  return true;
}

Authenticator::Token Authenticator::fetch_token(const std::string& scope) {
  std::string realm = challenge_.param("realm");
  if (realm.empty())
    throw Error("registry " + registry_ + " asks for a Bearer token but names no realm");
  std::unique_ptr<CURLU, CurlUrlFree> u(curl_url());
  if (!u || curl_url_set(u.get(), CURLUPART_URL, realm.c_str(), 0) != CURLUE_OK)
    throw Error("registry " + registry_ + " names a malformed token realm");
  std::string scheme = url_part(u.get(), CURLUPART_SCHEME);
  std::string host = url_part(u.get(), CURLUPART_HOST);
  std::string port = url_part(u.get(), CURLUPART_PORT);
  std::string realm_host = port.empty() ? host : host + ":" + port;
  if (scheme != "https") {
    const RealmPolicy& p = realm_policy_;
    if (scheme != "http" || !(p.registry_http || loopback_host(host)))
      throw Error("registry " + registry_ + " names a token realm that is not HTTPS (" +
                  realm_host + "); refusing to use it");
    if (creds_.found && !p.registry_marked && !(p.registry_loopback && loopback_host(host)))
      throw Error("registry " + registry_ + " names the plain-HTTP token realm " + realm_host +
                  "; refusing to send the credentials from " + creds_.found->source +
                  " there in clear text (only to a registry marked --insecure-registry)");
  }
  auto add_query = [&](const std::string& kv) {
    curl_url_set(u.get(), CURLUPART_QUERY, kv.c_str(), CURLU_APPENDQUERY | CURLU_URLENCODE);
  };
  if (std::string service = challenge_.param("service"); !service.empty())
    add_query("service=" + service);
  // Several scopes (a push that mounts from another repository) go as
  // several scope parameters.
  for (size_t pos = 0; pos < scope.size();) {
    size_t sp = scope.find(' ', pos);
    if (sp == std::string::npos) sp = scope.size();
    if (sp > pos) add_query("scope=" + scope.substr(pos, sp - pos));
    pos = sp + 1;
  }
  if (creds_.found) add_query("account=" + creds_.found->username);

  HttpRequest req;
  req.url = url_part(u.get(), CURLUPART_URL);
  req.headers.push_back("Accept: application/json");
  if (creds_.found)
    req.authorization =
        "Basic " + base64_encode(creds_.found->username + ":" + creds_.found->password);

  for (int n = 1;; ++n) {
    auto started = std::chrono::steady_clock::now();
    std::unique_ptr<HttpTransfer> t;
    try {
      t = http_.start(req);
      t->wait_headers();
    } catch (const TransportError& e) {
      if (e.kind() == TransportError::Kind::Transient && n < kTokenAttempts) {
        std::this_thread::sleep_for(std::chrono::milliseconds(300 * n));
        continue;
      }
      throw Error("token service for " + registry_ + ": " + transport_message(e, realm_host));
    }
    long st = t->status();
    if (st >= 500 && n < kTokenAttempts) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300 * n));
      continue;
    }
    if (st == 401 || st == 403)
      throw Error("registry " + registry_ + ": the token service at " + realm_host + " refused " +
                  (creds_.found
                       ? "the credentials from " + creds_.found->source
                       : "anonymous access (no credentials found in: " + creds_.tried_str() + ")") +
                  " (HTTP " + std::to_string(st) + ")");
    if (st != 200)
      throw Error("registry " + registry_ + ": the token service at " + realm_host +
                  " answered HTTP " + std::to_string(st));
    std::string body = t->read_all(kMaxTokenResponse);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(body);
    } catch (const nlohmann::json::exception&) {
      throw Error("registry " + registry_ + ": the token service at " + realm_host +
                  " sent a malformed answer (not JSON)");
    }
    std::string token;
    for (const char* key : {"token", "access_token"})
      if (j.is_object() && j.contains(key) && j[key].is_string() && token.empty())
        token = j[key].get<std::string>();
    if (token.empty() || token.find_first_of("\r\n") != std::string::npos)
      throw Error("registry " + registry_ + ": the token service at " + realm_host +
                  " sent no usable token");
    long lifetime = kDefaultTokenLifetimeSec;
    if (j.contains("expires_in") && j["expires_in"].is_number_integer())
      lifetime = std::max(1L, j["expires_in"].get<long>());
    long margin = lifetime >= 2 * kRenewMarginSec ? kRenewMarginSec : 0;
    return Token{token, started + std::chrono::seconds(lifetime - margin)};
  }
}

}  // namespace layer::registry
