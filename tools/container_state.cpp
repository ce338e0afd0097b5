#include "container_state.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <vector>

#include "util/sys.hpp"

namespace layer::cli {
namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape_mountinfo(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

struct DirClose {
  void operator()(DIR* d) const { ::closedir(d); }
};

}  // namespace

std::string mount_type_at(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line, type;
  while (std::getline(in, line)) {
    // id parent maj:min root mountpoint options [optional...] - fstype source superopts
    std::istringstream ss(line);
    std::string id, parent, dev, root, mp;
    ss >> id >> parent >> dev >> root >> mp;
    if (unescape_mountinfo(mp) != path) continue;
    auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream rest(line.substr(dash + 3));
    rest >> type;  // the last mount at a path is the visible one
  }
  return type;
}

bool daemon_alive(int pid, const std::string& mountpoint) {
  if (pid <= 0) return false;
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  if (!in) return false;
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> argv;
  std::string cur;
  for (char c : all) {
    if (c == '\0') {
      argv.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (argv.empty() || argv[0].find("layerfs") == std::string::npos) return false;
  // A zombie has an empty cmdline, so reaching here means it runs.
  for (size_t i = 1; i < argv.size(); ++i)
    if (argv[i] == mountpoint) return true;
  return false;
}

ContainerState container_state(const store::ContainerRecord& c) {
  if (c.engine == store::kEngineKernel)
    return mount_type_at(c.mountpoint) == "overlay" ? ContainerState::Mounted
                                                    : ContainerState::Stopped;
  if (c.pid == 0) return ContainerState::Stopped;
  if (!daemon_alive(c.pid, c.mountpoint)) return ContainerState::DaemonDead;
  if (mount_type_at(c.mountpoint) != "fuse.layerfs") return ContainerState::DaemonDead;
  return ContainerState::Mounted;
}

const char* state_name(ContainerState s) {
  switch (s) {
    case ContainerState::Mounted:
      return "mounted";
    case ContainerState::Stopped:
      return "stopped";
    case ContainerState::DaemonDead:
      return "daemon dead";
  }
  return "?";
}

std::string absolute_path(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf)) return buf;
  std::string base;
  if (path.empty() || path[0] != '/') {
    if (!::getcwd(buf, sizeof buf)) return path;
    base = buf;
  }
  std::vector<std::string> parts;
  std::istringstream ss(base + "/" + path);
  std::string p;
  while (std::getline(ss, p, '/')) {
    if (p.empty() || p == ".") continue;
    if (p == "..") {
      if (!parts.empty()) parts.pop_back();
    } else {
      parts.push_back(p);
    }
  }
  std::string out;
  for (const auto& x : parts) out += "/" + x;
  return out.empty() ? "/" : out;
}

std::string layerfs_binary() {
  if (const char* e = std::getenv("LAYERFS"); e && *e) return e;
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n > 0) {
    std::string self(buf, static_cast<size_t>(n));
    std::string dir = self.substr(0, self.rfind('/'));
    for (const auto& c : {dir + "/layerfs", dir + "/../fuse/layerfs"})
      if (::access(c.c_str(), X_OK) == 0) return c;
  }
  return "layerfs";
}

uint64_t tree_bytes(int dirfd, const std::string& name) {
  auto fd = sys::open_at(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!fd) return 0;
  int raw = fd->release();
  std::unique_ptr<DIR, DirClose> d(::fdopendir(raw));
  if (!d) {
    ::close(raw);
    return 0;
  }
  uint64_t total = 0;
  while (struct dirent* e = ::readdir(d.get())) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    struct stat st {};
    if (::fstatat(::dirfd(d.get()), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (S_ISDIR(st.st_mode))
      total += tree_bytes(::dirfd(d.get()), n);
    else if (S_ISREG(st.st_mode))
      total += static_cast<uint64_t>(st.st_size);
  }
  return total;
}

}  // namespace layer::cli
