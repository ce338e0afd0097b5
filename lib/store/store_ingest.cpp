// Store::ingest_layer, in a file of its own: the tar reader (libarchive) is
// linked only into the programs that unpack layers, not into the layerctl
// that mounts containers (tools/meson.build).
#include "store/store.hpp"
#include "unpack/unpacker.hpp"

namespace layer::store {

Ingest Store::ingest_layer(const unpack::LayerSpec& spec, ByteSource& src,
                           const unpack::Options& opt, const unpack::ProgressFn& progress,
                           const BeforePublish& before_publish) {
  auto produce = [&](int diff, const unpack::Options& uopt) {
    return unpack::unpack_layer(diff, spec, src, uopt, progress);
  };
  return ingest_tree(spec, opt, produce, {}, before_publish);
}

}  // namespace layer::store
