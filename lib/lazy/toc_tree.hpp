// write_toc_tree: the metadata tree of a lazily pulled layer, written from
// its table of contents instead of its tar: every entry goes through the
// unpacker's TreeWriter (the same path, name, link and whiteout checks as an
// eager unpack), and every regular file with content becomes a
// metadata-only entry naming its content object, present or not. Stateless;
// thread-safe (concurrent calls share nothing).
#pragma once

#include <string>

#include "lazy/toc.hpp"
#include "unpack/unpacker.hpp"

namespace layer::lazy {

// REQUIRES: staging_dir is an empty directory and opt.objects_dir is set.
// Throws Error prefixed by `context` ("image X: layer D") naming the entry.
unpack::Stats write_toc_tree(int staging_dir, const Toc& toc, const unpack::Options& opt,
                             const std::string& context);

}  // namespace layer::lazy
