#include "oci/media_types.hpp"

namespace layer::oci {

LayerKind layer_kind(std::string_view media_type) {
  // The image spec: implementations must accept non-distributable layers
  // and treat them like the distributable type of the same compression.
  if (media_type == kOciLayer || media_type == kDockerLayerTar || media_type == kOciLayerNondist)
    return LayerKind::Tar;
  if (media_type == kOciLayerGzip || media_type == kDockerLayerGzip ||
      media_type == kOciLayerNondistGzip || media_type == kDockerForeignLayerGzip)
    return LayerKind::TarGzip;
  if (media_type == kOciLayerZstd || media_type == kOciLayerNondistZstd) return LayerKind::TarZstd;
  return LayerKind::Unsupported;
}

bool is_nondistributable(std::string_view media_type) {
  return media_type == kOciLayerNondist || media_type == kOciLayerNondistGzip ||
         media_type == kOciLayerNondistZstd || media_type == kDockerForeignLayerGzip;
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
