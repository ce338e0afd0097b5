// The store's JSON records (layer.json, images/*.json, container.json) and
// the small helpers the Store's source files share. Internal to lib/store;
// stateless and thread-safe.
#pragma once

#include <sys/types.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "store/store.hpp"

namespace layer::store::detail {

inline constexpr size_t kMaxRecordBytes = 4 << 20;  // store.json, layer.json, images, containers

std::string now_rfc3339();
std::string random_hex(size_t bytes);
void mkdir_at(int dirfd, const std::string& path, mode_t mode);  // EEXIST is fine
nlohmann::json read_json(int dirfd, const std::string& path);    // throws Error naming path

// objects.list: one "sha256:<hex>" a line, sorted. write_object_list makes
// dirfd/objects.list (O_EXCL); parse_object_list throws Error naming `what`.
void write_object_list(int dirfd, const std::set<Digest>& objects);
std::vector<Digest> parse_object_list(std::string_view text, const std::string& what);

nlohmann::json layer_to_json(const LayerInfo& l);
LayerInfo layer_from_json(const nlohmann::json& j);
nlohmann::json image_to_json(const ImageRecord& r);
ImageRecord image_from_json(const nlohmann::json& j);
nlohmann::json container_to_json(const ContainerRecord& c);
ContainerRecord container_from_json(const nlohmann::json& j);

}  // namespace layer::store::detail
