// layerctl bundle: mounts a container like `layerctl mount` at DIR/rootfs and
// writes DIR/config.json, an OCI runtime bundle for runc or crun.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "bundle.hpp"
#include "command.hpp"
#include "container_mount.hpp"
#include "container_state.hpp"
#include "oci/image.hpp"
#include "runtime/oci_spec.hpp"
#include "runtime/process_user.hpp"
#include "store/store.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::cli {
namespace {

struct DirClose {
  void operator()(DIR* d) const { ::closedir(d); }
};

// True when the directory at `path` has no entries.
bool dir_empty(const std::string& path) {
  std::unique_ptr<DIR, DirClose> d(::opendir(path.c_str()));
  if (!d) throw Error("'" + path + "'", errno);
  while (struct dirent* e = ::readdir(d.get())) {
    std::string n = e->d_name;
    if (n != "." && n != "..") return false;
  }
  return true;
}

}  // namespace

Bundle make_bundle(store::Store& store, const BundleRequest& req) {
  const std::string& image = req.image;
  const std::string& dir = req.dir;
  const std::vector<std::string>& command = req.command;
  auto img = store.find_image(image);
  if (!img) throw Error("'" + image + "': no such image");
  auto config = store.read_blob(img->config, oci::kMaxDocumentBytes);
  if (!config) throw Error("'" + image + "': config " + img->config.str() + " is missing");
  runtime::ImageProcess process;
  try {
    process = runtime::ImageProcess::parse(*config);
  } catch (const Error& e) {
    throw Error("'" + image + "': " + e.line());
  }
  if (process.entrypoint.empty() && process.cmd.empty() && command.empty())
    throw Error("'" + image + "': the image has no Entrypoint or Cmd; give a command after --");

  // DIR: created here, or an existing empty directory.
  bool created_dir = false;
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) throw Error("'" + dir + "'", ENOTDIR);
    if (!mount_type_at(dir).empty())
      throw Error("'" + dir + "': already a mount point (" + mount_type_at(dir) + ")");
    if (!dir_empty(dir)) throw Error("'" + dir + "': not empty");
  } else if (errno == ENOENT) {
    if (::mkdir(dir.c_str(), 0755) != 0) throw Error("'" + dir + "'", errno);
    created_dir = true;
  } else {
    throw Error("'" + dir + "'", errno);
  }
  const std::string rootfs = dir + "/rootfs";
  auto undo_dirs = [&] { remove_bundle_files(Bundle{{}, dir, rootfs, created_dir}); };
  if (::mkdir(rootfs.c_str(), 0755) != 0) {
    int err = errno;
    undo_dirs();
    throw Error("'" + rootfs + "'", err);
  }

  store::ContainerRecord rec;
  try {
    rec = mount_container(store, {image, rootfs, req.name, false});
  } catch (...) {
    undo_dirs();
    throw;
  }
  try {
    UniqueFd root_fd = sys::xopen_dir(rootfs);
    runtime::ProcessUser user;
    try {
      user = runtime::ProcessUser::resolve(root_fd.get(), process.user);
    } catch (const Error& e) {
      throw Error("'" + image + "': " + e.line());
    }
    runtime::OciSpec spec = runtime::OciSpec::from_image(process, user, command);
    spec.hostname = rec.name;
    spec.root_path = rootfs;
    spec.annotations = {{"io.layerfs.container", rec.id}, {"io.layerfs.image", rec.image}};
    UniqueFd dir_fd = sys::xopen_dir(dir);
    sys::xwrite_file_atomic(dir_fd.get(), ".config.json.tmp", dir_fd.get(), "config.json",
                            spec.to_json().dump(2) + "\n");
  } catch (...) {
    discard_container(store, rec);
    ::unlink((dir + "/.config.json.tmp").c_str());
    undo_dirs();
    throw;
  }
  return Bundle{rec, dir, rootfs, created_dir};
}

void remove_bundle_files(const Bundle& b) noexcept {
  ::unlink((b.dir + "/config.json").c_str());
  ::rmdir(b.rootfs.c_str());
  if (b.created_dir) ::rmdir(b.dir.c_str());
}

namespace {

int run_bundle(Globals& g, std::vector<std::string>& args) {
  auto opts = parse_options(args, {{"name", true}}, g);
  if (args.size() < 2) throw UsageError("wants IMAGE and DIR (see 'layerctl bundle --help')");
  BundleRequest req;
  req.image = args[0];
  req.dir = absolute_path(args[1]);
  req.command.assign(args.begin() + 2, args.end());
  req.name = opts.count("name") ? opts["name"] : "";
  if (!req.name.empty() && !valid_container_name(req.name))
    throw UsageError("bad --name '" + req.name + "' (letters, digits, '_', '.', '-'; at most 64)");

  store::Store store = store::Store::open(g.root, store::LockMode::Shared);
  const Bundle b = make_bundle(store, req);
  const store::ContainerRecord& rec = b.rec;
  const std::string& dir = b.dir;
  const std::string& rootfs = b.rootfs;
  if (g.json) {
    nlohmann::json j = {{"id", rec.id},
                        {"name", rec.name},
                        {"image", rec.image},
                        {"bundle", dir},
                        {"rootfs", rootfs},
                        {"pid", rec.pid},
                        {"config", dir + "/config.json"}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("%s\n", rec.id.c_str());
  }
  return 0;
}

const Command::Register kRegister({
    "bundle",
    "mount a container as an OCI runtime bundle (for runc, crun)",
    "Usage: layerctl bundle IMAGE DIR [--name NAME] [-- COMMAND [ARG...]]\n"
    "\n"
    "Creates a container from IMAGE and mounts it at DIR/rootfs exactly as\n"
    "'layerctl mount' does, then writes DIR/config.json, an OCI runtime spec:\n"
    "process args from the image's Entrypoint and Cmd (COMMAND replaces Cmd),\n"
    "Env, WorkingDir and User (names resolved in the image's /etc/passwd and\n"
    "/etc/group), runc's default mounts, namespaces (pid, ipc, uts, mount,\n"
    "network) and capabilities, the container's name as hostname. DIR is created,\n"
    "or must be an empty directory. Then: 'runc run -b DIR ID'.\n"
    "\n"
    "  --name NAME    a name for the container (default: its short id)\n"
    "  --json         print id, name, image, bundle, rootfs and daemon pid as JSON\n"
    "\n"
    "'layerctl umount DIR' (or DIR/rootfs, or NAME) unmounts it and 'layerctl rm\n"
    "NAME' removes it, like any container; config.json stays in DIR.\n",
    run_bundle,
});

}  // namespace
}  // namespace layer::cli
