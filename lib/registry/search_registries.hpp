// SearchList: registries.conf's unqualified-search-registries, the
// registries podman and skopeo try, in order, for a short name ("debian",
// "team/app:v1"). A plain value; search_list() reads a file.
#pragma once

#include <string>
#include <vector>

namespace layer::registry {

struct SearchList {
  std::string file;                     // the registries.conf read ("" when none)
  std::vector<std::string> registries;  // in order; empty: Docker Hub, as before

  // `ref` at each registry: "team/app:v1" → "quay.io/team/app:v1", ...
  std::vector<std::string> candidates(const std::string& ref) const;
};

// The search list for `ref`: empty registries when `ref` names a registry
// host or has the docker:// prefix (fully qualified), or when no
// registries.conf exists. The file is $CONTAINERS_REGISTRIES_CONF, else
// ~/.config/containers/registries.conf (not as root), else
// /etc/containers/registries.conf. Throws Error naming the file when it
// cannot be read or parsed.
SearchList search_list(const std::string& ref);

// The unqualified-search-registries of the TOML document `text` (read from
// `file`, for messages). Throws Error naming the file.
std::vector<std::string> parse_search_registries(const std::string& text, const std::string& file);

}  // namespace layer::registry
