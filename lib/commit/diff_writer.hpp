// DiffWriter: turns an overlay-format directory (a container's upper, or a
// layer's diff/) into the entries of an OCI layer tar, written with
// libarchive (PAX, xattrs as SCHILY.xattr) to a sink:
// - whiteouts (char 0:0, or a zero-size file with the whiteout xattr) become
//   `.wh.NAME`, opaque directories get a `.wh..wh..opq` entry;
// - a directory the kernel renamed (redirect xattr) becomes opaque and holds
//   a full copy of its merged content, read from the lower layers;
// - a file whose data is still below (lib/overlay's partial copy-up, the
//   kernel's metacopy) gets its data from the lower file;
// - hard links stay links (also the names of a copied-up lower file with
//   several names that lib/overlay links to the upper copy only when they are
//   looked up: they are added as links at the end), xattrs are kept with the overlay escaping
//   undone, the overlay's own xattrs are never written;
// - entries are sorted (in each directory: the opaque marker, whiteouts,
//   then the rest by name) and mtimes can be clamped, so the same tree gives
//   the same tar.
// Every path is opened beneath its layer's dirfd one component at a time
// with O_NOFOLLOW. Borrows the fds; single-threaded.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

struct archive;

namespace layer::commit {

// Where tar bytes go (a BlobWriter). Throws to abort.
using TarSink = std::function<void(const void* data, size_t n)>;

struct DiffOptions {
  // Later modification times become this (seconds since the epoch), as with
  // SOURCE_DATE_EPOCH. Unset: times as they are.
  std::optional<int64_t> clamp_mtime;
  uint64_t max_entries = 4'000'000;
  // Called now and then with the file bytes written so far.
  std::function<void(uint64_t)> progress;
  // The store's objects/ dir (store format 2): a metadata-only entry the
  // store wrote, in a lower layer or in a stored layer's own diff/, is read
  // from its content object. -1: no objects (format-1 layers).
  int objects_dir = -1;
};

struct DiffStats {
  uint64_t entries = 0;
  uint64_t file_bytes = 0;
  uint64_t whiteouts = 0;
  uint64_t opaque = 0;
  uint64_t from_lower = 0;  // files whose data came from a lower layer
};

// A lower layer's root directory: its fd (borrowed) and its path, as the
// mount's lowerdir option named it (partial files record that path).
struct LowerDir {
  int fd;
  std::string path;
};

class DiffWriter {
 public:
  // `top`: the upper (or diff) directory. `lowers`: the layers below it,
  // top first (empty for a layer's own diff/). `what`: names it in errors.
  DiffWriter(int top, std::vector<LowerDir> lowers, const DiffOptions& opt, TarSink sink,
             std::string what);
  ~DiffWriter();
  DiffWriter(const DiffWriter&) = delete;
  DiffWriter& operator=(const DiffWriter&) = delete;

  // Writes the whole tar (end-of-archive blocks included). Call once.
  // Throws Error naming the path at fault.
  DiffStats write();

 private:
  struct ArchiveFree {
    void operator()(archive* a) const;
  };
  struct Source;

  void walk_upper(const std::string& rel, int dirfd);
  void walk_merged(const std::string& rel, const std::vector<Source>& srcs,
                   const std::string& lower_rel);
  void emit_dir(const std::string& rel, int parent, const std::string& name, const struct stat& st);
  void emit_whiteout(const std::string& rel, const struct stat& st);
  void emit_opaque(const std::string& dir_rel, const struct stat& st);
  void emit_node(const std::string& rel, int parent, const std::string& name, const struct stat& st,
                 bool upper, const std::string& lower_rel);
  void write_data(const std::string& rel, int fd, const struct stat& st, int lower_fd,
                  off_t lower_limit);
  std::vector<Source> lower_dirs(const std::string& lower_rel);
  int open_lower_file(const std::string& lower_rel, struct stat* st);
  int partial_lower(const std::string& marker, off_t* limit);
  void add_xattrs(void* entry, int parent, const std::string& name);
  void note_lower_links(const std::string& rel);
  bool hidden_in_upper(const std::string& path);
  const std::multimap<ino_t, std::string>& lower_inodes(size_t layer);
  int64_t clamp(int64_t t) const;
  void header(void* entry, const std::string& rel);
  void count_entry(const std::string& rel);
  [[noreturn]] void fail(const std::string& rel, const std::string& what, int err = 0) const;
  static long on_write(archive*, void* self, const void* buf, size_t n);

  int top_;
  std::vector<LowerDir> lowers_;
  DiffOptions opt_;
  TarSink sink_;
  std::string what_;
  std::unique_ptr<archive, ArchiveFree> a_;
  std::exception_ptr sink_error_;
  std::map<std::pair<dev_t, ino_t>, std::string> links_;  // first path of each multi-link file
  // Lower names of copied-up multi-link files that the mount has not linked
  // into the upper yet: (name, a written path of the same file), added last.
  std::vector<std::pair<std::string, std::string>> lower_links_;
  std::map<size_t, std::multimap<ino_t, std::string>> lower_inodes_;  // by lower index
  DiffStats stats_;
  uint64_t reported_ = 0;
};

}  // namespace layer::commit
