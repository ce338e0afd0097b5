#include "oci/media_types.hpp"

namespace layer::oci {

LayerKind layer_kind(std::string_view media_type) {
  if (media_type == kOciLayer || media_type == kDockerLayerTar) return LayerKind::Tar;
  if (media_type == kOciLayerGzip || media_type == kDockerLayerGzip) return LayerKind::TarGzip;
  if (media_type == kOciLayerZstd) return LayerKind::TarZstd;
  // Non-distributable ("foreign") layers live elsewhere by design; we never
  // fetch from URLs a manifest names, so they are refused with the rest.
  return LayerKind::Unsupported;
}

bool is_manifest_type(std::string_view media_type) {
  return media_type == kOciManifest || media_type == kDockerManifest;
}

bool is_index_type(std::string_view media_type) {
  return media_type == kOciIndex || media_type == kDockerManifestList;
}

bool is_config_type(std::string_view media_type) {
  return media_type == kOciConfig || media_type == kDockerConfig;
}

}  // namespace layer::oci
