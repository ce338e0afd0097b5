#include "registry_flags.hpp"

namespace layer::cli {

const std::vector<OptSpec>& registry_flags() {
  static const std::vector<OptSpec> flags = {
      {"tls-verify", true, 0, true}, {"cert-dir", true},          {"creds", true},
      {"authfile", true},   {"insecure-registry", true},
  };
  return flags;
}

const char* registry_flags_usage() {
  return "  --tls-verify=BOOL      false: do not verify the registry's TLS certificate;\n"
         "                         true (or bare --tls-verify): verify, and HTTPS only, even\n"
         "                         on loopback (by default loopback may fall back to HTTP)\n"
         "  --cert-dir DIR         CAs (*.crt) and client certificate (*.cert, *.key) for TLS\n"
         "  --creds USER:PASS      credentials for the registry (instead of the auth files)\n"
         "  --authfile FILE        credentials file (default $REGISTRY_AUTH_FILE or\n"
         "                         ${XDG_RUNTIME_DIR}/containers/auth.json; then\n"
         "                         ~/.config/containers/auth.json, ~/.docker/config.json)\n"
         "  --insecure-registry HOST  allow plain HTTP to HOST[:PORT] (loopback always is)\n";
}

registry::RegistryOptions registry_options(const std::map<std::string, std::string>& values) {
  registry::RegistryOptions opt;
  auto get = [&](const char* name) -> const std::string* {
    auto it = values.find(name);
    return it == values.end() ? nullptr : &it->second;
  };
  if (const auto* v = get("tls-verify")) {
    // A bare --tls-verify means true, as in skopeo and podman.
    if (*v == "false" || *v == "0") {
      opt.tls_verify = false;
    } else if (v->empty() || *v == "true" || *v == "1") {
      opt.tls_verify = true;
      opt.https_only = true;
    } else
      throw UsageError("--tls-verify wants true or false, not '" + *v + "'");
  }
  if (const auto* v = get("cert-dir")) opt.cert_dir = *v;
  if (const auto* v = get("creds")) opt.creds = *v;
  if (const auto* v = get("authfile")) opt.auth_file = *v;
  if (const auto* v = get("insecure-registry")) {
    size_t start = 0;
    while (start <= v->size()) {
      size_t nl = v->find('\n', start);
      std::string host = v->substr(start, nl - start);
      if (!host.empty()) opt.insecure.push_back(host);
      if (nl == std::string::npos) break;
      start = nl + 1;
    }
  }
  return opt;
}

}  // namespace layer::cli
