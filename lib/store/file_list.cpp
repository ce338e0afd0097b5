#include "store/file_list.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>

#include "store/layout.hpp"
#include "format/overlay_format.hpp"
#include "util/digest.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::store {

namespace {

using nlohmann::json;

constexpr int kFormatVersion = 1;
constexpr size_t kMaxListBytes = size_t{1} << 30;  // uncompressed JSON
constexpr size_t kReadChunk = 256 << 10;

struct DirCloser {
  void operator()(DIR* d) const { ::closedir(d); }
};
using DirPtr = std::unique_ptr<DIR, DirCloser>;
struct CCtxFree {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DCtxFree {
  void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
};

const char* kTypeNames[] = {"file",     "dir",  "symlink", "chardev",
                            "blockdev", "fifo", "socket",  "other"};

FileType type_of(mode_t m) {
  switch (m & S_IFMT) {
    case S_IFREG:
      return FileType::Regular;
    case S_IFDIR:
      return FileType::Directory;
    case S_IFLNK:
      return FileType::Symlink;
    case S_IFCHR:
      return FileType::CharDevice;
    case S_IFBLK:
      return FileType::BlockDevice;
    case S_IFIFO:
      return FileType::Fifo;
    case S_IFSOCK:
      return FileType::Socket;
    default:
      return FileType::Other;
  }
}

FileType type_from_name(const std::string& s, const std::string& what) {
  for (size_t i = 0; i < std::size(kTypeNames); ++i)
    if (s == kTypeNames[i]) return static_cast<FileType>(i);
  throw Error(what + ": unknown file type '" + s + "'");
}

std::string hex_decode(const std::string& s, const std::string& what) {
  auto val = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    throw Error(what + ": bad hex string");
  };
  if (s.size() % 2) throw Error(what + ": bad hex string");
  std::string out;
  for (size_t i = 0; i < s.size(); i += 2) out += static_cast<char>(val(s[i]) * 16 + val(s[i + 1]));
  return out;
}

// nlohmann's own check (dump refuses invalid UTF-8), so what passes here
// always serializes.
bool valid_utf8(const std::string& s) {
  if (std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; }))
    return true;
  try {
    (void)json(s).dump();
    return true;
  } catch (const json::type_error&) {
    return false;
  }
}

// A string field that may hold any bytes: `key` when it is UTF-8 (JSON's
// only string encoding), `key_hex` otherwise.
void put_bytes(json& j, const std::string& key, const std::string& s) {
  if (valid_utf8(s))
    j[key] = s;
  else
    j[key + "_hex"] = hex_encode(s);
}

std::string get_bytes(const json& j, const std::string& key, const std::string& what) {
  if (auto it = j.find(key); it != j.end()) return it->get<std::string>();
  if (auto it = j.find(key + "_hex"); it != j.end())
    return hex_decode(it->get<std::string>(), what);
  return {};
}

// The xattrs of dirfd/name, not following symlinks; name "" means dirfd
// itself (a /proc/self/fd/N path would name the magic link, not the dir).
int read_xattrs(int dirfd, const std::string& name, std::map<std::string, std::string>& out) {
  std::string p = sys::proc_path(dirfd, name);
  auto list = [&](char* buf, size_t n) {
    return name.empty() ? ::flistxattr(dirfd, buf, n) : ::llistxattr(p.c_str(), buf, n);
  };
  auto get = [&](const char* xn, void* buf, size_t n) {
    return name.empty() ? ::fgetxattr(dirfd, xn, buf, n) : ::lgetxattr(p.c_str(), xn, buf, n);
  };
  std::string names;
  for (;;) {
    ssize_t n = list(nullptr, 0);
    if (n < 0) return errno == ENOTSUP ? 0 : errno;
    if (n == 0) return 0;
    names.resize(static_cast<size_t>(n));
    n = list(names.data(), names.size());
    if (n < 0 && errno == ERANGE) continue;
    if (n < 0) return errno;
    names.resize(static_cast<size_t>(n));
    break;
  }
  for (size_t at = 0; at < names.size();) {
    std::string xn = names.c_str() + at;
    at += xn.size() + 1;
    if (xn.empty()) continue;
    // Most values are short: one call reads them; a longer one is sized first.
    char small[256];
    ssize_t got = get(xn.c_str(), small, sizeof small);
    if (got >= 0) {
      out[xn] = std::string(small, static_cast<size_t>(got));
      continue;
    }
    if (errno == ENODATA) continue;
    if (errno != ERANGE) return errno;
    std::string value;
    for (;;) {
      ssize_t n = get(xn.c_str(), nullptr, 0);
      if (n < 0) {
        if (errno == ENODATA) break;
        return errno;
      }
      value.resize(static_cast<size_t>(n));
      n = get(xn.c_str(), value.data(), value.size());
      if (n < 0 && errno == ERANGE) continue;
      if (n < 0) return errno;
      value.resize(static_cast<size_t>(n));
      out[xn] = value;
      break;
    }
  }
  return 0;
}

