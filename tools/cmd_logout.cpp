// layerctl logout: removes stored registry credentials from auth.json.
#include <cstdio>

#include "command.hpp"
#include "registry/auth_file.hpp"
#include "registry/registry_source.hpp"
#include "util/error.hpp"

namespace layer::cli {
namespace {

int run_logout(Globals& g, std::vector<std::string>& args) {
  auto v = parse_options(args, {{"authfile", true}, {"all", false, 'a'}}, g);
  std::string file = registry::primary_auth_file(v.count("authfile") ? v["authfile"] : "");
  registry::AuthFile f = registry::AuthFile::load(file);
  if (v.count("all")) {
    if (!args.empty()) throw UsageError("--all takes no REGISTRY");
    size_t n = f.erase_all();
    f.save();
    if (!g.quiet)
      std::printf("Removed login credentials for %zu registries from %s\n", n, file.c_str());
    return 0;
  }
  if (args.size() != 1) throw UsageError("want exactly one REGISTRY (or --all)");
  std::string key = registry::registry_key(args[0]);
  if (!f.erase(key)) {
    for (const auto& other :
         registry::auth_file_search_path(v.count("authfile") ? v["authfile"] : "")) {
      if (other == file) continue;
      if (registry::AuthFile::load(other).find(key.substr(0, key.find('/')), ""))
        throw Error("'" + key + "': not logged in through " + file + "; the credentials in " +
                    other + " were left alone");
    }
    throw Error("'" + key + "': not logged in (no entry in " + file + ")");
  }
  f.save();
  if (!g.quiet) std::printf("Removed login credentials for %s\n", key.c_str());
  return 0;
}

const Command::Register kRegister({
    "logout",
    "remove stored registry credentials",
    "Usage: layerctl logout [--authfile FILE] [--all | REGISTRY]\n\n"
    "Removes the credentials for REGISTRY (host[:port], or docker.io), or all of\n"
    "them, from the auth.json that login writes.\n\n"
    "Options:\n"
    "  --authfile FILE   the file to edit (default $REGISTRY_AUTH_FILE, else\n"
    "                    ${XDG_RUNTIME_DIR}/containers/auth.json)\n"
    "  -a, --all         remove every stored credential\n",
    run_logout,
});

}  // namespace
}  // namespace layer::cli
