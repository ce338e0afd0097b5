// layerctl's subcommand registry. Each tools/cmd_*.cpp defines one command and
// registers it with a static `Command::Register`. Commands run single-threaded
// from main; they throw layer::Error on failure and UsageError on bad usage.
#pragma once

#include <getopt.h>

#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace layer::cli {

// Bad command line: main prints "layerctl: CMD: message" and exits 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Options every command takes, parsed before the command's own.
struct Globals {
  std::string root;  // --root, LAYERFS_ROOT, or the default for this user
  bool json = false;
  bool quiet = false;
};

struct Command {
  std::string name;
  std::string summary;  // one line for `layerctl --help`
  std::string usage;    // full text for `layerctl CMD --help`
  std::function<int(Globals&, std::vector<std::string>&)> run;

  static std::map<std::string, Command>& all();
  struct Register {
    explicit Register(Command c) { all().emplace(c.name, std::move(c)); }
  };
};

// A small getopt_long front end: parses `args` (argv without the command name)
// for the given long options, fills `values` (name → value, "" for flags,
// repeated options joined by '\n') and leaves the positional arguments in
// `args`. Understands --root/--json/--quiet anywhere and fills `g`.
// Throws UsageError for unknown options or missing values.
struct OptSpec {
  const char* name;
  bool has_arg;
  char short_name = 0;
  bool optional_arg = false;  // with has_arg: only --name=VALUE takes one; bare --name gives ""
};
std::map<std::string, std::string> parse_options(std::vector<std::string>& args,
                                                 const std::vector<OptSpec>& specs, Globals& g);

// Default store root: LAYERFS_ROOT, /var/lib/layerfs for root,
// $XDG_DATA_HOME/layerfs (or ~/.local/share/layerfs) otherwise.
std::string default_root();

// True when stderr is a terminal (progress lines are drawn only then).
bool stderr_is_tty();

}  // namespace layer::cli
