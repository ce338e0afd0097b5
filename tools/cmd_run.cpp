// layerctl run: bundle + `runc run` + cleanup in one command, like `podman
// run`: the container's output on ours, its exit status as ours.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "bundle.hpp"
#include "command.hpp"
#include "container_mount.hpp"
#include "container_state.hpp"
#include "store/store.hpp"
#include "util/error.hpp"
#include "util/unique_fd.hpp"

namespace layer::cli {
namespace {

// The runtime child, for the forwarding handler; 0 when none runs.
volatile sig_atomic_t g_runtime_pid = 0;

void forward_signal(int sig) {
  if (g_runtime_pid > 0) ::kill(static_cast<pid_t>(g_runtime_pid), sig);
}

// Where bundles of `run` live while their container runs: a tmpfs that a
// reboot clears, private to the user.
std::string bundles_dir() {
  std::string base;
  if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x && *x) {
    base = std::string(x) + "/layerfs";
  } else if (::geteuid() == 0) {
    base = "/run/layerfs";
  } else {
    base = "/tmp/layerfs-" + std::to_string(::geteuid());
  }
  if (::mkdir(base.c_str(), 0700) != 0 && errno != EEXIST) throw Error("'" + base + "'", errno);
  return base;
}

// Runs `argv` with our stdio and returns its wait status. SIGINT and SIGQUIT
// from the terminal reach the runtime (same process group) and are ignored
// here; SIGTERM and SIGHUP sent to us are forwarded to it. Throws Error when
// the runtime cannot be started.
int run_runtime(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) throw_errno("pipe");
  UniqueFd rd(p[0]), wr(p[1]);
  struct sigaction ign {}, fwd {}, old_int {}, old_quit {}, old_term {}, old_hup {};
  ign.sa_handler = SIG_IGN;
  fwd.sa_handler = forward_signal;
  ::sigaction(SIGINT, &ign, &old_int);
  ::sigaction(SIGQUIT, &ign, &old_quit);
  ::sigaction(SIGTERM, &fwd, &old_term);
  ::sigaction(SIGHUP, &fwd, &old_hup);
  auto restore = [&] {
    g_runtime_pid = 0;
    ::sigaction(SIGINT, &old_int, nullptr);
    ::sigaction(SIGQUIT, &old_quit, nullptr);
    ::sigaction(SIGTERM, &old_term, nullptr);
    ::sigaction(SIGHUP, &old_hup, nullptr);
  };
  pid_t pid = ::fork();
  if (pid < 0) {
    int err = errno;
    restore();
    throw Error("fork", err);
  }
  if (pid == 0) {
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGQUIT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    ::signal(SIGHUP, SIG_DFL);
    ::execvp(args[0], args.data());
    int err = errno;
    ssize_t ignored = ::write(wr.get(), &err, sizeof err);
    (void)ignored;
    ::_exit(127);
  }
  g_runtime_pid = pid;
  wr.reset();
  int exec_errno = 0;
  ssize_t n;
  do {
    n = ::read(rd.get(), &exec_errno, sizeof exec_errno);
  } while (n < 0 && errno == EINTR);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  restore();
  if (n == static_cast<ssize_t>(sizeof exec_errno))
    throw Error("runtime '" + argv[0] + "'", exec_errno);
  return status;
}

int run_run(Globals& g, std::vector<std::string>& args) {
  auto opts = parse_options(args, {{"rm", false}, {"name", true}, {"runtime", true}}, g);
  if (args.empty()) throw UsageError("wants IMAGE (see 'layerctl run --help')");
  const bool remove = opts.count("rm") > 0;
  const std::string runtime = opts.count("runtime") ? opts["runtime"] : "runc";
  BundleRequest req;
  req.image = args[0];
  req.command.assign(args.begin() + 1, args.end());
  req.name = opts.count("name") ? opts["name"] : "";
  if (!req.name.empty() && !valid_container_name(req.name))
    throw UsageError("bad --name '" + req.name + "' (letters, digits, '_', '.', '-'; at most 64)");

  std::string dir = bundles_dir() + "/run-XXXXXX";
  if (!::mkdtemp(dir.data())) throw Error("'" + dir + "'", errno);
  req.dir = dir;
  Bundle b;
  try {
    // The store lock is not held while the container runs (gc may wait on it).
    store::Store st = store::Store::open(g.root, store::LockMode::Shared);
    b = make_bundle(st, req);
  } catch (...) {
    ::rmdir(dir.c_str());
    throw;
  }

  int status = 0;
  std::string failure;
  try {
    status = run_runtime({runtime, "run", "--bundle", dir, b.rec.id});
  } catch (const Error& e) {
    failure = e.line();
  }

  store::Store st = store::Store::open(g.root, store::LockMode::Shared);
  if (remove) {
    discard_container(st, b.rec);
  } else {
    auto c = st.find_container(b.rec.id);
    if (c) unmount_container(st, *c);
  }
  remove_bundle_files(b);
  ::rmdir(dir.c_str());
  if (!failure.empty()) throw Error(failure);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

const Command::Register kRegister({
    "run",
    "run a command in a new container of an image (with runc)",
    "Usage: layerctl run [--rm] [--name NAME] [--runtime PATH] IMAGE [-- COMMAND [ARG...]]\n"
    "\n"
    "Creates a container from IMAGE, mounts it as an OCI runtime bundle (as\n"
    "'layerctl bundle' does, in a directory under $XDG_RUNTIME_DIR/layerfs, or\n"
    "/run/layerfs for root), runs it with 'runc run' on this\n"
    "terminal and unmounts it when its process exits. Exits with the container's\n"
    "exit status (128+N when it was killed by signal N); Ctrl-C goes to the\n"
    "container. COMMAND replaces the image's Cmd; the image's Entrypoint, Env,\n"
    "WorkingDir and User are kept.\n"
    "\n"
    "  --rm           remove the container (and every change made in it) afterwards;\n"
    "                 without it the container stays, stopped: 'layerctl start NAME\n"
    "                 DIR' mounts it again, 'layerctl commit NAME IMAGE' keeps its\n"
    "                 changes, 'layerctl rm NAME' removes it\n"
    "  --name NAME    a name for the container (default: its short id)\n"
    "  --runtime PATH the OCI runtime (default: runc from PATH; crun works where\n"
    "                 its cgroup setup does)\n",
    run_run,
});

}  // namespace
}  // namespace layer::cli
