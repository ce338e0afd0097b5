// FileList: the record of one layer tree, written beside it at unpack time
// (layers/<alg>/<hex>/files.json.zst, DESIGN.md) and checked by fsck: every
// path with its type, mode, owner, size, mtime, link count, symlink target,
// device number, xattrs and, for regular files, the sha256 of the content.
// A plain value type; scan() borrows the dirfd it walks. Not thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "util/digest.hpp"

namespace layer::store {

enum class FileType { Regular, Directory, Symlink, CharDevice, BlockDevice, Fifo, Socket, Other };

struct FileEntry {
  std::string path;  // relative to diff/, components joined by '/'; "." is the root
  FileType type = FileType::Regular;
  uint32_t mode = 0;  // permission bits (07777)
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;  // regular files and symlinks
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
  uint64_t nlink = 1;  // not recorded for directories (0 there)
  std::string target;  // symlinks
  uint32_t rdev_major = 0;
  uint32_t rdev_minor = 0;
  std::optional<Digest> content;              // regular files
  std::map<std::string, std::string> xattrs;  // name → raw value
  int error = 0;  // scan only: errno that kept the entry from being read fully

  bool operator==(const FileEntry&) const = default;
};

// One difference between a recorded tree and the tree on disk.
struct FileDiff {
  std::string path;
  std::string what;  // "content changed", "mode 0644 → 0600", "missing", ...
};

struct FileList {
  std::vector<FileEntry> entries;  // sorted by path

  // Walks the tree below `dir` (never following symlinks). A regular file's
  // content digest comes from `known` (by path, as unpack::Stats has them)
  // when it is there; otherwise the file is read and hashed. `hashed_bytes`
  // (optional) counts bytes read. Entries that cannot be read carry `error`;
  // other failures throw Error. A metadata-only entry (store format 2) is
  // listed as the layer has it: the store's markers are left out and its
  // content is the object's digest, added to `objects` (optional).
  static FileList scan(int dir, const std::unordered_map<std::string, Digest>& known = {},
                       uint64_t* hashed_bytes = nullptr, std::set<Digest>* objects = nullptr);

  // zstd-compressed JSON (with the zstd content checksum), and back. parse()
  // throws Error naming `what` for anything malformed or truncated.
  std::string serialize() const;
  static FileList parse(std::string_view data, const std::string& what);

  // Every difference of `actual` against `recorded`, in path order.
  static std::vector<FileDiff> compare(const FileList& recorded, const FileList& actual);
};

const char* file_type_name(FileType t);  // "file", "dir", "symlink", "chardev", ...

}  // namespace layer::store
