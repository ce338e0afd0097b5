#include "registry/auth_file.hpp"

#include <stdlib.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "util/error.hpp"

namespace fs = std::filesystem;
using namespace layer::registry;

namespace {

// A temporary HOME and runtime dir, with the credential env vars pointing into
// it; restores the environment when it goes.
class TempEnv {
 public:
  TempEnv() {
    char tmpl[] = "/tmp/layerfs-authtest-XXXXXX";
    root_ = ::mkdtemp(tmpl);
    for (const char* v :
         {"HOME", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "REGISTRY_AUTH_FILE", "DOCKER_CONFIG"}) {
      const char* old = ::getenv(v);
      saved_.emplace_back(v, old ? std::optional<std::string>(old) : std::nullopt);
      ::unsetenv(v);
    }
    ::setenv("HOME", (root_ / "home").c_str(), 1);
    ::setenv("XDG_RUNTIME_DIR", (root_ / "run").c_str(), 1);
  }
  ~TempEnv() {
    for (const auto& [k, v] : saved_) {
      if (v)
        ::setenv(k.c_str(), v->c_str(), 1);
      else
        ::unsetenv(k.c_str());
    }
    fs::remove_all(root_);
  }
  fs::path path(const std::string& rel) const { return root_ / rel; }
  void write(const std::string& rel, const std::string& text) const {
    fs::create_directories((root_ / rel).parent_path());
    std::ofstream(root_ / rel) << text;
  }

 private:
  fs::path root_;
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

std::string auth_entry(const std::string& user, const std::string& pass) {
  return R"({"auth": ")" + base64_encode(user + ":" + pass) + R"("})";
}

}  // namespace

TEST_CASE("base64 round trips through OpenSSL") {
  for (std::string s : {"", "a", "ab", "abc", "user:pa:ss", "\xff\x00\x01 binary"}) {
    auto d = base64_decode(base64_encode(s));
    REQUIRE(d);
    CHECK(*d == s);
  }
  CHECK(base64_encode("user:pass") == "dXNlcjpwYXNz");
  CHECK_FALSE(base64_decode("abc"));   // not a multiple of 4
  CHECK_FALSE(base64_decode("a$c="));  // bad alphabet
}

TEST_CASE("normalize_auth_key: URL-style and Docker Hub keys") {
  CHECK(normalize_auth_key("https://index.docker.io/v1/") == "docker.io");
  CHECK(normalize_auth_key("index.docker.io") == "docker.io");
  CHECK(normalize_auth_key("registry-1.docker.io") == "docker.io");
  CHECK(normalize_auth_key("docker.io") == "docker.io");
  CHECK(normalize_auth_key("http://127.0.0.1:5000/") == "127.0.0.1:5000");
  CHECK(normalize_auth_key("https://quay.io/v2/") == "quay.io");
  CHECK(normalize_auth_key("quay.io/team/app") == "quay.io/team/app");
  CHECK(normalize_auth_key("quay.io/team/") == "quay.io/team");
}

TEST_CASE("AuthFile::find picks the most specific key") {
  TempEnv env;
  env.write("a.json", R"({"auths": {
      "quay.io": )" + auth_entry("host", "p1") +
                          R"(,
      "quay.io/team": )" + auth_entry("team", "p2") +
                          R"(,
      "quay.io/team/app": )" +
                          auth_entry("app", "p3") + R"(,
      "https://index.docker.io/v1/": )" +
                          auth_entry("hub", "p4") + R"(,
      "127.0.0.1:5000": {"username": "u", "password": "p:w"}
  }})");
  AuthFile f = AuthFile::load(env.path("a.json"));
  CHECK(f.find("quay.io", "team/app")->username == "app");
  CHECK(f.find("quay.io", "team/other")->username == "team");
  CHECK(f.find("quay.io", "else/x")->username == "host");
  CHECK(f.find("quay.io", "team/app")->password == "p3");
  CHECK(f.find("docker.io", "library/debian")->username == "hub");
  CHECK(f.find("127.0.0.1:5000", "x")->password == "p:w");
  CHECK_FALSE(f.find("ghcr.io", "x"));
  CHECK_FALSE(f.find("127.0.0.1:5001", "x"));  // another port is another registry
  // The source names the file and key, never the secret.
  auto c = f.find("quay.io", "team/app");
  CHECK(c->source.find("a.json") != std::string::npos);
  CHECK(c->source.find("p3") == std::string::npos);
}

