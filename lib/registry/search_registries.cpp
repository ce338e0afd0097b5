#include "registry/search_registries.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cpptoml.h>
#include <cstdlib>
#include <sstream>

#include "registry/reference.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::registry {
namespace {

constexpr size_t kMaxConfBytes = 1 << 20;
constexpr size_t kMaxRegistries = 64;

// The registries.conf in effect, or "" when there is none.
std::string conf_file() {
  if (const char* e = std::getenv("CONTAINERS_REGISTRIES_CONF"); e && *e) return e;
  if (::geteuid() != 0) {
    std::string dir;
    if (const char* x = std::getenv("XDG_CONFIG_HOME"); x && *x)
      dir = x;
    else if (const char* h = std::getenv("HOME"); h && *h)
      dir = std::string(h) + "/.config";
    if (!dir.empty() && ::access((dir + "/containers/registries.conf").c_str(), F_OK) == 0)
      return dir + "/containers/registries.conf";
  }
  if (::access("/etc/containers/registries.conf", F_OK) == 0)
    return "/etc/containers/registries.conf";
  return "";
}

}  // namespace

std::vector<std::string> SearchList::candidates(const std::string& ref) const {
  std::vector<std::string> out;
  for (const auto& r : registries) out.push_back(r + "/" + ref);
  return out;
}

std::vector<std::string> parse_search_registries(const std::string& text,
                                                 const std::string& file) {
  std::istringstream in(text);
  std::shared_ptr<cpptoml::table> doc;
  try {
    doc = cpptoml::parser(in).parse();
  } catch (const cpptoml::parse_exception& e) {
    throw Error(file + ": " + e.what());
  }
  if (!doc->contains("unqualified-search-registries")) return {};
  auto list = doc->get_array_of<std::string>("unqualified-search-registries");
  if (!list) throw Error(file + ": unqualified-search-registries is not a list of strings");
  if (list->size() > kMaxRegistries)
    throw Error(file + ": more than " + std::to_string(kMaxRegistries) +
                " unqualified-search-registries");
  for (const auto& r : *list) {
    // Each must be a registry host: "host[:port]" that a reference accepts.
    try {
      if (r.empty() || r.find('/') != std::string::npos) throw Error("not a host");
      Reference::parse(r + "/x");
    } catch (const Error&) {
      throw Error(file + ": unqualified-search-registries: '" + r + "' is not a registry host");
    }
  }
  return *list;
}

SearchList search_list(const std::string& ref) {
  SearchList s;
  if (ref.rfind("docker://", 0) == 0 || Reference::names_registry(ref)) return s;
  s.file = conf_file();
  if (s.file.empty()) return s;
  std::string text;
  try {
    text = sys::xread_file(AT_FDCWD, s.file, kMaxConfBytes, s.file);
  } catch (const Error& e) {
    if (e.code().value() == ENOENT) return SearchList{};
    throw;
  }
  s.registries = parse_search_registries(text, s.file);
  return s;
}

}  // namespace layer::registry
