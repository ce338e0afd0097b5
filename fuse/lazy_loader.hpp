// Opens the lazy layers of a mount through the lazy-pull module
// (fuse/lazy_module.cpp), which is loaded only when a lower layer is lazy: a
// daemon without lazy layers never maps libcurl and the rest.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lazy/lazy_service.hpp"

namespace layer::fuse {

// nullptr when no layer of `lowerdirs` is lazy. Throws Error when the module
// cannot be loaded, or names the layer whose record or TOC does not verify.
// `objects_dir` (the store's objects/) is borrowed; `log` gets one line per
// failed fetch.
std::unique_ptr<lazy::LazyService> open_lazy_layers(
    const std::vector<std::string>& lowerdirs, int objects_dir,
    std::function<void(const std::string&)> log);

}  // namespace layer::fuse
