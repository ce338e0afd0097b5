#include "registry/reference.hpp"

#include <cctype>

#include "util/error.hpp"

namespace layer::registry {

namespace {

constexpr size_t kMaxNameLength = 255;
constexpr size_t kMaxTagLength = 128;

bool is_lower_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}
bool is_alnum(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0;
}

// path-component := [a-z0-9]+ ( ( [._] | "__" | "-"+ ) [a-z0-9]+ )*
bool valid_path_component(std::string_view s) {
  size_t i = 0;
  auto run = [&] {
    size_t start = i;
    while (i < s.size() && is_lower_alnum(s[i])) ++i;
    return i > start;
  };
  if (!run()) return false;
  while (i < s.size()) {
    if (s[i] == '.' || s[i] == '_') {
      if (s[i] == '_' && i + 1 < s.size() && s[i + 1] == '_') ++i;
      ++i;
    } else if (s[i] == '-') {
      while (i < s.size() && s[i] == '-') ++i;
    } else {
      return false;
    }
    if (!run()) return false;
  }
  return true;
}

// domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
bool valid_domain_component(std::string_view s) {
  if (s.empty() || !is_alnum(s.front()) || !is_alnum(s.back())) return false;
  for (char c : s)
    if (!is_alnum(c) && c != '-') return false;
  return true;
}

bool valid_port(std::string_view p) {
  if (p.empty() || p.size() > 5) return false;
  for (char c : p)
    if (c < '0' || c > '9') return false;
  return true;
}

bool valid_domain(std::string_view d) {
  std::string_view host = d;
  if (!d.empty() && d.front() == '[') {
    auto close = d.find(']');
    if (close == std::string_view::npos || close < 3) return false;
    for (char c : d.substr(1, close - 1))
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') return false;
    std::string_view rest = d.substr(close + 1);
    if (rest.empty()) return true;
    return rest.front() == ':' && valid_port(rest.substr(1));
  }
  if (auto colon = d.find(':'); colon != std::string_view::npos) {
    if (!valid_port(d.substr(colon + 1))) return false;
    host = d.substr(0, colon);
  }
  size_t start = 0;
  while (true) {
    size_t dot = host.find('.', start);
    if (!valid_domain_component(host.substr(start, dot - start))) return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

// tag := [\w][\w.-]{0,127}
bool valid_tag(std::string_view t) {
  if (t.empty() || t.size() > kMaxTagLength) return false;
  auto word = [](char c) { return is_alnum(c) || c == '_'; };
  if (!word(t.front())) return false;
  for (char c : t)
    if (!word(c) && c != '.' && c != '-') return false;
  return true;
}

std::string printable(std::string_view s) {
  std::string out(s.substr(0, 300));
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return out;
}

}  // namespace

bool Reference::names_registry(std::string_view s) {
  if (s.substr(0, 9) == "docker://") s.remove_prefix(9);
  auto slash = s.find('/');
  if (slash == std::string_view::npos) return false;
  std::string_view first = s.substr(0, slash);
  bool has_upper = false;
  for (char c : first) has_upper |= (c >= 'A' && c <= 'Z');
  return first.find_first_of(".:[") != std::string_view::npos || first == "localhost" || has_upper;
}

Reference Reference::parse(std::string_view input) {
  auto fail = [&](const std::string& why) -> Reference {
    throw Error("invalid image reference '" + printable(input) + "': " + why);
  };
  std::string_view s = input;
  if (s.substr(0, 9) == "docker://") s.remove_prefix(9);
  if (s.empty()) return fail("empty");

  Reference ref;
  if (auto at = s.find('@'); at != std::string_view::npos) {
    std::string_view d = s.substr(at + 1);
    if (!Digest::valid(d)) return fail("bad digest (want sha256:<64 hex> or sha512:<128 hex>)");
    ref.digest = Digest::parse(d);
    s = s.substr(0, at);
  }
  auto last_slash = s.rfind('/');
  auto colon = s.rfind(':');
  if (colon != std::string_view::npos &&
      (last_slash == std::string_view::npos || colon > last_slash)) {
    std::string_view tag = s.substr(colon + 1);
    if (!valid_tag(tag)) return fail("bad tag '" + printable(tag) + "'");
    ref.tag = std::string(tag);
    s = s.substr(0, colon);
  }
  if (s.empty()) return fail("no repository name");

  std::string_view path = s;
  if (names_registry(s)) {
    auto slash = s.find('/');
    std::string_view first = s.substr(0, slash);
    if (!valid_domain(first)) return fail("bad registry host '" + printable(first) + "'");
    ref.domain = std::string(first);
    path = s.substr(slash + 1);
  }
  if (ref.domain.empty() || ref.domain == "index.docker.io") ref.domain = kDockerHubDomain;

  size_t start = 0;
  while (true) {
    size_t next = path.find('/', start);
    std::string_view comp = path.substr(start, next - start);
    if (!valid_path_component(comp)) {
      bool upper = false;
      for (char c : comp) upper |= (c >= 'A' && c <= 'Z');
      if (upper) return fail("repository name must be lowercase");
      return fail("bad repository name component '" + printable(comp) + "'");
    }
    if (next == std::string_view::npos) break;
    start = next + 1;
  }
  ref.path = std::string(path);
  if (ref.domain == kDockerHubDomain && ref.path.find('/') == std::string::npos)
    ref.path = "library/" + ref.path;
  if (ref.name().size() > kMaxNameLength)
    return fail("name longer than " + std::to_string(kMaxNameLength) + " characters");
  if (ref.tag.empty() && !ref.digest) ref.tag = "latest";
  return ref;
}

std::string Reference::str() const {
  // Appended piece by piece: `":" + tag` trips GCC 12's -Wrestrict false
  // positive (char_traits::copy on a prepend) at -O3.
  std::string s = name();
  if (!tag.empty()) s.append(1, ':').append(tag);
  if (digest) s.append(1, '@').append(digest->str());
  return s;
}

std::string Reference::endpoint() const {
  if (domain == kDockerHubDomain) return std::string(kDockerHubEndpoint);
  return domain;
}

std::string Reference::host() const {
  if (!domain.empty() && domain.front() == '[') return domain.substr(1, domain.find(']') - 1);
  return domain.substr(0, domain.find(':'));
}

bool Reference::is_loopback() const {
  std::string h = host();
  if (h == "localhost" || h == "::1") return true;
  if (h.rfind("127.", 0) != 0) return false;
  int dots = 0;
  for (char c : h) {
    if (c == '.')
      ++dots;
    else if (c < '0' || c > '9')
      return false;
  }
  return dots == 3;
}

}  // namespace layer::registry
