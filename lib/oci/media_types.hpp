// OCI image-spec and Docker v2 media types, and what each layer type means.
#pragma once

#include <string_view>

namespace layer::oci {

inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kOciConfig = "application/vnd.oci.image.config.v1+json";
inline constexpr std::string_view kOciLayer = "application/vnd.oci.image.layer.v1.tar";
inline constexpr std::string_view kOciLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr std::string_view kOciLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";
inline constexpr std::string_view kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerManifestList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view kDockerConfig = "application/vnd.docker.container.image.v1+json";
inline constexpr std::string_view kDockerLayerGzip =
    "application/vnd.docker.image.rootfs.diff.tar.gzip";
// Uncompressed Docker layer (some `docker save` derived manifests use it).
inline constexpr std::string_view kDockerLayerTar = "application/vnd.docker.image.rootfs.diff.tar";
// Non-distributable ("foreign") layers: pulled like any other layer, from the
// registry or else from the descriptor's `urls` (see RegistrySource).
inline constexpr std::string_view kOciLayerNondist =
    "application/vnd.oci.image.layer.nondistributable.v1.tar";
inline constexpr std::string_view kOciLayerNondistGzip =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
inline constexpr std::string_view kOciLayerNondistZstd =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
inline constexpr std::string_view kDockerForeignLayerGzip =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
// Docker schema 1: refused with a clear message.
inline constexpr std::string_view kDockerSchema1 =
    "application/vnd.docker.distribution.manifest.v1+json";
inline constexpr std::string_view kDockerSchema1Signed =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";

enum class Compression { None, Gzip, Zstd };

// The compression a layer media type declares; nullopt-like Unknown refused.
enum class LayerKind { Tar, TarGzip, TarZstd, Unsupported };
LayerKind layer_kind(std::string_view media_type);

bool is_nondistributable(std::string_view media_type);  // OCI nondistributable, Docker foreign
bool is_manifest_type(std::string_view media_type);     // OCI or Docker v2s2 image manifest
bool is_index_type(std::string_view media_type);        // OCI index or Docker manifest list
bool is_config_type(std::string_view media_type);       // OCI or Docker image config

}  // namespace layer::oci
