// layerctl: the command-line front end of the layer store and layerfs.
#include <limits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "command.hpp"
#include "util/error.hpp"

namespace layer::cli {

std::map<std::string, Command>& Command::all() {
  static std::map<std::string, Command> commands;
  return commands;
}

std::string default_root() {
  if (const char* r = std::getenv("LAYERFS_ROOT"); r && *r) return r;
  if (::geteuid() == 0) return "/var/lib/layerfs";
  if (const char* x = std::getenv("XDG_DATA_HOME"); x && *x) return std::string(x) + "/layerfs";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/tmp") + "/.local/share/layerfs";
}

bool stderr_is_tty() {
  return ::isatty(2) == 1;
}

std::map<std::string, std::string> parse_options(std::vector<std::string>& args,
                                                 const std::vector<OptSpec>& specs, Globals& g) {
  std::vector<OptSpec> all = specs;
  all.push_back({"root", true});
  all.push_back({"json", false});
  all.push_back({"quiet", false, 'q'});
  std::vector<struct option> longopts;
  std::string shortopts = "+";  // stop at the first positional? no: permute below
  shortopts = "";
  for (const auto& s : all) {
    int has = !s.has_arg ? no_argument : s.optional_arg ? optional_argument : required_argument;
    longopts.push_back({s.name, has, nullptr, 0});
    if (s.short_name) {
      shortopts += s.short_name;
      if (s.has_arg) shortopts += ':';
    }
  }
  longopts.push_back({nullptr, 0, nullptr, 0});

  std::vector<std::string> storage;
  storage.push_back("layerctl");
  for (auto& a : args) storage.push_back(a);
  std::vector<char*> argv;
  for (auto& s : storage) argv.push_back(s.data());
  argv.push_back(nullptr);

  std::map<std::string, std::string> values;
  optind = 0;  // full reinitialisation of getopt
  opterr = 0;
  int idx = 0;
  int c;
  while ((c = getopt_long(static_cast<int>(argv.size() - 1), argv.data(), (":" + shortopts).c_str(),
                          longopts.data(), &idx)) != -1) {
    std::string name;
    if (c == 0) {
      name = longopts[static_cast<size_t>(idx)].name;
    } else if (c == '?') {
      std::string bad = optopt ? std::string("-") + static_cast<char>(optopt)
                               : std::string(argv[static_cast<size_t>(optind - 1)]);
      throw UsageError("unknown option '" + bad + "'");
    } else if (c == ':') {
      throw UsageError(std::string("option '") + argv[static_cast<size_t>(optind - 1)] +
                       "' needs a value");
    } else {
      for (const auto& s : all)
        if (s.short_name == c) name = s.name;
    }
    std::string v = optarg ? optarg : "";
    if (name == "root")
      g.root = v;
    else if (name == "json")
      g.json = true;
    else if (name == "quiet")
      g.quiet = true;
    else if (values.count(name))
      values[name] += "\n" + v;
    else
      values[name] = v;
  }
  std::vector<std::string> rest;
  for (size_t i = static_cast<size_t>(optind); i < argv.size() - 1; ++i) rest.push_back(argv[i]);
  args = rest;
  return values;
}

namespace {

#ifdef LAYERCTL_FULL
// This layerctl holds only the commands that start and stop containers
// (mount, bundle, umount, rm, start, ps): without the registry, archive and
// commit code it loads a third of the shared libraries (no libcurl and its
// thirty), which was most of the time a mount or an unmount took. Every
// other command, and the full help, is run by the complete layerctl
// (LAYERCTL_FULL, beside this binary in a build tree), with the same argv.
[[noreturn]] void run_full(char** argv) {
  std::string full = LAYERCTL_FULL;
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n > 0) {
    std::string self(buf, static_cast<size_t>(n));
    std::string beside = self.substr(0, self.rfind('/')) + "/layerctl-full";
    if (::access(beside.c_str(), X_OK) == 0) full = beside;
  }
  ::execv(full.c_str(), argv);
  std::fprintf(stderr, "layerctl: cannot run '%s': %s\n", full.c_str(), std::strerror(errno));
  std::exit(127);
}
#endif

void print_help() {
  std::printf(
      "Usage: layerctl [--root DIR] COMMAND [OPTIONS] [ARGS]\n\n"
      "layerfs: a content-addressable container image layer store and FUSE union filesystem.\n\n"
      "Commands:\n");
  for (const auto& [name, c] : Command::all())
    std::printf("  %-10s %s\n", name.c_str(), c.summary.c_str());
  std::printf("  %-10s %s\n", "help", "show a command's usage (as 'layerctl COMMAND --help')");
  std::printf(
      "\nGlobal options:\n"
      "  --root DIR   store root (default: $LAYERFS_ROOT, /var/lib/layerfs as root)\n"
      "  --json       machine-readable output where a command lists things\n"
      "  -q, --quiet  no progress output\n"
      "\nRun 'layerctl help COMMAND' (or 'layerctl COMMAND --help') for a command's options.\n");
}

}  // namespace
}  // namespace layer::cli

