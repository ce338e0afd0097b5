// Authenticator: the Authorization header for one registry and repository.
// Follows the registry's WWW-Authenticate challenge: Bearer (anonymous or
// credentialed token fetch from the realm, tokens cached per scope until
// they expire, refreshed on a 401) or Basic. Credentials go only to the
// registry host and to the token realm it names (HTTPS, or plain HTTP when
// `allow_http_realm`). Thread-safe: one mutex guards the challenge and the
// token cache, and is held across a token fetch so one fetch serves all.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "registry/auth_file.hpp"
#include "registry/challenge.hpp"
#include "registry/http_client.hpp"

namespace layer::registry {

// Which plain-HTTP token realms may be used. A registry names its realm
// itself, so a hostile or spoofed registry could name any http:// URL:
// credentials go to a plain-HTTP realm only when the user marked the
// registry insecure (--insecure-registry), or when both the registry and the
// realm are on loopback (nothing leaves the machine). An anonymous token
// fetch (no credentials to leak) may use plain HTTP wherever the registry
// itself may (loopback or --insecure-registry) or when the realm is loopback.
struct RealmPolicy {
  bool registry_http = false;      // the registry itself may be spoken to over plain HTTP
  bool registry_marked = false;    // the user named it with --insecure-registry
  bool registry_loopback = false;  // its host is a loopback address
};

class Authenticator {
 public:
  // `registry`: the host[:port] messages name; `repo`: the repository path.
  Authenticator(HttpClient& http, std::string registry, std::string repo, CredentialSearch creds,
                RealmPolicy realm_policy);

  // The challenges of the /v2/ ping (its WWW-Authenticate header values).
  void set_challenges(const std::vector<std::string>& www_authenticate);
  // The Authorization value for the next registry request, "" for none.
  // Fetches a token if needed; throws Error if the token service refuses.
  std::string header();
  // After a 401 to a request sent with Authorization `sent`: takes the new
  // challenge, drops a cached token equal to `sent`; true if a retry with
  // header() can succeed.
  bool refresh(const std::vector<std::string>& www_authenticate, const std::string& sent);

  // For 401/403 messages: "credentials from /x/auth.json (host)" or
  // "anonymous (no credentials in: ...)"
  std::string attempt() const;
  bool has_credentials() const { return creds_.found.has_value(); }

 private:
  struct Token {
    std::string value;
    std::chrono::steady_clock::time_point expires;
  };
  void take_challenges(const std::vector<std::string>& values);  // REQUIRES: mu_ held
  Token fetch_token(const std::string& scope);                   // REQUIRES: mu_ held
  std::string scope_for() const;                                 // REQUIRES: mu_ held

  HttpClient& http_;
  const std::string registry_;
  const std::string repo_;
  const CredentialSearch creds_;
  const RealmPolicy realm_policy_;

  mutable std::mutex mu_;
  Challenge challenge_;                  // guarded by mu_; scheme "" until a 401 is seen
  std::map<std::string, Token> tokens_;  // guarded by mu_; by scope
};

}  // namespace layer::registry
