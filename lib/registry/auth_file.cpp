#include "registry/auth_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>

#include <openssl/evp.h>

#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::registry {

namespace {

constexpr size_t kMaxAuthFileBytes = 1 << 20;

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

std::string home() {
  std::string h = env("HOME");
  return h.empty() ? "/root" : h;
}

std::string dir_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

std::string base64_encode(std::string_view s) {
  std::string out(4 * ((s.size() + 2) / 3) + 1, '\0');
  int n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(s.data()), static_cast<int>(s.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::optional<std::string> base64_decode(std::string_view s) {
  if (s.size() % 4 != 0) return std::nullopt;
  std::string out(3 * s.size() / 4 + 1, '\0');
  int n =
      EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(s.data()), static_cast<int>(s.size()));
  if (n < 0) return std::nullopt;
  size_t len = static_cast<size_t>(n);
  // EVP_DecodeBlock counts the '=' padding as zero bytes.
  for (size_t i = s.size(); i > 0 && s[i - 1] == '='; --i) --len;
  out.resize(len);
  return out;
}

std::string normalize_auth_key(std::string_view key) {
  std::string k(key);
  bool url = false;
  for (std::string_view scheme : {"https://", "http://"}) {
    if (k.rfind(scheme, 0) == 0) {
      k = k.substr(scheme.size());
      url = true;
    }
  }
  // A URL-style key names a registry, never a namespace ("host/v1/").
  if (url) k = k.substr(0, k.find('/'));
  while (!k.empty() && k.back() == '/') k.pop_back();
  std::string host = k.substr(0, k.find('/'));
  std::string rest = k.size() > host.size() ? k.substr(host.size()) : std::string();
  if (host == "index.docker.io" || host == "registry-1.docker.io") host = "docker.io";
  return host + rest;
}

std::string CredentialSearch::tried_str() const {
  std::string s;
  for (const auto& t : tried) s += (s.empty() ? "" : ", ") + t;
  return s.empty() ? "none" : s;
}

AuthFile AuthFile::load(const std::string& path) {
  AuthFile f;
  f.path_ = path;
  auto fd = sys::open_at(AT_FDCWD, path.c_str(), O_RDONLY);
  if (!fd) {
    if (fd.error() == ENOENT || fd.error() == ENOTDIR) return f;
    throw Error(path, fd.error());
  }
  std::string text;
  char buf[16384];
  for (;;) {
    auto n = sys::read_full(fd->get(), buf, sizeof buf);
    if (!n) throw Error(path, n.error());
    if (*n == 0) break;
    if (text.size() + *n > kMaxAuthFileBytes) throw Error(path + ": credentials file too large");
    text.append(buf, *n);
  }
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) return f;
  try {
    f.doc_ = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
    throw Error(path + ": not a JSON credentials file");
  }
  if (!f.doc_.is_object() || (f.doc_.contains("auths") && !f.doc_["auths"].is_object()))
    throw Error(path + ": not a credentials file (want {\"auths\": {...}})");
  return f;
}

std::optional<Credentials> AuthFile::find(std::string_view registry, std::string_view repo) const {
  if (!doc_.contains("auths")) return std::nullopt;
  const auto& auths = doc_["auths"];
  std::string reg = normalize_auth_key(registry);
  // Candidate keys, most specific first.
  std::vector<std::string> wanted;
  std::string ns(repo);
  while (!ns.empty()) {
    wanted.push_back(reg + "/" + ns);
    auto slash = ns.rfind('/');
    ns = slash == std::string::npos ? std::string() : ns.substr(0, slash);
  }
  wanted.push_back(reg);
  for (const auto& want : wanted) {
    for (const auto& [key, entry] : auths.items()) {
      if (normalize_auth_key(key) != want || !entry.is_object()) continue;
      if (entry.contains("auth") && entry["auth"].is_string()) {
        auto decoded = base64_decode(entry["auth"].get<std::string>());
        if (!decoded) throw Error(path_ + ": entry '" + key + "' has a malformed \"auth\" value");
        auto colon = decoded->find(':');
        if (colon == std::string::npos)
          throw Error(path_ + ": entry '" + key + "' has no ':' in its \"auth\" value");
        return Credentials{decoded->substr(0, colon), decoded->substr(colon + 1),
                           path_ + " (" + key + ")"};
      }
      if (entry.contains("username") && entry.contains("password") &&
          entry["username"].is_string() && entry["password"].is_string())
        return Credentials{entry["username"].get<std::string>(),
                           entry["password"].get<std::string>(), path_ + " (" + key + ")"};
    }
  }
  return std::nullopt;
}

std::string AuthFile::helper_for(std::string_view registry) const {
  std::string reg = normalize_auth_key(registry);
  if (doc_.contains("credHelpers") && doc_["credHelpers"].is_object())
    for (const auto& [key, helper] : doc_["credHelpers"].items())
      if (normalize_auth_key(key) == reg && helper.is_string()) return helper.get<std::string>();
  if (doc_.contains("credsStore") && doc_["credsStore"].is_string())
    return doc_["credsStore"].get<std::string>();
  return {};
}

void AuthFile::set(const std::string& key, const std::string& username,
                   const std::string& password) {
  if (!doc_.contains("auths")) doc_["auths"] = nlohmann::json::object();
  // Drop other spellings of the same key so that the new entry is the one found.
  std::string norm = normalize_auth_key(key);
  std::vector<std::string> old;
  for (const auto& [k, v] : doc_["auths"].items())
    if (normalize_auth_key(k) == norm) old.push_back(k);
  for (const auto& k : old) doc_["auths"].erase(k);
  doc_["auths"][key] = {{"auth", base64_encode(username + ":" + password)}};
}

bool AuthFile::erase(const std::string& key) {
  if (!doc_.contains("auths")) return false;
  std::string norm = normalize_auth_key(key);
  std::vector<std::string> old;
  for (const auto& [k, v] : doc_["auths"].items())
    if (normalize_auth_key(k) == norm) old.push_back(k);
  for (const auto& k : old) doc_["auths"].erase(k);
  return !old.empty();
}

size_t AuthFile::erase_all() {
  if (!doc_.contains("auths")) return 0;
  size_t n = doc_["auths"].size();
  doc_["auths"] = nlohmann::json::object();
  return n;
}

void AuthFile::save() const {
  std::string dir = dir_of(path_);
  sys::xmkdir_p(dir, 0700);
  UniqueFd dfd = sys::xopen_dir(dir);
  std::string name = path_.substr(path_.rfind('/') + 1);
  std::string tmp = "." + name + ".tmp" + std::to_string(::getpid());
  sys::xwrite_file_atomic(dfd.get(), tmp, dfd.get(), name, doc_.dump(1, '\t') + "\n", 0600);
}

std::string primary_auth_file(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (std::string f = env("REGISTRY_AUTH_FILE"); !f.empty()) return f;
  if (std::string x = env("XDG_RUNTIME_DIR"); !x.empty()) return x + "/containers/auth.json";
  return "/run/containers/" + std::to_string(::getuid()) + "/auth.json";
}

std::vector<std::string> auth_file_search_path(const std::string& flag) {
  std::vector<std::string> out{primary_auth_file(flag)};
  std::string config = env("XDG_CONFIG_HOME");
  out.push_back((config.empty() ? home() + "/.config" : config) + "/containers/auth.json");
  std::string docker = env("DOCKER_CONFIG");
  out.push_back((docker.empty() ? home() + "/.docker" : docker) + "/config.json");
  return out;
}

CredentialSearch find_credentials(std::string_view registry, std::string_view repo,
                                  const std::string& creds, const std::string& auth_file) {
  CredentialSearch s;
  if (!creds.empty()) {
    s.tried.push_back("--creds");
    auto colon = creds.find(':');
    if (colon == 0) throw Error("--creds: want USER:PASSWORD (the user name is empty)");
    if (colon == std::string::npos) throw Error("--creds: want USER:PASSWORD (no ':')");
    s.found = Credentials{creds.substr(0, colon), creds.substr(colon + 1), "--creds"};
    return s;
  }
  for (const auto& path : auth_file_search_path(auth_file)) {
    AuthFile f = AuthFile::load(path);
    if (auto c = f.find(registry, repo)) {
      s.tried.push_back(c->source);
      s.found = std::move(c);
      return s;
    }
    std::string helper = f.helper_for(registry);
    s.tried.push_back(
        helper.empty() ? path : path + " (credential helper '" + helper + "' is not supported)");
  }
  return s;
}

}  // namespace layer::registry