int main(int argc, char** argv) {
  using namespace layer::cli;
  std::vector<std::string> args(argv + 1, argv + argc);
  Globals g;
  // Global options before the command name.
  while (!args.empty() && args[0].rfind("-", 0) == 0) {
    if (args[0] == "--help" || args[0] == "-h") {
#ifdef LAYERCTL_FULL
      run_full(argv);
#endif
      print_help();
      return 0;
    }
    if (args[0] == "--version") {
      std::printf("layerctl 0.1.0\n");
      return 0;
    }
    if (args[0] == "--root" && args.size() > 1) {
      g.root = args[1];
      args.erase(args.begin(), args.begin() + 2);
    } else if (args[0].rfind("--root=", 0) == 0) {
      g.root = args[0].substr(7);
      args.erase(args.begin());
    } else if (args[0] == "--json") {
      g.json = true;
      args.erase(args.begin());
    } else if (args[0] == "-q" || args[0] == "--quiet") {
      g.quiet = true;
      args.erase(args.begin());
    } else {
      std::fprintf(stderr, "layerctl: unknown option '%s'\n", args[0].c_str());
      return 2;
    }
  }
  if (args.empty()) {
#ifdef LAYERCTL_FULL
    run_full(argv);
#endif
    print_help();
    return 2;
  }
  std::string name = args[0];
  args.erase(args.begin());
  // `layerctl help [COMMAND]` is `layerctl [COMMAND] --help`.
  if (name == "help") {
#ifdef LAYERCTL_FULL
    if (args.size() != 1 || !Command::all().count(args[0])) run_full(argv);
#endif
    if (args.empty()) {
      print_help();
      return 0;
    }
    if (args.size() > 1) {
      std::fprintf(stderr, "layerctl: help: wants at most one COMMAND\n");
      return 2;
    }
    name = args[0];
    args = {"--help"};
  }
  auto it = Command::all().find(name);
#ifdef LAYERCTL_FULL
  if (it == Command::all().end()) run_full(argv);
#endif
  if (it == Command::all().end()) {
    std::fprintf(stderr, "layerctl: unknown command '%s' (see 'layerctl --help')\n", name.c_str());
    return 2;
  }
  for (const auto& a : args) {
    if (a == "--") break;
    if (a == "--help" || a == "-h") {
      std::printf("%s", it->second.usage.c_str());
      return 0;
    }
  }
  if (g.root.empty()) g.root = default_root();
  try {
    return it->second.run(g, args);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "layerctl: %s: %s\n", name.c_str(), e.what());
    return 2;
  } catch (const layer::Error& e) {
    std::fprintf(stderr, "layerctl: %s: %s\n", name.c_str(), e.line().c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "layerctl: %s: %s\n", name.c_str(), e.what());
    return 1;
  }
}
