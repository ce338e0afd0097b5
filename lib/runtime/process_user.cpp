#include "runtime/process_user.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <optional>
#include <sstream>

#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::runtime {
namespace {

constexpr size_t kMaxDbBytes = 4 << 20;  // an /etc/passwd or /etc/group
constexpr uint32_t kMaxId = 0xfffffffe;  // (uid_t)-1 means "no change" to the kernel

std::optional<uint32_t> parse_id(const std::string& s) {
  if (s.empty() || s.size() > 10) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > kMaxId) return std::nullopt;
  return static_cast<uint32_t>(v);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  if (!s.empty() && s.back() == sep) out.emplace_back();
  return out;
}

// One well-formed line of /etc/passwd (name:pw:uid:gid:gecos:home:shell) or
// /etc/group (name:pw:gid:members); malformed lines are skipped, as libc does.
struct PasswdEntry {
  std::string name;
  uint32_t uid, gid;
  std::string home;
};
struct GroupEntry {
  std::string name;
  uint32_t gid;
  std::vector<std::string> members;
};

std::vector<PasswdEntry> parse_passwd(const std::string& text) {
  std::vector<PasswdEntry> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto f = split(line, ':');
    if (f.size() < 7 || f[0].empty()) continue;
    auto uid = parse_id(f[2]);
    auto gid = parse_id(f[3]);
    if (!uid || !gid) continue;
    out.push_back({f[0], *uid, *gid, f[5]});
  }
  return out;
}

std::vector<GroupEntry> parse_group(const std::string& text) {
  std::vector<GroupEntry> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto f = split(line, ':');
    if (f.size() < 4 || f[0].empty()) continue;
    auto gid = parse_id(f[2]);
    if (!gid) continue;
    std::vector<std::string> members;
    for (auto& m : split(f[3], ','))
      if (!m.empty()) members.push_back(m);
    out.push_back({f[0], *gid, std::move(members)});
  }
  return out;
}

// Reads etc/NAME beneath rootfd; "" when absent.
std::string read_db(int rootfd, const std::string& name) {
  const std::string path = "etc/" + name;
  auto fd = sys::open_beneath(rootfd, path.c_str(), O_RDONLY | O_NOCTTY | O_NONBLOCK);
  if (!fd) {
    if (fd.error() == ENOENT) return "";
    if (fd.error() == EXDEV)
      throw Error("/" + path + " in the image: a symlink that leads out of the rootfs");
    throw Error("/" + path + " in the image", fd.error());
  }
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) throw_errno("/" + path + " in the image");
  if (!S_ISREG(st.st_mode)) throw Error("/" + path + " in the image: not a regular file");
  std::string out;
  char buf[65536];
  for (;;) {
    auto n = sys::read_full(fd->get(), buf, sizeof buf);
    if (!n) throw Error("/" + path + " in the image", n.error());
    if (*n == 0) break;
    if (out.size() + *n > kMaxDbBytes)
      throw Error("/" + path + " in the image: larger than " + std::to_string(kMaxDbBytes) +
                  " bytes");
    out.append(buf, *n);
  }
  return out;
}

}  // namespace

ProcessUser ProcessUser::resolve(const std::string& user, const std::string& passwd,
                                 const std::string& group) {
  const auto users = parse_passwd(passwd);
  const auto groups = parse_group(group);
  std::string user_part = user, group_part;
  bool has_group = false;
  if (auto colon = user.find(':'); colon != std::string::npos) {
    user_part = user.substr(0, colon);
    group_part = user.substr(colon + 1);
    has_group = true;
    if (group_part.empty()) throw Error("user '" + user + "': empty group");
  }
  if (user_part.empty()) {
    if (has_group) throw Error("user '" + user + "': empty user");
    user_part = "0";
  }

  ProcessUser out;
  const PasswdEntry* entry = nullptr;
  if (auto uid = parse_id(user_part)) {
    out.uid = *uid;
    for (const auto& e : users)
      if (e.uid == *uid) {
        entry = &e;
        break;
      }
  } else {
    for (const auto& e : users)
      if (e.name == user_part) {
        entry = &e;
        break;
      }
    if (!entry) throw Error("user '" + user_part + "': not found in the image's /etc/passwd");
    out.uid = entry->uid;
  }
  // A uid without a passwd entry runs with gid 0, as docker and podman do.
  out.gid = entry ? entry->gid : 0;
  if (entry) out.home = entry->home;

  if (has_group) {
    if (auto gid = parse_id(group_part)) {
      out.gid = *gid;
    } else {
      auto it = std::find_if(groups.begin(), groups.end(),
                             [&](const GroupEntry& g) { return g.name == group_part; });
      if (it == groups.end())
        throw Error("group '" + group_part + "': not found in the image's /etc/group");
      out.gid = it->gid;
    }
  }
  if (entry) {
    for (const auto& g : groups) {
      if (g.gid == out.gid) continue;
      if (std::find(g.members.begin(), g.members.end(), entry->name) == g.members.end()) continue;
      if (std::find(out.additional_gids.begin(), out.additional_gids.end(), g.gid) ==
          out.additional_gids.end())
        out.additional_gids.push_back(g.gid);
    }
  }
  return out;
}

ProcessUser ProcessUser::resolve(int rootfd, const std::string& user) {
  return resolve(user, read_db(rootfd, "passwd"), read_db(rootfd, "group"));
}

}  // namespace layer::runtime
