// layerctl login: checks credentials against a registry and stores them in
// the containers auth.json format (the file podman, skopeo and buildah read).
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "command.hpp"
#include "registry/auth_file.hpp"
#include "registry/registry_source.hpp"
#include "registry_flags.hpp"
#include "util/error.hpp"

namespace layer::cli {
namespace {

// Reads one line from the terminal, echo off if `secret`. Throws UsageError
// when there is no terminal to ask.
std::string prompt(const std::string& what, bool secret) {
  FILE* tty = std::fopen("/dev/tty", "r+e");
  if (!tty)
    throw UsageError(what + " not given and no terminal to ask (use --username/--password-stdin)");
  std::fprintf(tty, "%s: ", what.c_str());
  std::fflush(tty);
  termios old{};
  bool restore = false;
  if (secret && ::tcgetattr(fileno(tty), &old) == 0) {
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    restore = ::tcsetattr(fileno(tty), TCSAFLUSH, &quiet) == 0;
  }
  char buf[4096];
  bool ok = std::fgets(buf, sizeof buf, tty) != nullptr;
  if (restore) {
    ::tcsetattr(fileno(tty), TCSAFLUSH, &old);
    std::fprintf(tty, "\n");
  }
  std::fclose(tty);
  if (!ok) throw UsageError(what + ": nothing entered");
  std::string s(buf);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

int run_login(Globals& g, std::vector<std::string>& args) {
  std::vector<OptSpec> specs = {{"username", true, 'u'},
                                {"password", true, 'p'},
                                {"password-stdin", false},
                                {"get-login", false}};
  for (const auto& f : registry_flags()) specs.push_back(f);
  auto v = parse_options(args, specs, g);
  if (args.size() != 1) throw UsageError("want exactly one REGISTRY");
  registry::RegistryOptions opt = registry_options(v);
  std::string key = registry::registry_key(args[0]);
  std::string file = registry::primary_auth_file(opt.auth_file);

  if (v.count("get-login")) {
    auto found = registry::find_credentials(
        key.substr(0, key.find('/')),
        key.find('/') == std::string::npos ? std::string() : key.substr(key.find('/') + 1), "",
        opt.auth_file);
    if (!found.found)
      throw Error("'" + key + "': not logged in (looked in " + found.tried_str() + ")");
    std::printf("%s\n", found.found->username.c_str());
    return 0;
  }
  if (v.count("password") && v.count("password-stdin"))
    throw UsageError("--password and --password-stdin exclude each other");
  std::string user = v.count("username") ? v["username"] : prompt("Username", false);
  std::string pass;
  if (v.count("password")) {
    pass = v["password"];
  } else if (v.count("password-stdin")) {
    std::getline(std::cin, pass);
    while (!pass.empty() && (pass.back() == '\r' || pass.back() == '\n')) pass.pop_back();
  } else {
    pass = prompt("Password", true);
  }
  if (user.empty() || user.find(':') != std::string::npos)
    throw UsageError("the user name must be non-empty and hold no ':'");
  if (pass.empty()) throw UsageError("empty password");

  opt.creds = user + ":" + pass;
  registry::check_login(key, opt);
  registry::AuthFile f = registry::AuthFile::load(file);
  f.set(key, user, pass);
  f.save();
  if (!g.quiet)
    std::printf("Login Succeeded! (credentials for %s stored in %s)\n", key.c_str(), file.c_str());
  return 0;
}

const Command::Register kRegister({
    "login",
    "log in to a registry (stores credentials in auth.json)",
    "Usage: layerctl login [OPTIONS] REGISTRY\n\n"
    "Checks the credentials against REGISTRY (host[:port], or docker.io) the way a\n"
    "pull authenticates, then stores them in the containers auth.json format.\n\n"
    "Options:\n"
    "  -u, --username USER    user name (asked on the terminal if absent)\n"
    "  -p, --password PASS    password (visible to other users: prefer --password-stdin)\n"
    "  --password-stdin       read the password from standard input\n"
    "  --get-login            print the user name stored for REGISTRY\n"
    "  --authfile FILE        the file to write (default $REGISTRY_AUTH_FILE, else\n"
    "                         ${XDG_RUNTIME_DIR}/containers/auth.json)\n"
    "  --tls-verify=false     do not verify the registry's TLS certificate\n"
    "  --cert-dir DIR         CAs (*.crt) and client certificate (*.cert, *.key) for TLS\n"
    "  --insecure-registry HOST  allow plain HTTP to HOST[:PORT] (loopback always is)\n",
    run_login,
});

}  // namespace
}  // namespace layer::cli
