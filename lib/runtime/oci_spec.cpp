#include "runtime/oci_spec.hpp"

#include <cassert>

#include "oci/image.hpp"
#include "util/error.hpp"

namespace layer::runtime {
namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

constexpr size_t kMaxStrings = 4096;  // entries of Env, Cmd or Entrypoint

std::vector<std::string> string_list(const json& cfg, const char* field) {
  std::vector<std::string> out;
  auto it = cfg.find(field);
  if (it == cfg.end() || it->is_null()) return out;
  if (!it->is_array()) throw Error(std::string("image config: '") + field + "' is not a list");
  if (it->size() > kMaxStrings)
    throw Error(std::string("image config: '") + field + "' has too many entries");
  for (const auto& v : *it) {
    if (!v.is_string())
      throw Error(std::string("image config: '") + field + "' holds a non-string");
    const auto& s = v.get_ref<const std::string&>();
    if (s.find('\0') != std::string::npos)
      throw Error(std::string("image config: '") + field + "' holds a NUL byte");
    out.push_back(s);
  }
  return out;
}

std::string string_field(const json& cfg, const char* field) {
  auto it = cfg.find(field);
  if (it == cfg.end() || it->is_null()) return "";
  if (!it->is_string()) throw Error(std::string("image config: '") + field + "' is not a string");
  const auto& s = it->get_ref<const std::string&>();
  if (s.find('\0') != std::string::npos)
    throw Error(std::string("image config: '") + field + "' holds a NUL byte");
  return s;
}

bool has_key(const std::vector<std::string>& env, const std::string& key) {
  for (const auto& e : env)
    if (e.compare(0, key.size() + 1, key + "=") == 0) return true;
  return false;
}

ojson strings(std::initializer_list<const char*> l) {
  ojson a = ojson::array();
  for (const char* s : l) a.push_back(s);
  return a;
}

ojson mount(const char* dest, const char* type, const char* source,
            std::initializer_list<const char*> options) {
  ojson m = {{"destination", dest}, {"type", type}, {"source", source}};
  if (options.size() > 0) m["options"] = strings(options);
  return m;
}

}  // namespace

ImageProcess ImageProcess::parse(std::string_view config_json) {
  if (config_json.size() > oci::kMaxDocumentBytes) throw Error("image config: too large");
  json doc = json::parse(config_json, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) throw Error("image config: not a JSON object");
  ImageProcess p;
  auto it = doc.find("config");
  if (it == doc.end() || it->is_null()) return p;
  if (!it->is_object()) throw Error("image config: 'config' is not an object");
  p.entrypoint = string_list(*it, "Entrypoint");
  p.cmd = string_list(*it, "Cmd");
  p.env = string_list(*it, "Env");
  p.working_dir = string_field(*it, "WorkingDir");
  p.user = string_field(*it, "User");
  for (const auto& e : p.env)
    if (e.empty() || e[0] == '=' || e.find('=') == std::string::npos)
      throw Error("image config: 'Env' entry '" + e + "' is not KEY=value");
  return p;
}

OciSpec OciSpec::from_image(const ImageProcess& image, const ProcessUser& user,
                            const std::vector<std::string>& cmd_override) {
  OciSpec s;
  s.args = image.entrypoint;
  const auto& cmd = cmd_override.empty() ? image.cmd : cmd_override;
  s.args.insert(s.args.end(), cmd.begin(), cmd.end());
  if (s.args.empty()) throw Error("the image has no Entrypoint or Cmd, and no command was given");
  s.env = image.env;
  if (!has_key(s.env, "PATH")) s.env.insert(s.env.begin(), kDefaultPath);
  if (!has_key(s.env, "HOME")) s.env.push_back("HOME=" + (user.home.empty() ? "/" : user.home));
  // Docker runs a relative WorkingDir from the root.
  if (!image.working_dir.empty())
    s.cwd = image.working_dir[0] == '/' ? image.working_dir : "/" + image.working_dir;
  s.user = user;
  return s;
}

ojson OciSpec::to_json() const {
  assert(!args.empty());
  ojson u = {{"uid", user.uid}, {"gid", user.gid}};
  if (!user.additional_gids.empty()) u["additionalGids"] = user.additional_gids;
  // runc spec's defaults: enough for a plain process, not for one that
  // changes owners or users.
  ojson caps = strings({"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"});
  ojson process = {
      {"terminal", false},
      {"user", u},
      {"args", args},
      {"env", env},
      {"cwd", cwd},
      {"capabilities",
       {{"bounding", caps}, {"effective", caps}, {"permitted", caps}, {"ambient", caps}}},
      {"rlimits", ojson::array({{{"type", "RLIMIT_NOFILE"}, {"hard", 1024}, {"soft", 1024}}})},
      {"noNewPrivileges", true},
  };
  ojson mounts = ojson::array({
      mount("/proc", "proc", "proc", {}),
      mount("/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}),
      mount("/dev/pts", "devpts", "devpts",
            {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}),
      mount("/dev/shm", "tmpfs", "shm", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}),
      mount("/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}),
      mount("/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"}),
      mount("/sys/fs/cgroup", "cgroup", "cgroup", {"nosuid", "noexec", "nodev", "relatime", "ro"}),
  });
  ojson namespaces = ojson::array();
  for (const char* ns : {"pid", "network", "ipc", "uts", "mount"})
    namespaces.push_back({{"type", ns}});
  ojson linux_ = {
      {"resources", {{"devices", ojson::array({{{"allow", false}, {"access", "rwm"}}})}}},
      {"namespaces", namespaces},
      {"maskedPaths", strings({"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                               "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                               "/proc/sched_debug", "/sys/firmware", "/proc/scsi"})},
      {"readonlyPaths",
       strings({"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"})},
  };
  ojson doc = {
      {"ociVersion", "1.0.2"},
      {"process", process},
      {"root", {{"path", root_path}, {"readonly", root_readonly}}},
      {"hostname", hostname},
      {"mounts", mounts},
      {"linux", linux_},
  };
  if (!annotations.empty()) {
    ojson a = ojson::object();
    for (const auto& [k, v] : annotations) a[k] = v;
    doc["annotations"] = a;
  }
  return doc;
}

}  // namespace layer::runtime
