// fsops: runs a scripted sequence of filesystem operations below a mount root
// and prints each result (ok / errno name / value), then a canonical dump of
// the visible tree. The differential mount tests run the same script on the
// kernel's overlayfs and on the engine under test and diff the outputs, so
// everything printed must be independent of inode numbers, directory order
// and wall-clock time. Single-threaded except for the `race` operations.
//
// Usage: fsops --root DIR [--script FILE] [--no-dump] [--raw] [--role kernel|engine]
//   --role: which `#!` expectations apply; "engine" also wants exact
//           directory link counts (the kernel reports 1 for merged dirs).
//   --raw: dump only, every xattr (overlay ones too) and every mtime: used to
//          checksum the lower layers before and after a run.
#include <dirent.h>
#include <grp.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "util/digest.hpp"
#include "util/unique_fd.hpp"

namespace {

using layer::UniqueFd;

// Timestamps below this are the fixed dates the fixtures and scripts set and
// are printed exactly; anything later was set by "now" and prints as "new".
constexpr time_t kFixedTimeLimit = 1500000000;

struct DirClose {
  void operator()(DIR* d) const { ::closedir(d); }
};
using DirPtr = std::unique_ptr<DIR, DirClose>;

struct ScriptError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string errname(int e) {
  const char* n = ::strerrorname_np(e);
  return n ? n : "E" + std::to_string(e);
}

std::string escape(const std::string& s, size_t max = 80) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else if (c >= 0x20 && c < 0x7f)
      out += static_cast<char>(c);
    else {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    }
  }
  if (s.size() > max) out += "...";
  return out;
}

std::string sha(const std::string& s) {
  return layer::Hasher::of(s).hex.substr(0, 16);
}

// Content as printed by read-like ops: short data in full, long data by hash.
std::string show_data(const std::string& s) {
  if (s.size() <= 64) return "\"" + escape(s) + "\"";
  return std::to_string(s.size()) + " bytes sha=" + sha(s);
}

// Deterministic bytes for "pat:SIZE:SEED" arguments.
std::string pattern(size_t size, unsigned seed) {
  std::string s(size, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    s[i] = static_cast<char>('a' + x % 26);
  }
  return s;
}

// Splits a script line into tokens: whitespace separated, "quoted" with
// \n \t \\ \" \xHH escapes; `#` starts a comment outside quotes.
std::vector<std::string> tokenize(const std::string& line) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
    if (i >= line.size() || line[i] == '#') break;
    std::string tok;
    if (line[i] == '"') {
      ++i;
      while (i < line.size() && line[i] != '"') {
        char c = line[i++];
        if (c == '\\' && i < line.size()) {
          char e = line[i++];
          if (e == 'n')
            tok += '\n';
          else if (e == 't')
            tok += '\t';
          else if (e == '0')
            tok += '\0';
          else if (e == 'x' && i + 1 < line.size()) {
            tok += static_cast<char>(std::stoi(line.substr(i, 2), nullptr, 16));
            i += 2;
          } else
            tok += e;
        } else {
          tok += c;
        }
      }
      if (i >= line.size()) throw ScriptError("unterminated quote");
      ++i;
    } else {
      while (i < line.size() && !std::isspace(static_cast<unsigned char>(line[i])))
        tok += line[i++];
    }
    out.push_back(tok);
  }
  return out;
}

// A data argument: a literal, or pat:SIZE:SEED.
std::string data_arg(const std::string& a) {
  if (a.rfind("pat:", 0) == 0) {
    auto c = a.find(':', 4);
    if (c == std::string::npos) throw ScriptError("pat:SIZE:SEED");
    return pattern(std::stoull(a.substr(4, c - 4)),
                   static_cast<unsigned>(std::stoul(a.substr(c + 1))));
  }
  return a;
}

long long num(const std::string& a) {
  size_t pos = 0;
  long long v = std::stoll(a, &pos, 0);
  if (pos != a.size()) throw ScriptError("not a number: " + a);
  return v;
}

mode_t mode_arg(const std::string& a) {
  return static_cast<mode_t>(std::stoul(a, nullptr, 8));
}

int open_flags(const std::string& a) {
  static const std::map<std::string, int> kFlags = {
      {"RDONLY", O_RDONLY}, {"WRONLY", O_WRONLY},       {"RDWR", O_RDWR},
      {"CREAT", O_CREAT},   {"EXCL", O_EXCL},           {"TRUNC", O_TRUNC},
      {"APPEND", O_APPEND}, {"DIRECTORY", O_DIRECTORY}, {"NOFOLLOW", O_NOFOLLOW},
      {"PATH", O_PATH},     {"NOATIME", O_NOATIME},     {"TMPFILE", O_TMPFILE}};
  int flags = 0;
  std::stringstream ss(a);
  std::string f;
  while (std::getline(ss, f, '|')) {
    auto it = kFlags.find(f);
    if (it == kFlags.end()) throw ScriptError("unknown open flag " + f);
    flags |= it->second;
  }
  return flags;
}

char type_char(mode_t m) {
  switch (m & S_IFMT) {
    case S_IFREG:
      return 'f';
    case S_IFDIR:
      return 'd';
    case S_IFLNK:
      return 'l';
    case S_IFCHR:
      return 'c';
    case S_IFBLK:
      return 'b';
    case S_IFIFO:
      return 'p';
    case S_IFSOCK:
      return 's';
  }
  return '?';
}

