#include "registry_flags.hpp"

#include <cerrno>
#include <cstdlib>
#include <type_traits>

namespace layer::cli {

const std::vector<OptSpec>& registry_flags() {
  static const std::vector<OptSpec> flags = {
      {"tls-verify", true, 0, true},
      {"cert-dir", true},
      {"creds", true},
      {"authfile", true},
      {"insecure-registry", true},
      {"low-speed-limit", true},
      {"low-speed-time", true},
      {"retries", true},
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
         "  --insecure-registry HOST  allow plain HTTP to HOST[:PORT] (loopback always is);\n"
         "                         credentials go to a plain-HTTP token realm only for such a\n"
         "                         registry (or a loopback realm of a loopback registry)\n"
         "  --low-speed-limit BYTES, --low-speed-time SECONDS\n"
         "                         abort a transfer that moves fewer than BYTES/s for\n"
         "                         SECONDS (defaults 1024 and 30)\n"
         "  --retries N            retry a failed request or a stalled download N times\n"
         "                         (default 3: a stalled registry ends a pull in ~2 minutes)\n";
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
  auto number = [&](const char* name, long min, long max, auto& out) {
    const std::string* v = get(name);
    if (!v) return;
    char* end = nullptr;
    errno = 0;
    long n = std::strtol(v->c_str(), &end, 10);
    if (v->empty() || *end != '\0' || errno != 0 || n < min || n > max)
      throw UsageError(std::string("--") + name + " wants a number from " + std::to_string(min) +
                       " to " + std::to_string(max) + ", not '" + *v + "'");
    out = static_cast<std::remove_reference_t<decltype(out)>>(n);
  };
  number("low-speed-limit", 1, 1L << 30, opt.low_speed_limit);
  number("low-speed-time", 1, 3600, opt.low_speed_time);
  number("retries", 0, 100, opt.retries);
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
