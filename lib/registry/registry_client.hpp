// RegistryClient: the OCI distribution API for one repository. Pings /v2/
// once (HTTPS; plain HTTP only for loopback or --insecure registries, and
// never with an explicit --tls-verify=true),
// authenticates requests, follows redirects itself (Authorization only ever
// goes to the registry's own scheme://host:port), and retries connection
// failures, 5xx and 429 (honouring Retry-After) with backoff.
// Thread-safe: requests may be sent from several threads at once.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "registry/authenticator.hpp"
#include "registry/http_client.hpp"
#include "registry/http_transfer.hpp"
#include "registry/reference.hpp"
#include "registry/registry_source.hpp"

namespace layer::registry {

class RegistryClient {
 public:
  // Reads credentials and certificates; talks to nobody yet. Throws Error.
  // An empty ref.path makes a client for registry-wide calls (login).
  RegistryClient(Reference ref, const RegistryOptions& opt);

  const Reference& ref() const { return ref_; }
  // "https://host:port" once pinged.
  std::string base_url();

  // Sends `req` to `path` ("/v2/..."); returns the final response with its
  // headers in. Any status may come back except the ones retried away (a
  // 401 is retried once with fresh credentials). Throws Error with a user
  // message for DNS, connect, TLS and exhausted transient failures.
  std::unique_ptr<HttpTransfer> send(const std::string& path, HttpRequest req);

  // Throws the Error a user sees for a non-2xx answer to a request for
  // `what` ("manifest 'ref'", "blob sha256:..."). Reads the error body.
  [[noreturn]] void fail(HttpTransfer& t, const std::string& what);

  // Authenticates against /v2/ as a pull would, with the credentials found;
  // throws Error naming the registry and the credential source if refused.
  void check_login();

  // The message for a transport failure, naming the registry.
  std::string transport_failure(const TransportError& e) const;

 private:
  void ping();  // once; sets base_ and the auth challenge
  std::unique_ptr<HttpTransfer> follow(std::string url, HttpRequest req,
                                       const std::string& authorization);
  bool same_origin(const std::string& url) const;

  Reference ref_;
  std::string endpoint_;  // host[:port] requests go to
  bool https_only_;       // --tls-verify=true was given
  bool allow_http_;
  HttpClient http_;
  Authenticator auth_;
  std::once_flag pinged_;
  std::string base_;  // written once under pinged_, then read-only
};

// Loads --cert-dir (or /etc/containers/certs.d/HOST, /etc/docker/certs.d/HOST):
// *.crt are CAs added to the system store, *.cert + *.key a client certificate.
TlsConfig load_tls_config(const std::string& endpoint, const RegistryOptions& opt);

}  // namespace layer::registry