char dtype_char(unsigned char t) {
  switch (t) {
    case DT_REG:
      return 'f';
    case DT_DIR:
      return 'd';
    case DT_LNK:
      return 'l';
    case DT_CHR:
      return 'c';
    case DT_BLK:
      return 'b';
    case DT_FIFO:
      return 'p';
    case DT_SOCK:
      return 's';
  }
  return '?';
}

std::string time_str(const struct timespec& t) {
  if (t.tv_sec >= kFixedTimeLimit) return "new";
  return std::to_string(t.tv_sec) + "." + std::to_string(t.tv_nsec);
}

// Stat fields that must agree between engines (no inode numbers, no times
// set by "now", no directory sizes, which depend on the upper filesystem).
std::string stat_str(const struct stat& st) {
  char b[160];
  std::snprintf(b, sizeof b, "%c %04o %u:%u", type_char(st.st_mode),
                static_cast<unsigned>(st.st_mode & 07777), st.st_uid, st.st_gid);
  std::string s = b;
  // A directory's link count is checked by the tree dump against its
  // visible subdirectories.
  if (!S_ISDIR(st.st_mode))
    s += " nlink=" + std::to_string(st.st_nlink) + " size=" + std::to_string(st.st_size);
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
    s += " rdev=" + std::to_string(major(st.st_rdev)) + ":" + std::to_string(minor(st.st_rdev));
  return s;
}

bool overlay_xattr(const std::string& name) {
  return name.rfind("trusted.overlay.", 0) == 0 || name.rfind("user.overlay.", 0) == 0 ||
         name.rfind("user.fuseoverlayfs.", 0) == 0 || name.rfind("security.selinux", 0) == 0;
}

std::vector<std::string> list_xattrs(const std::string& path) {
  std::vector<char> buf(65536);
  ssize_t n = ::llistxattr(path.c_str(), buf.data(), buf.size());
  std::vector<std::string> out;
  if (n < 0) return out;
  for (ssize_t i = 0; i < n;) {
    std::string name(buf.data() + i);
    out.push_back(name);
    i += static_cast<ssize_t>(name.size()) + 1;
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string hex(const std::string& s) {
  std::string out;
  char b[4];
  for (unsigned char c : s) {
    std::snprintf(b, sizeof b, "%02x", c);
    out += b;
  }
  return out;
}

std::string xattr_value(const std::string& path, const std::string& name, int* err) {
  std::vector<char> buf(65536);
  ssize_t n = ::lgetxattr(path.c_str(), name.c_str(), buf.data(), buf.size());
  if (n < 0) {
    *err = errno;
    return {};
  }
  *err = 0;
  return std::string(buf.data(), static_cast<size_t>(n));
}

// Encodes "u::rw-,g::r--,o::r--,u:1000:rwx,m::rwx" as a posix_acl xattr value.
std::string acl_value(const std::string& text) {
  std::string out;
  auto put16 = [&](uint16_t v) { out.append(reinterpret_cast<const char*>(&v), 2); };
  auto put32 = [&](uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); };
  put32(2);
  struct Entry {
    uint16_t tag;
    uint16_t perm;
    uint32_t id;
  };
  std::vector<Entry> entries;
  std::stringstream ss(text);
  std::string e;
  while (std::getline(ss, e, ',')) {
    auto c1 = e.find(':');
    auto c2 = e.find(':', c1 + 1);
    if (c1 == std::string::npos || c2 == std::string::npos) throw ScriptError("bad acl " + e);
    std::string kind = e.substr(0, c1), id = e.substr(c1 + 1, c2 - c1 - 1), perm = e.substr(c2 + 1);
    uint16_t p = static_cast<uint16_t>((perm.find('r') != std::string::npos ? 4 : 0) |
                                       (perm.find('w') != std::string::npos ? 2 : 0) |
                                       (perm.find('x') != std::string::npos ? 1 : 0));
    uint16_t tag = 0;
    if (kind == "u")
      tag = id.empty() ? 0x01 : 0x02;
    else if (kind == "g")
      tag = id.empty() ? 0x04 : 0x08;
    else if (kind == "m")
      tag = 0x10;
    else if (kind == "o")
      tag = 0x20;
    else
      throw ScriptError("bad acl tag " + kind);
    entries.push_back({tag, p, id.empty() ? 0xffffffffu : static_cast<uint32_t>(std::stoul(id))});
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.tag != b.tag ? a.tag < b.tag : a.id < b.id;
  });
  for (const auto& en : entries) {
    put16(en.tag);
    put16(en.perm);
    put32(en.id);
  }
  return out;
}

struct DirEntry {
  std::string name;
  ino_t ino;
  unsigned char type;
};

// Reads a whole directory stream (skipping . and ..).
std::vector<DirEntry> read_dir(DIR* d) {
  std::vector<DirEntry> out;
  errno = 0;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back({n, e->d_ino, e->d_type});
    errno = 0;
  }
  return out;
}

class Runner {
 public:
  Runner(std::string root, std::string role) : root_(std::move(root)), role_(std::move(role)) {
    strict_nlink_ = role_ == "engine";
    root_fd_.reset(::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!root_fd_) throw std::runtime_error("cannot open root " + root_ + ": " + strerror(errno));
  }

