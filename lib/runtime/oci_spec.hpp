// OciSpec: the OCI runtime-spec config.json of a bundle made from an image:
// the process (args, env, cwd, user) from the image config, and runc's default
// mounts, namespaces, capabilities and masked paths around it. Plain values;
// building and serializing are thread-safe.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/process_user.hpp"

namespace layer::runtime {

// The parts of an image config's "config" object a runtime uses.
struct ImageProcess {
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::vector<std::string> env;  // "KEY=value"
  std::string working_dir;
  std::string user;

  // Parses the image config JSON (the whole document; "config" may be absent
  // or null). Throws Error naming the field at fault.
  static ImageProcess parse(std::string_view config_json);
};

inline constexpr const char* kDefaultPath =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

struct OciSpec {
  std::vector<std::string> args;  // never empty
  std::vector<std::string> env;
  std::string cwd = "/";
  ProcessUser user;
  std::string hostname;
  std::string root_path = "rootfs";  // relative to the bundle, or absolute
  bool root_readonly = false;
  std::vector<std::pair<std::string, std::string>> annotations;

  // args = Entrypoint + Cmd, or Entrypoint + `cmd_override` when that is not
  // empty; env = the image's Env plus PATH and HOME when it has none; cwd =
  // WorkingDir (absolute; "/" by default). Throws Error when there is no
  // command at all.
  static OciSpec from_image(const ImageProcess& image, const ProcessUser& user,
                            const std::vector<std::string>& cmd_override);

  // The config.json document (ociVersion 1.0.2; terminal false).
  nlohmann::ordered_json to_json() const;
};

}  // namespace layer::runtime