void fill_from_stat(FileEntry& e, const struct stat& st) {
  e.type = type_of(st.st_mode);
  e.mode = st.st_mode & 07777;
  e.uid = st.st_uid;
  e.gid = st.st_gid;
  e.size = (e.type == FileType::Regular || e.type == FileType::Symlink)
               ? static_cast<uint64_t>(st.st_size)
               : 0;
  e.mtime_sec = st.st_mtim.tv_sec;
  e.mtime_nsec = static_cast<uint32_t>(st.st_mtim.tv_nsec);
  e.nlink = e.type == FileType::Directory ? 0 : st.st_nlink;
  if (e.type == FileType::CharDevice || e.type == FileType::BlockDevice) {
    e.rdev_major = major(st.st_rdev);
    e.rdev_minor = minor(st.st_rdev);
  }
}

// Reads and hashes dirfd/name. Returns errno on failure.
int hash_file(int dirfd, const std::string& name, Digest& out, uint64_t* hashed_bytes) {
  auto r = sys::open_at(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NOATIME);
  if (!r && r.error() == EPERM)
    r = sys::open_at(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NOCTTY);
  if (!r) return r.error();
  ::posix_fadvise(r->get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  Hasher h("sha256");
  std::unique_ptr<char[]> buf(new char[kReadChunk]);
  for (;;) {
    auto n = sys::read_full(r->get(), buf.get(), kReadChunk);
    if (!n) return n.error();
    h.update(buf.get(), *n);
    if (hashed_bytes) *hashed_bytes += *n;
    if (*n < kReadChunk) break;
  }
  out = h.finish();
  return 0;
}

// The object a metadata-only entry's store markers name (docs/store-format-2.md),
// with the markers taken out of `xattrs`: they are the store's, not the
// layer's. nullopt (markers left in) for anything else.
std::optional<Digest> take_object_markers(std::map<std::string, std::string>& xattrs) {
  for (const format::XattrNames* ns : format::kNamespaces) {
    std::string metacopy(ns->metacopy), redirect(ns->redirect);
    auto mc = xattrs.find(metacopy);
    auto rd = xattrs.find(redirect);
    if (mc == xattrs.end() || rd == xattrs.end() || !mc->second.empty()) continue;
    auto d = Layout::parse_object_redirect(rd->second);
    if (!d) continue;
    xattrs.erase(metacopy);
    xattrs.erase(redirect);
    return d;
  }
  return std::nullopt;
}

const Digest& empty_digest() {
  static const Digest d = Hasher::of("", "sha256");
  return d;
}

std::string octal(uint32_t m) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", m);
  return buf;
}

std::string shown(const std::string& s) {
  std::string out = s.substr(0, 200);
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return out;
}

}  // namespace

const char* file_type_name(FileType t) {
  return kTypeNames[static_cast<size_t>(t)];
}

