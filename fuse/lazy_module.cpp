// The module of the daemon's lazy-pull code (liblayerfs-lazy.so): LazyObjects
// with the registry client and what it links (libcurl, libcrypto, libzstd),
// loaded by fuse/lazy_loader.cpp only for a mount with lazy layers. Its one
// entry point reports errors as text: no exception crosses the module's edge.
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lazy/lazy_objects.hpp"
#include "util/error.hpp"

extern "C" __attribute__((visibility("default"))) layer::lazy::LazyService* layerfs_lazy_open(
    const std::vector<std::string>& lowerdirs, int objects_dir,
    const std::function<void(const std::string&)>& log, std::string& error) noexcept {
  try {
    return new layer::lazy::LazyObjects(lowerdirs, objects_dir, log);
  } catch (const layer::Error& e) {
    error = e.line();
  } catch (const std::exception& e) {
    error = e.what();
  } catch (...) {
    error = "unknown error";
  }
  return nullptr;
}