  void run_script(std::istream& in) {
    std::string line;
    int lineno = 0;
    while (std::getline(in, line)) {
      ++lineno;
      // `#! kernel=R engine=R1|R2`: a documented difference; the result for
      // this run's role must be one of the listed ones and prints as such.
      std::map<std::string, std::string> expect;
      if (auto a = line.find("#!"); a != std::string::npos) {
        std::stringstream ss(line.substr(a + 2));
        std::string kv;
        while (ss >> kv)
          if (auto eq = kv.find('='); eq != std::string::npos)
            expect[kv.substr(0, eq)] = kv.substr(eq + 1);
        line.resize(a);
      }
      std::vector<std::string> t;
      try {
        t = tokenize(line);
      } catch (const ScriptError& e) {
        throw std::runtime_error("line " + std::to_string(lineno) + ": " + e.what());
      }
      if (t.empty()) continue;
      std::string result;
      try {
        result = run_op(t);
      } catch (const ScriptError& e) {
        throw std::runtime_error("line " + std::to_string(lineno) + ": " + e.what());
      } catch (const std::logic_error& e) {  // stoi and friends
        throw std::runtime_error("line " + std::to_string(lineno) + ": bad argument: " + e.what());
      }
      if (auto it = expect.find(role_); it != expect.end()) {
        std::string want = "|" + it->second + "|";
        if (want.find("|" + result + "|") != std::string::npos)
          result = "as documented";
        else
          result += " (documented: " + it->second + ")";
      }
      std::string shown;
      for (const auto& a : t) shown += (shown.empty() ? "" : " ") + escape(a, 40);
      std::printf("%s => %s\n", shown.c_str(), result.c_str());
    }
    std::fflush(stdout);
  }

  // The canonical tree dump. Inode numbers become labels #1, #2... in walk
  // order, so hard links show as shared labels and a collision shows as two
  // unrelated files with one label.
  void dump(bool raw) {
    std::printf("== tree\n");
    inos_.clear();
    struct stat st {};
    if (::fstat(root_fd_.get(), &st) == 0) {
      dev_ = st.st_dev;
      std::printf(". %s ino=%s%s\n", dump_stat(st, root_, raw).c_str(), label(st.st_ino).c_str(),
                  dir_nlink(".", st.st_nlink).c_str());
    }
    walk(root_fd_.get(), "", raw);
    std::fflush(stdout);
  }

 private:
  std::string label(ino_t ino) {
    auto [it, fresh] = inos_.emplace(ino, inos_.size() + 1);
    (void)fresh;
    return "#" + std::to_string(it->second);
  }

