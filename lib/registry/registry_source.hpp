// open_registry_source: an oci::ImageSource over the OCI distribution API
// (ping, manifests, blobs; Bearer/Basic auth; TLS; resumable blob streams).
// The returned source is safe to use from several threads (one stream each).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "oci/image_source.hpp"

namespace layer::registry {

struct RegistryOptions {
  bool tls_verify = true;             // --tls-verify=false turns it off
  bool https_only = false;            // --tls-verify=true given: no plain HTTP, even on loopback
  std::string cert_dir;               // --cert-dir: *.crt (CAs), *.cert + *.key (client)
  std::vector<std::string> insecure;  // registries allowed over plain HTTP (loopback always is)
  std::string auth_file;              // --authfile; else $REGISTRY_AUTH_FILE, XDG, docker config
  std::string creds;                  // --creds USER:PASS, overrides the auth files
  // A transfer that moves fewer than low_speed_limit bytes/s for
  // low_speed_time seconds is aborted (a stalled or trickling registry).
  long low_speed_limit = 1024;  // --low-speed-limit BYTES
  long low_speed_time = 30;     // --low-speed-time SECONDS
  // How often a failed request (connection failure, 5xx, 429) or a blob
  // transfer that stalled or broke without progress is tried again. With the
  // defaults a registry that stalls ends a pull within about two minutes.
  int retries = 3;  // --retries N
};

// `ref`: "debian", "debian:bookworm", "docker.io/library/debian@sha256:…",
// "127.0.0.1:5000/team/app:v1", optionally prefixed "docker://".
// Throws Error naming the reference if it is malformed.
std::unique_ptr<oci::ImageSource> open_registry_source(const std::string& ref,
                                                       const RegistryOptions& opt);

// The normalized name a pulled image is recorded under
// ("docker.io/library/debian:bookworm"); throws Error if malformed.
std::string normalize_reference(const std::string& ref);

// The registry part of `arg` as auth files key it: "docker.io" for Docker
// Hub's aliases, "host[:port]" otherwise (a scheme or a "/v1/" path is
// dropped). Throws Error if it is not a registry host.
std::string registry_key(const std::string& arg);

// What lazy pull records so that a daemon can fetch a layer's blob later
// (oci::ImageSource::locator): the repository ("host/path") and the
// RegistryOptions without --creds (credentials come from the auth files
// then, as for a pull without --creds). Throws Error if malformed.
struct Reference;
struct RegistryLocator {
  std::string repository;
  RegistryOptions options;
};
std::string locator_json(const Reference& ref, const RegistryOptions& opt);
RegistryLocator parse_locator(const std::string& text);

// Pings `registry` and authenticates with opt.creds as a pull would (Bearer
// token fetch or Basic). Throws Error naming the registry if the credentials
// are refused or the registry cannot be reached.
void check_login(const std::string& registry, const RegistryOptions& opt);

}  // namespace layer::registry