FileList FileList::scan(int dir, const std::unordered_map<std::string, Digest>& known,
                        uint64_t* hashed_bytes, std::set<Digest>* objects) {
  FileList list;
  std::unordered_map<uint64_t, Digest> seen;  // inodes hashed during this scan
  struct stat rst;
  if (::fstat(dir, &rst) < 0) throw_errno("stat layer tree");
  FileEntry root;
  root.path = ".";
  fill_from_stat(root, rst);
  root.error = read_xattrs(dir, "", root.xattrs);
  list.entries.push_back(std::move(root));

  // Depth-first over relative paths; each directory is opened afresh from
  // `dir` (no symlinks, never above it) and closed before its children are
  // visited, so deep trees hold no more than two fds.
  std::vector<std::string> todo = {""};
  while (!todo.empty()) {
    std::string rel = todo.back();
    todo.pop_back();
    UniqueFd fd;
    if (rel.empty()) {
      auto r = sys::open_at(dir, ".", O_RDONLY | O_DIRECTORY);
      if (!r) throw Error("open layer tree", r.error());
      fd = std::move(r).value();
    } else {
      auto r = sys::open_beneath(dir, rel.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0,
                                 RESOLVE_NO_SYMLINKS);
      if (!r) {
        for (auto& e : list.entries)
          if (e.path == rel) e.error = r.error();
        continue;
      }
      fd = std::move(r).value();
    }
    int dfd = ::dup(fd.get());
    if (dfd < 0) throw_errno("dup");
    DirPtr d(::fdopendir(dfd));
    if (!d) {
      ::close(dfd);
      throw_errno("opendir " + rel);
    }
    std::vector<std::string> names;
    errno = 0;
    while (struct dirent* de = ::readdir(d.get())) {
      std::string n = de->d_name;
      if (n != "." && n != "..") names.push_back(std::move(n));
      errno = 0;
    }
    if (errno) throw_errno("readdir " + rel);
    d.reset();
    std::vector<std::string> subdirs;
    for (const auto& name : names) {
      FileEntry e;
      e.path = rel.empty() ? name : rel + "/" + name;
      struct stat st;
      if (::fstatat(fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
        e.error = errno;
        list.entries.push_back(std::move(e));
        continue;
      }
      fill_from_stat(e, st);
      e.error = read_xattrs(fd.get(), name, e.xattrs);
      if (e.type == FileType::Symlink) {
        std::string t(static_cast<size_t>(st.st_size) + 1, '\0');
        ssize_t n = ::readlinkat(fd.get(), name.c_str(), t.data(), t.size());
        if (n < 0)
          e.error = errno;
        else
          e.target.assign(t.data(), static_cast<size_t>(n));
      } else if (e.type == FileType::Regular) {
        if (auto obj = take_object_markers(e.xattrs)) {
          // Metadata-only entry (format 2): its content is the object's.
          e.content = *obj;
          if (objects) objects->insert(*obj);
        } else if (st.st_size == 0) {
          e.content = empty_digest();
        } else if (auto it = known.find(e.path); it != known.end()) {
          e.content = it->second;
        } else if (auto s = seen.find(st.st_ino); s != seen.end()) {
          e.content = s->second;
        } else {
          Digest dg;
          if (int err = hash_file(fd.get(), name, dg, hashed_bytes); err) {
            e.error = err;
          } else {
            e.content = dg;
            if (st.st_nlink > 1) seen[st.st_ino] = dg;
          }
        }
      } else if (e.type == FileType::Directory) {
        subdirs.push_back(e.path);
      }
      list.entries.push_back(std::move(e));
    }
    for (auto it = subdirs.rbegin(); it != subdirs.rend(); ++it) todo.push_back(*it);
  }
  std::sort(list.entries.begin(), list.entries.end(),
            [](const FileEntry& a, const FileEntry& b) { return a.path < b.path; });
  return list;
}

std::string FileList::serialize() const {
  json arr = json::array();
  for (const auto& e : entries) {
    json j;
    put_bytes(j, "path", e.path);
    j["type"] = file_type_name(e.type);
    j["mode"] = e.mode;
    j["uid"] = e.uid;
    j["gid"] = e.gid;
    if (e.type == FileType::Regular || e.type == FileType::Symlink) j["size"] = e.size;
    j["mtime"] = {e.mtime_sec, e.mtime_nsec};
    if (e.type != FileType::Directory) j["nlink"] = e.nlink;
    if (e.type == FileType::Symlink) put_bytes(j, "target", e.target);
    if (e.type == FileType::CharDevice || e.type == FileType::BlockDevice)
      j["rdev"] = {e.rdev_major, e.rdev_minor};
    if (e.content) j["sha256"] = e.content->hex;
    if (!e.xattrs.empty()) {
      json xs = json::array();
      for (const auto& [name, value] : e.xattrs) {
        json x;
        put_bytes(x, "name", name);
        x["value_hex"] = hex_encode(value);
        xs.push_back(std::move(x));
      }
      j["xattrs"] = std::move(xs);
    }
    arr.push_back(std::move(j));
  }
  std::string text = json{{"version", kFormatVersion}, {"entries", std::move(arr)}}.dump();
  std::unique_ptr<ZSTD_CCtx, CCtxFree> cctx(ZSTD_createCCtx());
  if (!cctx) throw Error("zstd: out of memory", ENOMEM);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, 3);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 1);
  std::string out(ZSTD_compressBound(text.size()), '\0');
  size_t n = ZSTD_compress2(cctx.get(), out.data(), out.size(), text.data(), text.size());
  if (ZSTD_isError(n)) throw Error(std::string("zstd: ") + ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

FileList FileList::parse(std::string_view data, const std::string& what) {
  unsigned long long size = ZSTD_getFrameContentSize(data.data(), data.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN)
    throw Error(what + ": not a zstd file list");
  if (size > kMaxListBytes) throw Error(what + ": file list larger than 1 GiB");
  std::string text(static_cast<size_t>(size), '\0');
  std::unique_ptr<ZSTD_DCtx, DCtxFree> dctx(ZSTD_createDCtx());
  if (!dctx) throw Error("zstd: out of memory", ENOMEM);
  size_t n = ZSTD_decompressDCtx(dctx.get(), text.data(), text.size(), data.data(), data.size());
  if (ZSTD_isError(n)) throw Error(what + ": corrupt: " + ZSTD_getErrorName(n));
  if (n != text.size()) throw Error(what + ": truncated");
  FileList list;
  try {
    json j = json::parse(text);
    if (!j.is_object() || j.value("version", 0) != kFormatVersion)
      throw Error(what + ": unknown file list version");
    for (const auto& je : j.at("entries")) {
      FileEntry e;
      e.path = get_bytes(je, "path", what);
      if (e.path.empty()) throw Error(what + ": entry without a path");
      e.type = type_from_name(je.at("type").get<std::string>(), what);
      e.mode = je.at("mode").get<uint32_t>();
      e.uid = je.at("uid").get<uint32_t>();
      e.gid = je.at("gid").get<uint32_t>();
      e.size = je.value("size", uint64_t{0});
      e.mtime_sec = je.at("mtime").at(0).get<int64_t>();
      e.mtime_nsec = je.at("mtime").at(1).get<uint32_t>();
      e.nlink = je.value("nlink", uint64_t{0});
      e.target = get_bytes(je, "target", what);
      if (auto it = je.find("rdev"); it != je.end()) {
        e.rdev_major = it->at(0).get<uint32_t>();
        e.rdev_minor = it->at(1).get<uint32_t>();
      }
      if (auto it = je.find("sha256"); it != je.end())
        e.content = Digest::parse("sha256:" + it->get<std::string>());
      if (auto it = je.find("xattrs"); it != je.end())
        for (const auto& x : *it)
          e.xattrs[get_bytes(x, "name", what)] = hex_decode(x.at("value_hex"), what);
      list.entries.push_back(std::move(e));
    }
  } catch (const json::exception& e) {
    throw Error(what + ": malformed: " + e.what());
  }
  std::sort(list.entries.begin(), list.entries.end(),
            [](const FileEntry& a, const FileEntry& b) { return a.path < b.path; });
  return list;
}

std::vector<FileDiff> FileList::compare(const FileList& recorded, const FileList& actual) {
  std::vector<FileDiff> out;
  auto add = [&](const std::string& path, std::string what) {
    out.push_back({path, std::move(what)});
  };
  size_t i = 0, k = 0;
  const auto& r = recorded.entries;
  const auto& a = actual.entries;
  while (i < r.size() || k < a.size()) {
    if (k == a.size() || (i < r.size() && r[i].path < a[k].path)) {
      add(r[i].path, std::string("missing (recorded ") + file_type_name(r[i].type) + ")");
      ++i;
      continue;
    }
    if (i == r.size() || a[k].path < r[i].path) {
      add(a[k].path, std::string("added (") + file_type_name(a[k].type) + ", not recorded)");
      ++k;
      continue;
    }
    const FileEntry& want = r[i++];
    const FileEntry& got = a[k++];
    const std::string& p = want.path;
    if (got.error) add(p, std::string("unreadable: ") + std::strerror(got.error));
    if (want.type != got.type) {
      add(p, std::string("type ") + file_type_name(want.type) + " -> " + file_type_name(got.type));
      continue;
    }
    if (want.mode != got.mode) add(p, "mode " + octal(want.mode) + " -> " + octal(got.mode));
    if (want.uid != got.uid || want.gid != got.gid)
      add(p, "owner " + std::to_string(want.uid) + ":" + std::to_string(want.gid) + " -> " +
                 std::to_string(got.uid) + ":" + std::to_string(got.gid));
    if (want.size != got.size)
      add(p, "size " + std::to_string(want.size) + " -> " + std::to_string(got.size));
    if (want.type == FileType::Regular && want.content && got.content &&
        *want.content != *got.content)
      add(p, "content changed (sha256 " + want.content->short_hex() + "... -> " +
                 got.content->short_hex() + "...)");
    if (want.target != got.target)
      add(p, "symlink target '" + shown(want.target) + "' -> '" + shown(got.target) + "'");
    if (want.rdev_major != got.rdev_major || want.rdev_minor != got.rdev_minor)
      add(p, "device " + std::to_string(want.rdev_major) + ":" + std::to_string(want.rdev_minor) +
                 " -> " + std::to_string(got.rdev_major) + ":" + std::to_string(got.rdev_minor));
    if (want.nlink != got.nlink)
      add(p, "link count " + std::to_string(want.nlink) + " -> " + std::to_string(got.nlink));
    if (want.mtime_sec != got.mtime_sec || want.mtime_nsec != got.mtime_nsec)
      add(p, "mtime changed");
    for (const auto& [name, value] : want.xattrs) {
      auto it = got.xattrs.find(name);
      if (it == got.xattrs.end())
        add(p, "xattr '" + shown(name) + "' missing");
      else if (it->second != value)
        add(p, "xattr '" + shown(name) + "' changed");
    }
    for (const auto& [name, value] : got.xattrs)
      if (!want.xattrs.count(name)) add(p, "xattr '" + shown(name) + "' added");
  }
  return out;
}

}  // namespace layer::store
