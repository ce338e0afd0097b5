#include "lazy_loader.hpp"

#include <dlfcn.h>
#include <unistd.h>

#include <climits>

#include "util/error.hpp"

namespace layer::fuse {

namespace {

using OpenFn = lazy::LazyService* (*)(const std::vector<std::string>&, int,
                                      const std::function<void(const std::string&)>&,
                                      std::string&);

constexpr const char* kModule = "liblayerfs-lazy.so";

// Next to the daemon (a build tree), else where it is installed. Never
// through the library search path or the environment: a root daemon loads
// only its own module.
std::vector<std::string> candidates() {
  std::vector<std::string> out;
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n > 0) {
    std::string self(buf, static_cast<size_t>(n));
    out.push_back(self.substr(0, self.rfind('/') + 1) + kModule);
  }
  out.push_back(std::string(LAYERFS_MODULE_DIR) + "/" + kModule);
  return out;
}

OpenFn load_module() {
  static OpenFn fn = [] {
    std::string why;
    for (const std::string& path : candidates()) {
      if (::access(path.c_str(), F_OK) != 0) continue;
      // Loaded for the life of the process: the objects it makes live there.
      void* h = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!h) {
        const char* e = ::dlerror();
        throw Error("lazy-pull module '" + path + "': " + (e ? e : "cannot be loaded"));
      }
      if (void* sym = ::dlsym(h, "layerfs_lazy_open")) return reinterpret_cast<OpenFn>(sym);
      throw Error("lazy-pull module '" + path + "': no layerfs_lazy_open");
    }
    throw Error(std::string("lazy-pull module ") + kModule + ": not found next to the daemon or in " +
                LAYERFS_MODULE_DIR);
  }();
  return fn;
}

}  // namespace

std::unique_ptr<lazy::LazyService> open_lazy_layers(
    const std::vector<std::string>& lowerdirs, int objects_dir,
    std::function<void(const std::string&)> log) {
  if (lazy::lazy_layer_dirs(lowerdirs).empty()) return nullptr;
  std::string error;
  lazy::LazyService* s = load_module()(lowerdirs, objects_dir, log, error);
  if (!s) throw Error(error);
  return std::unique_ptr<lazy::LazyService>(s);
}

}  // namespace layer::fuse
