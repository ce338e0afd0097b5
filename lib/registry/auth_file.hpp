// AuthFile: a containers-auth.json / docker config.json credentials file
// ({"auths": {"registry[/namespace]": {"auth": base64("user:pass")}}}), and
// the search path for credentials (--creds, --authfile or
// $REGISTRY_AUTH_FILE or ${XDG_RUNTIME_DIR}/containers/auth.json, then
// ~/.config/containers/auth.json, then ~/.docker/config.json). Secrets are
// never put into messages. Plain values; not thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace layer::registry {

struct Credentials {
  std::string username;
  std::string password;
  std::string source;  // for messages: "--creds", "/root/.docker/config.json (docker.io)"
};

struct CredentialSearch {
  std::optional<Credentials> found;
  std::vector<std::string> tried;  // every source looked at, in order, for messages
  std::string tried_str() const;   // "--creds, /a/auth.json, /b/config.json"
};

class AuthFile {
 public:
  // Reads `path`; a missing file reads as empty. Throws Error naming the path
  // if it exists but is not a credentials file.
  static AuthFile load(const std::string& path);
  const std::string& path() const { return path_; }

  // The entry for `registry` ("host[:port]") and repository `repo`, most
  // specific key first ("host/ns/repo", "host/ns", "host"); keys written as
  // URLs ("https://index.docker.io/v1/") are normalized.
  std::optional<Credentials> find(std::string_view registry, std::string_view repo) const;
  // A credential helper configured for the registry (credsStore/credHelpers), or "".
  std::string helper_for(std::string_view registry) const;

  void set(const std::string& key, const std::string& username, const std::string& password);
  bool erase(const std::string& key);  // false if there was no such entry
  size_t erase_all();
  // Writes atomically with mode 0600, creating the directory (0700) if needed.
  void save() const;

 private:
  std::string path_;
  nlohmann::json doc_ = nlohmann::json::object();
};

// Normalizes a registry key as auth files spell it ("https://index.docker.io/v1/",
// "registry-1.docker.io" → "docker.io"; "http://host:5000/" → "host:5000").
std::string normalize_auth_key(std::string_view key);

// The file login writes and credential lookup tries first: `flag`, else
// $REGISTRY_AUTH_FILE, else ${XDG_RUNTIME_DIR}/containers/auth.json, else
// /run/containers/<uid>/auth.json.
std::string primary_auth_file(const std::string& flag);
// All files looked at, in order (the primary one first).
std::vector<std::string> auth_file_search_path(const std::string& flag);

// `creds` ("USER[:PASS]", from --creds) wins over the files.
// Throws Error if --creds is malformed or a file is unreadable.
CredentialSearch find_credentials(std::string_view registry, std::string_view repo,
                                  const std::string& creds, const std::string& auth_file);

// base64 via OpenSSL.
std::string base64_encode(std::string_view s);
std::optional<std::string> base64_decode(std::string_view s);

}  // namespace layer::registry
