#include "lazy/lazy_service.hpp"

#include <fcntl.h>

#include "store/layout.hpp"
#include "util/sys.hpp"

namespace layer::lazy {

std::vector<std::string> lazy_layer_dirs(const std::vector<std::string>& lowerdirs) {
  std::vector<std::string> out;
  for (const std::string& lower : lowerdirs) {
    std::string dir = lower;
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    auto slash = dir.rfind('/');
    if (slash == std::string::npos) continue;
    dir = dir.substr(0, slash);
    auto fd = sys::open_at(AT_FDCWD, dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (fd && sys::exists_at(fd->get(), store::Layout::kLazyJson)) out.push_back(dir);
  }
  return out;
}

}  // namespace layer::lazy
