// TreeWriter: the consumer half of unpacking. Applies tar entries, one at a
// time, to a staging directory: every entry is resolved afresh beneath the
// staging dir without following symlinks (no parent fd is cached across
// entries), hostile names and links are refused, OCI whiteouts are collected
// and converted to the overlay format at the end, and directory modes and
// times are set last. Owns nothing but its bookkeeping (the staging dirfd is
// borrowed); single-threaded.
#pragma once

#include <time.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>

#include "unpack/unpacker.hpp"
#include "util/digest.hpp"
#include "util/unique_fd.hpp"

struct archive;
struct archive_entry;

namespace layer::unpack {

// Normalizes a tar entry name to components joined by '/': drops "./", empty
// components and trailing '/'. Returns false with `why` set for an absolute
// path, a ".." component or an empty name. The layer root comes out as "".
bool normalize_entry_path(std::string_view raw, std::string& out, std::string& why);

class TreeWriter {
 public:
  // `root`: the empty staging dir (borrowed). `context`: "image X: layer D".
  TreeWriter(int root, const Options& opt, std::string context);

  // Applies one entry, reading its data from `a`. Throws Error naming the entry.
  void apply(archive* a, archive_entry* e);
  // Applies one entry whose data is not at hand (lazy pull: from a layer's
  // table of contents). A regular file with content becomes a metadata-only
  // entry naming object `content` (REQUIRES Options::objects_dir, and
  // `content` for every non-empty regular file), whatever its size; the
  // object need not exist. Every other entry is applied as apply() does.
  void apply_lazy(archive_entry* e, const Digest* content);
  // Converts the collected whiteouts and opaque markers, then sets directory
  // modes and times. Call once, after the last entry.
  void finish();

  uint64_t file_bytes() const { return file_bytes_; }
  // Options::objects_dir: the objects the entries redirect to, the bytes of
  // those entries, and the bytes of the objects staged anew.
  const std::set<Digest>& objects() const { return objects_; }
  uint64_t object_bytes() const { return object_bytes_; }
  uint64_t new_object_bytes() const { return new_object_bytes_; }
  // Options::record_digests: content sha256 by path of the files written.
  std::unordered_map<std::string, Digest>& content_digests() { return digests_; }
  // Directories the layer has no entry for, made because an entry below them
  // needed a parent: path -> the first entry that needed it.
  const std::map<std::string, std::string>& implicit_dirs() const { return implicit_dirs_; }

 private:
  struct DirMeta {
    mode_t mode = 0755;
    bool has_times = false;
    struct timespec times[2] = {};
  };
  struct Dir {
    UniqueFd owned;
    int fd = -1;
  };

  [[noreturn]] void fail(const std::string& msg) const;
  [[noreturn]] void fail_errno(const std::string& what, int err) const;
  Dir open_parent(const std::string& parent, bool create);
  // Clears `base` in `dir` for a new entry of type `new_type` (S_IFDIR...).
  // Returns true if an existing directory is kept because the new entry is a
  // directory too. Refuses to put anything but a symlink over a symlink.
  bool make_room(int dir, const std::string& base, mode_t new_type) const;
  void apply_whiteout(const std::string& parent, const std::string& base);
  void apply_hardlink(const std::string& path, const std::string& parent, const std::string& base,
                      const char* target);
  void apply_dir(archive_entry* e, const std::string& path, int parent, const std::string& base);
  void apply_file(archive* a, archive_entry* e, const std::string& path, const std::string& parent,
                  const std::string& base);
  // A regular file whose content is object lazy_content_ (apply_lazy).
  void apply_lazy_file(archive_entry* e, const std::string& path, const std::string& parent,
                       const std::string& base);
  // Marks `fd` metadata-only, its data object d.
  void mark_metacopy(int fd, const Digest& d) const;
  // Owner, mode, xattrs and times of a regular file just written.
  void finish_file(int fd, archive_entry* e, const std::string& parent, bool new_inode,
                   bool need_chmod);
  // Creates the regular file `path` (O_EXCL, replacing what make_room allows).
  UniqueFd create_file(const std::string& path, const std::string& parent,
                       const std::string& base, mode_t create_mode);
  bool object_present(const Digest& d) const;
  void stage_object(const Digest& d, std::string_view data, const std::string& temp, int temp_fd,
                    uint64_t size);
  void apply_special(archive_entry* e, int parent, const std::string& base);
  void set_owner_fd(int fd, archive_entry* e) const;
  void set_xattrs_fd(int fd, archive_entry* e);
  // Records the group a directory entry was given (see foreign_group_).
  void note_dir_group(const std::string& path, archive_entry* e);
  void set_meta_at(int parent, const std::string& base, archive_entry* e, bool is_link) const;
  DirMeta dir_meta(archive_entry* e) const;

  int root_;
  Options opt_;
  std::string context_;
  std::string entry_;  // the current entry's name, for messages
  bool chown_;         // running as root and not rootless
  uid_t euid_;
  gid_t egid_;
  mode_t umask_;  // the process umask (0777 if unknown)
  // What a new file's owner and mode will be before fchown/fchmod, so that
  // the calls can be skipped when they would change nothing. A file takes
  // our euid, and our egid unless its parent is setgid or (grpid mounts) in
  // another group. No directory is setgid while entries are applied (modes
  // are set in finish()) unless the root was, or a directory was made
  // implicitly by open_parent: then group_unknown_ and every file is chowned.
  bool group_unknown_ = false;
  std::set<std::string> foreign_group_;  // directories whose group is not egid_
  bool mode_unknown_ = false;            // a default ACL may apply: always fchmod
  std::set<std::string> whiteouts_;      // paths to white out in lower layers
  std::set<std::string> opaque_;         // directories to mark opaque
  std::map<std::string, DirMeta> dirs_;  // directory metadata to set at the end
  uint64_t file_bytes_ = 0;
  std::unordered_map<std::string, Digest> digests_;  // by path
  std::map<std::string, std::string> implicit_dirs_;
  std::set<Digest> objects_;
  uint64_t object_bytes_ = 0;
  uint64_t new_object_bytes_ = 0;
  uint64_t temp_seq_ = 0;  // names of temporary objects in the staging dir
  // apply_lazy: set for the one entry being applied.
  bool lazy_ = false;
  const Digest* lazy_content_ = nullptr;
};

}  // namespace layer::unpack
