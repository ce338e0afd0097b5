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

// Takes flock(op) on `fd`, then checks that `name` beneath `dirfd` still is
// the inode of `fd` (a lock taken on an unlinked inode is retried).
bool lock_and_verify(int fd, int dirfd, const std::string& name, int op);

// Holds the per-layer lock file tmp/<alg>-<hex>.lock (exclusive), so one
// process at a time unpacks or completes a layer; removes it on release.
class LayerLock {
 public:
  LayerLock(int root_fd, const Digest& diff_id);
  ~LayerLock();
  LayerLock(const LayerLock&) = delete;
  LayerLock& operator=(const LayerLock&) = delete;

 private:
  int root_fd_;
  std::string name_;
  UniqueFd fd_;
};

// A staging layer directory's diff/ (0755) and objects/ (0700), made and
// opened read-only.
struct StagingTree {
  UniqueFd diff;
  UniqueFd objects;
};
StagingTree make_staging_tree(int staging_dir);

// Removes tmp/<name>; a failure is left to the sweep at the next open.
void drop_staging(int tmp_fd, const std::string& name) noexcept;

nlohmann::json layer_to_json(const LayerInfo& l);
LayerInfo layer_from_json(const nlohmann::json& j);
nlohmann::json image_to_json(const ImageRecord& r);
ImageRecord image_from_json(const nlohmann::json& j);
nlohmann::json container_to_json(const ContainerRecord& c);
ContainerRecord container_from_json(const nlohmann::json& j);

}  // namespace layer::store::detail
