// The flags of every command that talks to a registry (pull, login, logout),
// spelled like skopeo's and podman's: --tls-verify=false, --cert-dir DIR,
// --creds USER:PASS, --authfile FILE, --insecure-registry HOST (repeatable),
// and the stall guards --low-speed-limit, --low-speed-time, --retries.
// Stateless; thread-safe.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "command.hpp"
#include "registry/registry_source.hpp"

namespace layer::cli {

// Append these to a command's OptSpecs.
const std::vector<OptSpec>& registry_flags();

// Usage text for the flags, one per line, indented two spaces.
const char* registry_flags_usage();

// RegistryOptions from parse_options() values; throws UsageError for a bad
// --tls-verify value. Flags not given keep their defaults.
registry::RegistryOptions registry_options(const std::map<std::string, std::string>& values);

}  // namespace layer::cli