  // " nlink=ok" when a directory's link count is 2 + its visible
  // subdirectories, or 1 (the "unknown" the kernel's overlayfs reports for
  // merged directories) unless strict_nlink_.
  std::string dir_nlink(const std::string& path, nlink_t nlink) {
    int fd =
        ::openat(root_fd_.get(), path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return " nlink=" + errname(errno);
    DirPtr d(::fdopendir(fd));
    nlink_t want = 2;
    for (const auto& e : read_dir(d.get())) {
      struct stat st {};
      if (::fstatat(fd, e.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
        ++want;
    }
    if (nlink == want || (nlink == 1 && !strict_nlink_)) return " nlink=ok";
    return " nlink=WRONG(" + std::to_string(nlink) + ",want " + std::to_string(want) + ")";
  }

  std::string dump_stat(const struct stat& st, const std::string& full, bool raw) {
    std::string s = stat_str(st);
    if (!S_ISDIR(st.st_mode) || raw) s += " mtime=" + time_str(st.st_mtim);
    if (raw && S_ISDIR(st.st_mode)) s += " dirsize-ignored";
    if (st.st_dev != dev_) s += " DEV_MISMATCH";
    for (const auto& name : list_xattrs(full)) {
      if (!raw && overlay_xattr(name)) continue;
      int err = 0;
      std::string v = xattr_value(full, name, &err);
      s += " x:" + name + "=" + (err ? errname(err) : hex(v));
    }
    return s;
  }

  void walk(int dirfd, const std::string& rel, bool raw) {
    int fd = ::openat(dirfd, rel.empty() ? "." : rel.c_str(),
                      O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      std::printf("%s OPEN_FAILED %s\n", rel.c_str(), errname(errno).c_str());
      return;
    }
    DirPtr d(::fdopendir(fd));
    if (!d) {
      ::close(fd);
      return;
    }
    auto entries = read_dir(d.get());
    if (errno) std::printf("%s READDIR_FAILED %s\n", rel.c_str(), errname(errno).c_str());
    std::sort(entries.begin(), entries.end(),
              [](const DirEntry& a, const DirEntry& b) { return a.name < b.name; });
    for (size_t i = 1; i < entries.size(); ++i)
      if (entries[i].name == entries[i - 1].name)
        std::printf("%s/%s DUPLICATE_ENTRY\n", rel.c_str(), entries[i].name.c_str());
    for (const auto& e : entries) {
      std::string path = rel.empty() ? e.name : rel + "/" + e.name;
      std::string full = root_ + "/" + path;
      struct stat st {};
      if (::fstatat(root_fd_.get(), path.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        std::printf("%s STAT_FAILED %s\n", path.c_str(), errname(errno).c_str());
        continue;
      }
      std::string line = path + " " + dump_stat(st, full, raw) + " ino=" + label(st.st_ino);
      if (S_ISDIR(st.st_mode)) line += dir_nlink(path, st.st_nlink);
      if (e.ino != st.st_ino) line += " DINO_MISMATCH";
      if (e.type != DT_UNKNOWN && dtype_char(e.type) != type_char(st.st_mode))
        line += " DTYPE_MISMATCH";
      if (S_ISREG(st.st_mode)) {
        std::string c;
        int err = slurp(path, &c);
        line += err ? " read=" + errname(err) : " sha=" + sha(c);
      } else if (S_ISLNK(st.st_mode)) {
        char b[4096];
        ssize_t n = ::readlinkat(root_fd_.get(), path.c_str(), b, sizeof b);
        line += n < 0 ? " readlink=" + errname(errno)
                      : " -> \"" + escape(std::string(b, static_cast<size_t>(n)), 200) + "\"";
      }
      std::printf("%s\n", line.c_str());
      if (S_ISDIR(st.st_mode)) walk(root_fd_.get(), path, raw);
    }
  }

  int slurp(const std::string& path, std::string* out) {
    UniqueFd fd(::openat(root_fd_.get(), path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return errno;
    char b[65536];
    for (;;) {
      ssize_t n = ::read(fd.get(), b, sizeof b);
      if (n < 0) return errno;
      if (n == 0) break;
      out->append(b, static_cast<size_t>(n));
    }
    return 0;
  }

  std::string full(const std::string& p) const { return root_ + "/" + p; }

  int handle(const std::string& h) {
    auto it = handles_.find(h);
    if (it == handles_.end()) throw ScriptError("no open handle " + h);
    return it->second.get();
  }

  static std::string res(int r) { return r == 0 ? "ok" : errname(errno); }
  static std::string res_fd(long long r) { return r >= 0 ? "ok" : errname(errno); }

  void need(const std::vector<std::string>& t, size_t n) {
    if (t.size() < n) throw ScriptError(t[0] + ": needs " + std::to_string(n - 1) + " arguments");
  }

  // Runs one op in a child process with the given ids (its handles die with it).
  std::string as_user(uid_t uid, gid_t gid, const std::vector<std::string>& t) {
    int pipefd[2];
    if (::pipe2(pipefd, O_CLOEXEC) != 0) return errname(errno);
    pid_t pid = ::fork();
    if (pid < 0) return errname(errno);
    if (pid == 0) {
      ::close(pipefd[0]);
      std::string r;
      if (::setgroups(0, nullptr) != 0 || ::setresgid(gid, gid, gid) != 0 ||
          ::setresuid(uid, uid, uid) != 0) {
        r = "setid " + errname(errno);
      } else {
        try {
          r = run_op(t);
        } catch (const std::exception& e) {
          r = std::string("error ") + e.what();
        }
      }
      ssize_t n = ::write(pipefd[1], r.data(), r.size());
      ::_exit(n == static_cast<ssize_t>(r.size()) ? 0 : 1);
    }
    ::close(pipefd[1]);
    std::string out;
    char b[4096];
    ssize_t n;
    while ((n = ::read(pipefd[0], b, sizeof b)) > 0) out.append(b, static_cast<size_t>(n));
    ::close(pipefd[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return out;
  }

  std::string run_op(const std::vector<std::string>& t) {
    const std::string& op = t[0];
    int rfd = root_fd_.get();
    auto p = [&](size_t i) { return t.at(i).c_str(); };
    if (op == "mkdir") {
      need(t, 3);
      return res(::mkdirat(rfd, p(1), mode_arg(t[2])));
    }
    if (op == "rmdir") {
      need(t, 2);
      return res(::unlinkat(rfd, p(1), AT_REMOVEDIR));
    }
    if (op == "unlink") {
      need(t, 2);
      return res(::unlinkat(rfd, p(1), 0));
    }
    if (op == "symlink") {
      need(t, 3);
      return res(::symlinkat(p(1), rfd, p(2)));
    }
    if (op == "readlink") {
      need(t, 2);
      char b[4096];
      ssize_t n = ::readlinkat(rfd, p(1), b, sizeof b);
      if (n < 0) return errname(errno);
      return "\"" + escape(std::string(b, static_cast<size_t>(n))) + "\"";
    }
    if (op == "link") {
      need(t, 3);
      return res(::linkat(rfd, p(1), rfd, p(2), 0));
    }
    if (op == "mknod") {
      need(t, 4);
      mode_t type = 0;
      if (t[2] == "fifo")
        type = S_IFIFO;
      else if (t[2] == "sock")
        type = S_IFSOCK;
      else if (t[2] == "chr")
        type = S_IFCHR;
      else if (t[2] == "blk")
        type = S_IFBLK;
      else if (t[2] == "reg")
        type = S_IFREG;
      else
        throw ScriptError("mknod type");
      dev_t dev = 0;
      if (t.size() >= 6)
        dev = makedev(static_cast<unsigned>(num(t[4])), static_cast<unsigned>(num(t[5])));
      return res(::mknodat(rfd, p(1), type | mode_arg(t[3]), dev));
    }
    if (op == "rename") {
      need(t, 3);
      unsigned flags = 0;
      for (size_t i = 3; i < t.size(); ++i) {
        if (t[i] == "NOREPLACE")
          flags |= RENAME_NOREPLACE;
        else if (t[i] == "EXCHANGE")
          flags |= RENAME_EXCHANGE;
        else if (t[i] == "WHITEOUT")
          flags |= RENAME_WHITEOUT;
        else
          throw ScriptError("rename flag " + t[i]);
      }
      return res(::renameat2(rfd, p(1), rfd, p(2), flags));
    }
    if (op == "chmod") {
      need(t, 3);
      return res(::fchmodat(rfd, p(1), mode_arg(t[2]), 0));
    }
    if (op == "chown" || op == "lchown") {
      need(t, 4);
      return res(::fchownat(rfd, p(1), static_cast<uid_t>(num(t[2])), static_cast<gid_t>(num(t[3])),
                            op == "lchown" ? AT_SYMLINK_NOFOLLOW : 0));
    }
    if (op == "utimens" || op == "lutimens") {
      need(t, 4);
      struct timespec ts[2] = {{static_cast<time_t>(num(t[2])), 0},
                               {static_cast<time_t>(num(t[3])), 0}};
      return res(::utimensat(rfd, p(1), ts, op == "lutimens" ? AT_SYMLINK_NOFOLLOW : 0));
    }
    if (op == "as") {  // as UID GID OP...: OP by a caller with no capabilities or other groups
      need(t, 4);
      return as_user(static_cast<uid_t>(num(t[1])), static_cast<gid_t>(num(t[2])),
                     std::vector<std::string>(t.begin() + 3, t.end()));
    }
    if (op == "touch") {  // utimens to now: the result shows as mtime=new
      need(t, 2);
      return res(::utimensat(rfd, p(1), nullptr, 0));
    }
    if (op == "truncate") {
      need(t, 3);
      return res(::truncate(full(t[1]).c_str(), num(t[2])));
    }
    if (op == "stat" || op == "lstat") {
      need(t, 2);
      struct stat st {};
      if (::fstatat(rfd, p(1), &st, op == "lstat" ? AT_SYMLINK_NOFOLLOW : 0) != 0)
        return errname(errno);
      return stat_str(st) + " mtime=" + time_str(st.st_mtim);
    }
    if (op == "access") {
      need(t, 3);
      int m = 0;
      for (char c : t[2]) m |= c == 'r' ? R_OK : c == 'w' ? W_OK : c == 'x' ? X_OK : F_OK;
      return res(::faccessat(rfd, p(1), m, 0));
    }
    if (op == "write-file" || op == "append") {
      need(t, 3);
      int flags = O_WRONLY | O_CREAT | (op == "append" ? O_APPEND : O_TRUNC) | O_CLOEXEC;
      UniqueFd fd(::openat(rfd, p(1), flags, 0644));
      if (!fd) return errname(errno);
      std::string d = data_arg(t[2]);
      if (::write(fd.get(), d.data(), d.size()) != static_cast<ssize_t>(d.size()))
        return errname(errno);
      return res(::close(fd.release()));
    }
    if (op == "cat") {
      need(t, 2);
      std::string c;
      int err = slurp(t[1], &c);
      return err ? errname(err) : show_data(c);
    }
    if (op == "open") {  // open HANDLE PATH FLAGS [MODE]
      need(t, 4);
      int fd =
          ::openat(rfd, p(2), open_flags(t[3]) | O_CLOEXEC, t.size() > 4 ? mode_arg(t[4]) : 0644);
      if (fd < 0) return errname(errno);
      handles_[t[1]].reset(fd);
      return "ok";
    }
    if (op == "close") {
      need(t, 2);
      handle(t[1]);
      int r = ::close(handles_[t[1]].release());
      handles_.erase(t[1]);
      return res(r);
    }
    if (op == "write" || op == "pwrite") {
      need(t, op == "write" ? 3 : 4);
      int fd = handle(t[1]);
      std::string d = data_arg(t[op == "write" ? 2 : 3]);
      ssize_t n = op == "write" ? ::write(fd, d.data(), d.size())
                                : ::pwrite(fd, d.data(), d.size(), num(t[2]));
      if (n < 0) return errname(errno);
      return n == static_cast<ssize_t>(d.size()) ? "ok" : "short " + std::to_string(n);
    }
    if (op == "read" || op == "pread") {
      need(t, op == "read" ? 3 : 4);
      int fd = handle(t[1]);
      size_t len = static_cast<size_t>(num(t[op == "read" ? 2 : 3]));
      std::string b(len, '\0');
      ssize_t n = op == "read" ? ::read(fd, b.data(), len) : ::pread(fd, b.data(), len, num(t[2]));
      if (n < 0) return errname(errno);
      b.resize(static_cast<size_t>(n));
      return show_data(b);
    }
    if (op == "fsync") return res(::fsync(handle(t.at(1))));
    if (op == "fdatasync") return res(::fdatasync(handle(t.at(1))));
    if (op == "ftruncate") {
      need(t, 3);
      return res(::ftruncate(handle(t[1]), num(t[2])));
    }
    if (op == "fchmod") {
      need(t, 3);
      return res(::fchmod(handle(t[1]), mode_arg(t[2])));
    }
    if (op == "fstat" || op == "fstat-mtime") {
      struct stat st {};
      if (::fstat(handle(t.at(1)), &st) != 0) return errname(errno);
      return stat_str(st) + (op == "fstat" ? "" : " mtime=" + time_str(st.st_mtim));
    }
    if (op == "futimens") {  // futimens H ATIME MTIME
      need(t, 4);
      struct timespec ts[2] = {{static_cast<time_t>(num(t[2])), 0},
                               {static_cast<time_t>(num(t[3])), 0}};
      return res(::futimens(handle(t[1]), ts));
    }
    if (op == "umask") {  // umask MODE: for the creations that follow
      need(t, 2);
      ::umask(mode_arg(t[1]));
      return "ok";
    }
    if (op == "fallocate") {  // fallocate H MODE OFF LEN
      need(t, 5);
      int mode = 0;
      if (t[2] == "KEEP_SIZE")
        mode = FALLOC_FL_KEEP_SIZE;
      else if (t[2] == "PUNCH_HOLE")
        mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
      else if (t[2] == "ZERO_RANGE")
        mode = FALLOC_FL_ZERO_RANGE;
      else if (t[2] != "0")
        throw ScriptError("fallocate mode");
      return res(::fallocate(handle(t[1]), mode, num(t[3]), num(t[4])));
    }
    if (op == "seek") {  // seek H OFF SET|CUR|END|DATA|HOLE
      need(t, 4);
      int w = t[3] == "SET"    ? SEEK_SET
              : t[3] == "CUR"  ? SEEK_CUR
              : t[3] == "END"  ? SEEK_END
              : t[3] == "DATA" ? SEEK_DATA
              : t[3] == "HOLE" ? SEEK_HOLE
                               : -1;
      if (w < 0) throw ScriptError("whence");
      off_t r = ::lseek(handle(t[1]), num(t[2]), w);
      return r < 0 ? errname(errno) : std::to_string(r);
    }
    if (op == "flock") {  // flock H SH|EX|UN [NB]
      need(t, 3);
      int m = t[2] == "SH" ? LOCK_SH : t[2] == "EX" ? LOCK_EX : LOCK_UN;
      if (t.size() > 3) m |= LOCK_NB;
      return res(::flock(handle(t[1]), m));
    }
    if (op == "lock") {  // lock H R|W|U START LEN: F_SETLK; then F_GETLK from a child
      need(t, 5);
      struct flock fl {};
      fl.l_type = static_cast<short>(t[2] == "R" ? F_RDLCK : t[2] == "W" ? F_WRLCK : F_UNLCK);
      fl.l_whence = SEEK_SET;
      fl.l_start = num(t[3]);
      fl.l_len = num(t[4]);
      return res(::fcntl(handle(t[1]), F_SETLK, &fl));
    }
    if (op == "locktest") {  // locktest H START LEN: F_GETLK for a write lock from a child process
      need(t, 4);
      int pfd[2];
      if (::pipe(pfd) != 0) return errname(errno);
      pid_t pid = ::fork();
      if (pid == 0) {
        struct flock fl {};
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        fl.l_start = num(t[2]);
        fl.l_len = num(t[3]);
        char c = ::fcntl(handle(t[1]), F_GETLK, &fl) != 0 ? 'E' : fl.l_type == F_UNLCK ? 'U' : 'L';
        (void)!::write(pfd[1], &c, 1);
        ::_exit(0);
      }
      ::close(pfd[1]);
      char c = '?';
      (void)!::read(pfd[0], &c, 1);
      ::close(pfd[0]);
      int status;
      ::waitpid(pid, &status, 0);
      return c == 'U' ? "unlocked" : c == 'L' ? "locked" : "error";
    }
    if (op == "mmapwrite" || op == "mmapread") {  // mmapwrite PATH OFF DATA / mmapread PATH OFF LEN
      need(t, 4);
      bool w = op == "mmapwrite";
      UniqueFd fd(::openat(rfd, p(1), (w ? O_RDWR : O_RDONLY) | O_CLOEXEC));
      if (!fd) return errname(errno);
      std::string d = w ? data_arg(t[3]) : std::string();
      size_t off = static_cast<size_t>(num(t[2]));
      size_t len = w ? d.size() : static_cast<size_t>(num(t[3]));
      struct stat st {};
      if (::fstat(fd.get(), &st) != 0) return errname(errno);
      // Touching a mapping beyond the end of the file is SIGBUS, not a result.
      if (S_ISREG(st.st_mode) && off + len > static_cast<size_t>(st.st_size)) return "beyond EOF";
      void* m = ::mmap(nullptr, off + len, w ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED,
                       fd.get(), 0);
      if (m == MAP_FAILED) return errname(errno);
      std::string out = "ok";
      if (w) {
        std::memcpy(static_cast<char*>(m) + off, d.data(), len);
        if (::msync(m, off + len, MS_SYNC) != 0) out = errname(errno);
      } else {
        out = show_data(std::string(static_cast<char*>(m) + off, len));
      }
      ::munmap(m, off + len);
      return out;
    }
    if (op == "copyrange") {  // copyrange SRC DST LEN
      need(t, 4);
      UniqueFd in(::openat(rfd, p(1), O_RDONLY | O_CLOEXEC));
      if (!in) return errname(errno);
      UniqueFd out(::openat(rfd, p(2), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
      if (!out) return errname(errno);
      size_t left = static_cast<size_t>(num(t[3]));
      while (left > 0) {
        ssize_t n = ::copy_file_range(in.get(), nullptr, out.get(), nullptr, left, 0);
        if (n < 0) return errname(errno);
        if (n == 0) break;
        left -= static_cast<size_t>(n);
      }
      return "ok";
    }
    if (op == "setxattr" || op == "lsetxattr") {  // setxattr PATH NAME VALUE [CREATE|REPLACE]
      need(t, 4);
      int flags = 0;
      if (t.size() > 4) flags = t[4] == "CREATE" ? XATTR_CREATE : XATTR_REPLACE;
      std::string v = data_arg(t[3]);
      auto f = op == "setxattr" ? ::setxattr : ::lsetxattr;
      return res(f(full(t[1]).c_str(), p(2), v.data(), v.size(), flags));
    }
    if (op == "getxattr") {
      need(t, 3);
      std::vector<char> b(65536);
      ssize_t n = ::lgetxattr(full(t[1]).c_str(), p(2), b.data(), b.size());
      if (n < 0) return errname(errno);
      return "\"" + escape(std::string(b.data(), static_cast<size_t>(n))) + "\"";
    }
    if (op == "listxattr") {  // all names, overlay ones included: they must not show
      need(t, 2);
      std::vector<char> b(65536);
      ssize_t n = ::llistxattr(full(t[1]).c_str(), b.data(), b.size());
      if (n < 0) return errname(errno);
      std::vector<std::string> names;
      for (ssize_t i = 0; i < n;) {
        names.emplace_back(b.data() + i);
        i += static_cast<ssize_t>(names.back().size()) + 1;
      }
      std::sort(names.begin(), names.end());
      std::string s = "[";
      for (const auto& x : names) s += (s.size() > 1 ? " " : "") + x;
      return s + "]";
    }
    if (op == "removexattr") {
      need(t, 3);
      return res(::lremovexattr(full(t[1]).c_str(), p(2)));
    }
    if (op == "setacl") {  // setacl PATH access|default TEXT
      need(t, 4);
      std::string v = acl_value(t[3]);
      const char* name = t[2] == "default" ? "system.posix_acl_default" : "system.posix_acl_access";
      return res(::setxattr(full(t[1]).c_str(), name, v.data(), v.size(), 0));
    }
    if (op == "statfs") {
      struct statfs s {};
      if (::statfs(full(t.at(1)).c_str(), &s) != 0) return errname(errno);
      return s.f_bsize > 0 && s.f_namelen >= 255 ? "ok" : "odd";
    }
    if (op == "ls") {  // sorted names with types; duplicates and d_ino mismatches flagged
      need(t, 2);
      int fd = ::openat(rfd, p(1), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (fd < 0) return errname(errno);
      DirPtr d(::fdopendir(fd));
      auto es = read_dir(d.get());
      std::sort(es.begin(), es.end(), [](auto& a, auto& b) { return a.name < b.name; });
      std::string s = "[";
      for (const auto& e : es) s += (s.size() > 1 ? " " : "") + e.name + "/" + dtype_char(e.type);
      return s + "]";
    }
    if (op == "readdir-seek") return readdir_seek(t);
    if (op == "readdir-concurrent") return readdir_concurrent(t);
    if (op == "ino-save") {  // ino-save TAG PATH
      need(t, 3);
      struct stat st {};
      if (::fstatat(rfd, p(2), &st, AT_SYMLINK_NOFOLLOW) != 0) return errname(errno);
      saved_[t[1]] = st.st_ino;
      return "ok";
    }
    if (op == "ino-check") {  // ino-check TAG PATH: same / changed
      need(t, 3);
      struct stat st {};
      if (::fstatat(rfd, p(2), &st, AT_SYMLINK_NOFOLLOW) != 0) return errname(errno);
      if (!saved_.count(t[1])) throw ScriptError("no saved inode " + t[1]);
      return saved_[t[1]] == st.st_ino ? "same" : "changed";
    }
    if (op == "race-append") return race_append(t);
    throw ScriptError("unknown operation " + op);
  }

  // readdir-seek DIR: reads the whole directory remembering telldir before
  // each entry, then seeks back to every position and checks the entry read
  // there is the same. Prints the entry count and "stable" or the first miss.
  std::string readdir_seek(const std::vector<std::string>& t) {
    need(t, 2);
    int fd = ::openat(root_fd_.get(), t[1].c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errname(errno);
    DirPtr d(::fdopendir(fd));
    std::vector<std::pair<long, std::string>> seen;
    for (;;) {
      long pos = ::telldir(d.get());
      struct dirent* e = ::readdir(d.get());
      if (!e) break;
      seen.emplace_back(pos, e->d_name);
    }
    for (size_t i = seen.size(); i-- > 0;) {
      ::seekdir(d.get(), seen[i].first);
      struct dirent* e = ::readdir(d.get());
      if (!e || seen[i].second != e->d_name)
        return "MOVED at " + std::to_string(i) + ": " + seen[i].second + " vs " +
               (e ? e->d_name : "end");
    }
    ::rewinddir(d.get());
    size_t n = read_dir(d.get()).size();
    return std::to_string(n) + " entries, seek stable";
  }

  // readdir-concurrent DIR ADD,ADD.. DEL,DEL..: reads two entries, then
  // creates the ADD names and removes the DEL names (files or dirs) through
  // another fd, reads the rest, and seeks back to a position taken before the
  // change. Entries present throughout must each appear exactly once.
  std::string readdir_concurrent(const std::vector<std::string>& t) {
    need(t, 4);
    auto split = [](const std::string& s) {
      std::vector<std::string> v;
      std::stringstream ss(s);
      std::string x;
      while (std::getline(ss, x, ','))
        if (!x.empty() && x != "-") v.push_back(x);
      return v;
    };
    auto adds = split(t[2]), dels = split(t[3]);
    int fd = ::openat(root_fd_.get(), t[1].c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errname(errno);
    UniqueFd dirfd(::openat(root_fd_.get(), t[1].c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    DirPtr d(::fdopendir(fd));
    std::set<std::string> before;
    {
      UniqueFd fd2(::openat(root_fd_.get(), t[1].c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      DirPtr d2(::fdopendir(fd2.release()));
      for (auto& e : read_dir(d2.get())) before.insert(e.name);
    }
    std::map<std::string, int> count;
    std::vector<std::pair<long, std::string>> first;
    auto next = [&]() -> struct dirent* {
      struct dirent* e;
      do {
        e = ::readdir(d.get());
      } while (e && (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0));
      return e;
    };
    for (int i = 0; i < 2; ++i) {
      long pos = ::telldir(d.get());
      struct dirent* e = next();
      if (!e) break;
      first.emplace_back(pos, e->d_name);
      count[e->d_name]++;
    }
    long mark = ::telldir(d.get());
    std::string changes;
    for (const auto& a : adds) {
      UniqueFd f(::openat(dirfd.get(), a.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
      if (!f) changes += " add " + a + ":" + errname(errno);
    }
    for (const auto& x : dels) {
      if (::unlinkat(dirfd.get(), x.c_str(), 0) != 0 &&
          ::unlinkat(dirfd.get(), x.c_str(), AT_REMOVEDIR) != 0)
        changes += " del " + x + ":" + errname(errno);
    }
    std::vector<std::string> rest;
    while (struct dirent* e = next()) {
      count[e->d_name]++;
      rest.push_back(e->d_name);
    }
    std::string problems;
    for (const auto& [n, c] : count)
      if (c > 1) problems += " dup:" + n;
    for (const auto& n : before) {
      bool deleted = std::find(dels.begin(), dels.end(), n) != dels.end();
      if (!deleted && count[n] != 1) problems += " missing:" + n;
    }
    for (const auto& [n, c] : count) {
      bool added = std::find(adds.begin(), adds.end(), n) != adds.end();
      if (!before.count(n) && !added) problems += " phantom:" + n;
      if (n.rfind(".wh.", 0) == 0) problems += " internal:" + n;
    }
    // Seeking back to a position from before the change continues with what
    // followed it then, unless that entry was removed.
    ::seekdir(d.get(), mark);
    struct dirent* e = next();
    if (!rest.empty()) {
      bool deleted = std::find(dels.begin(), dels.end(), rest[0]) != dels.end();
      if (!deleted && (!e || rest[0] != e->d_name) && before.count(rest[0]))
        problems += " seek-moved:" + rest[0] + "/" + (e ? e->d_name : "end");
    }
    ::rewinddir(d.get());
    std::set<std::string> after;
    for (auto& x : read_dir(d.get())) after.insert(x.name);
    std::string now = "[";
    for (const auto& n : after) now += (now.size() > 1 ? " " : "") + n;
    now += "]";
    return (problems.empty() ? "consistent" : "INCONSISTENT" + problems) + changes + " now " + now;
  }

  // race-append PATH THREADS COUNT: THREADS threads each append COUNT lines
  // through their own O_APPEND fd; the result must hold every line once.
  std::string race_append(const std::vector<std::string>& t) {
    need(t, 4);
    int threads = static_cast<int>(num(t[2])), count = static_cast<int>(num(t[3]));
    std::vector<std::thread> ts;
    std::vector<int> errs(static_cast<size_t>(threads), 0);
    for (int i = 0; i < threads; ++i) {
      ts.emplace_back([&, i] {
        UniqueFd fd(::openat(root_fd_.get(), t[1].c_str(),
                             O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
        if (!fd) {
          errs[static_cast<size_t>(i)] = errno;
          return;
        }
        for (int j = 0; j < count; ++j) {
          std::string l = "t" + std::to_string(i) + " line " + std::to_string(j) + "\n";
          if (::write(fd.get(), l.data(), l.size()) != static_cast<ssize_t>(l.size())) {
            errs[static_cast<size_t>(i)] = errno;
            return;
          }
        }
      });
    }
    for (auto& th : ts) th.join();
    for (int e : errs)
      if (e) return errname(e);
    std::string c;
    if (int err = slurp(t[1], &c)) return errname(err);
    std::vector<std::string> lines;
    std::stringstream ss(c);
    std::string l;
    while (std::getline(ss, l)) lines.push_back(l);
    std::sort(lines.begin(), lines.end());
    std::vector<std::string> want;
    for (int i = 0; i < threads; ++i)
      for (int j = 0; j < count; ++j)
        want.push_back("t" + std::to_string(i) + " line " + std::to_string(j));
    std::sort(want.begin(), want.end());
    if (lines != want) return "LOST OR TORN LINES";
    // The interleaving differs from run to run: leave the lines sorted so the
    // tree dump compares.
    std::string sorted;
    for (const auto& x : lines) sorted += x + "\n";
    UniqueFd fd(::openat(root_fd_.get(), t[1].c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
    if (!fd ||
        ::write(fd.get(), sorted.data(), sorted.size()) != static_cast<ssize_t>(sorted.size()))
      return errname(errno);
    return "all " + std::to_string(want.size()) + " lines";
  }

  std::string root_;
  std::string role_;   // "kernel", "engine" or empty: picks `#!` expectations
  bool strict_nlink_;  // a directory's nlink must be exact (1 is wrong)
  UniqueFd root_fd_;
  dev_t dev_ = 0;
  std::map<ino_t, size_t> inos_;
  std::map<std::string, UniqueFd> handles_;
  std::map<std::string, ino_t> saved_;
};

}  // namespace

int main(int argc, char** argv) {
  std::string root, script, role;
  bool dump = true, raw = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--root" && i + 1 < argc)
      root = argv[++i];
    else if (a == "--script" && i + 1 < argc)
      script = argv[++i];
    else if (a == "--no-dump")
      dump = false;
    else if (a == "--raw")
      raw = true;
    else if (a == "--role" && i + 1 < argc)
      role = argv[++i];
    else {
      std::fprintf(stderr,
                   "usage: fsops --root DIR [--script FILE] [--no-dump] [--raw] [--role R]\n");
      return 2;
    }
  }
  if (root.empty()) {
    std::fprintf(stderr, "fsops: --root is required\n");
    return 2;
  }
  try {
    Runner r(root, role);
    if (!script.empty()) {
      std::ifstream in(script);
      if (!in) throw std::runtime_error("cannot read script " + script);
      r.run_script(in);
    }
    if (dump) r.dump(raw);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fsops: %s\n", e.what());
    return 1;
  }
  return 0;
}