TEST_CASE("AuthFile::load refuses files that are not credentials files") {
  TempEnv env;
  CHECK_NOTHROW(AuthFile::load(env.path("missing.json")));  // missing: empty
  env.write("empty.json", "");
  CHECK_NOTHROW(AuthFile::load(env.path("empty.json")));
  for (const char* bad : {"not json", "[1,2]", R"({"auths": []})"}) {
    env.write("bad.json", bad);
    CHECK_THROWS_AS(AuthFile::load(env.path("bad.json")), layer::Error);
  }
  env.write("badauth.json", R"({"auths": {"x.io": {"auth": "!!notbase64"}}})");
  CHECK_THROWS_AS(AuthFile::load(env.path("badauth.json")).find("x.io", "r"), layer::Error);
  env.write("nocolon.json",
            R"({"auths": {"x.io": {"auth": ")" + base64_encode("nocolon") + R"("}}})");
  CHECK_THROWS_AS(AuthFile::load(env.path("nocolon.json")).find("x.io", "r"), layer::Error);
}

TEST_CASE("find_credentials: --creds, then the auth files in order") {
  TempEnv env;
  // Nothing anywhere: every source is listed as tried.
  auto none = find_credentials("127.0.0.1:5000", "x", "", "");
  CHECK_FALSE(none.found);
  REQUIRE(none.tried.size() == 3);
  CHECK(none.tried[0] == env.path("run/containers/auth.json").string());
  CHECK(none.tried[1] == env.path("home/.config/containers/auth.json").string());
  CHECK(none.tried[2] == env.path("home/.docker/config.json").string());

  env.write("home/.docker/config.json",
            R"({"auths": {"127.0.0.1:5000": )" + auth_entry("docker", "d") + "}}");
  CHECK(find_credentials("127.0.0.1:5000", "x", "", "").found->username == "docker");

  env.write("run/containers/auth.json",
            R"({"auths": {"127.0.0.1:5000": )" + auth_entry("xdg", "x") + "}}");
  auto xdg = find_credentials("127.0.0.1:5000", "x", "", "");
  CHECK(xdg.found->username == "xdg");
  CHECK(xdg.found->source.find("run/containers/auth.json") != std::string::npos);

  env.write("custom.json", R"({"auths": {"127.0.0.1:5000": )" + auth_entry("env", "e") + "}}");
  ::setenv("REGISTRY_AUTH_FILE", env.path("custom.json").c_str(), 1);
  CHECK(find_credentials("127.0.0.1:5000", "x", "", "").found->username == "env");
  CHECK(primary_auth_file("") == env.path("custom.json").string());

  env.write("flag.json", R"({"auths": {"127.0.0.1:5000": )" + auth_entry("flag", "f") + "}}");
  CHECK(find_credentials("127.0.0.1:5000", "x", "", env.path("flag.json")).found->username ==
        "flag");

  auto creds = find_credentials("127.0.0.1:5000", "x", "cli:se:cret", env.path("flag.json"));
  CHECK(creds.found->username == "cli");
  CHECK(creds.found->password == "se:cret");
  CHECK(creds.found->source == "--creds");
  CHECK_THROWS_AS(find_credentials("h", "x", "nopassword", ""), layer::Error);
  CHECK_THROWS_AS(find_credentials("h", "x", ":pass", ""), layer::Error);

  // Credentials for one registry are never offered to another.
  CHECK_FALSE(find_credentials("127.0.0.1:6000", "x", "", "").found);
}

TEST_CASE("find_credentials reports an unsupported credential helper") {
  TempEnv env;
  env.write("home/.docker/config.json", R"({"credsStore": "desktop"})");
  auto s = find_credentials("docker.io", "library/debian", "", "");
  CHECK_FALSE(s.found);
  CHECK(s.tried_str().find("credential helper 'desktop'") != std::string::npos);
}

TEST_CASE("AuthFile::save writes the same format, mode 0600, keeping other fields") {
  TempEnv env;
  env.write("run/containers/auth.json", R"({"auths": {"https://index.docker.io/v1/": )" +
                                            auth_entry("old", "o") +
                                            R"(}, "credHelpers": {"gcr.io": "gcloud"}})");
  std::string path = primary_auth_file("");
  AuthFile f = AuthFile::load(path);
  f.set("docker.io", "new", "n");
  f.set("127.0.0.1:5000", "u", "p");
  f.save();
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);

  AuthFile g = AuthFile::load(path);
  CHECK(g.find("docker.io", "library/x")->username == "new");  // replaced the URL-style key
  CHECK(g.find("127.0.0.1:5000", "r")->password == "p");
  CHECK(g.helper_for("gcr.io") == "gcloud");
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text.find("index.docker.io") == std::string::npos);
  CHECK(text.find(base64_encode("u:p")) != std::string::npos);

  CHECK(g.erase("127.0.0.1:5000"));
  CHECK_FALSE(g.erase("127.0.0.1:5000"));
  g.save();
  CHECK_FALSE(AuthFile::load(path).find("127.0.0.1:5000", "r"));
  CHECK(AuthFile::load(path).find("docker.io", "library/x"));
}
