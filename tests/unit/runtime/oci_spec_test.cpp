#include "runtime/oci_spec.hpp"

#include <catch2/catch.hpp>

#include "util/error.hpp"

using layer::Error;
using layer::runtime::ImageProcess;
using layer::runtime::OciSpec;
using layer::runtime::ProcessUser;
using json = nlohmann::ordered_json;
using Strings = std::vector<std::string>;

TEST_CASE("image process: the config fields") {
  auto p = ImageProcess::parse(R"({"architecture":"amd64","os":"linux","config":{
      "Entrypoint":["/bin/app","--flag"],"Cmd":["serve"],"Env":["A=1","PATH=/x"],
      "WorkingDir":"/srv","User":"app:staff","Labels":{"x":"y"}},
      "rootfs":{"type":"layers","diff_ids":[]}})");
  CHECK(p.entrypoint == Strings{"/bin/app", "--flag"});
  CHECK(p.cmd == Strings{"serve"});
  CHECK(p.env == Strings{"A=1", "PATH=/x"});
  CHECK(p.working_dir == "/srv");
  CHECK(p.user == "app:staff");
}

TEST_CASE("image process: absent and null fields are empty") {
  for (const char* doc :
       {R"({})", R"({"config":null})", R"({"config":{"Cmd":null,"Entrypoint":null,"Env":null}})"}) {
    INFO(doc);
    auto p = ImageProcess::parse(doc);
    CHECK(p.cmd.empty());
    CHECK(p.entrypoint.empty());
    CHECK(p.env.empty());
    CHECK(p.user.empty());
  }
}

TEST_CASE("image process: must-fail rows") {
  const char* rows[] = {
      "",
      "[]",
      "{",
      R"({"config":[]})",
      R"({"config":{"Cmd":"sh"}})",
      R"({"config":{"Cmd":["sh",1]}})",
      R"({"config":{"Env":["NOEQUALS"]}})",
      R"({"config":{"Env":["=v"]}})",
      R"({"config":{"User":0}})",
      R"({"config":{"WorkingDir":["/"]}})",
      "{\"config\":{\"Cmd\":[\"a\\u0000b\"]}}",
  };
  for (const char* r : rows) {
    INFO(r);
    CHECK_THROWS_AS(ImageProcess::parse(r), Error);
  }
}

TEST_CASE("oci spec: args, env and cwd from the image") {
  ImageProcess p;
  p.entrypoint = {"/bin/app"};
  p.cmd = {"serve", "--port", "80"};
  p.env = {"A=1"};
  ProcessUser u;
  u.uid = 1000;
  u.gid = 50;
  u.additional_gids = {29};
  u.home = "/home/app";

  auto s = OciSpec::from_image(p, u, {});
  CHECK(s.args == Strings{"/bin/app", "serve", "--port", "80"});
  CHECK(s.env == Strings{layer::runtime::kDefaultPath, "A=1", "HOME=/home/app"});
  CHECK(s.cwd == "/");

  // A command given replaces Cmd and keeps the Entrypoint.
  s = OciSpec::from_image(p, u, {"check"});
  CHECK(s.args == Strings{"/bin/app", "check"});

  // The image's PATH and HOME win; a relative WorkingDir is from the root.
  p.env = {"PATH=/opt/bin", "HOME=/data"};
  p.working_dir = "srv/app";
  s = OciSpec::from_image(p, u, {});
  CHECK(s.env == Strings{"PATH=/opt/bin", "HOME=/data"});
  CHECK(s.cwd == "/srv/app");

  // Only Cmd; then nothing at all.
  p.entrypoint.clear();
  s = OciSpec::from_image(p, ProcessUser{}, {});
  CHECK(s.args == Strings{"serve", "--port", "80"});
  p.cmd.clear();
  CHECK_THROWS_AS(OciSpec::from_image(p, ProcessUser{}, {}), Error);
  CHECK(OciSpec::from_image(p, ProcessUser{}, {"sh"}).args == Strings{"sh"});
}

TEST_CASE("oci spec: the config.json document") {
  ImageProcess p;
  p.cmd = {"/bin/sh", "-c", "echo hi"};
  ProcessUser u;
  u.uid = 1000;
  u.gid = 1000;
  u.additional_gids = {29, 44};
  auto s = OciSpec::from_image(p, u, {});
  s.hostname = "web";
  s.root_path = "/b/rootfs";
  s.annotations = {{"io.layerfs.container", "abc"}};
  json j = s.to_json();
  CHECK(j["ociVersion"] == "1.0.2");
  CHECK(j["process"]["terminal"] == false);
  CHECK(j["process"]["args"] == json(Strings{"/bin/sh", "-c", "echo hi"}));
  CHECK(j["process"]["user"] == json{{"uid", 1000}, {"gid", 1000}, {"additionalGids", {29, 44}}});
  CHECK(j["process"]["cwd"] == "/");
  CHECK(j["process"]["capabilities"]["bounding"] ==
        json(Strings{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}));
  CHECK(j["process"]["noNewPrivileges"] == true);
  CHECK(j["root"] == json{{"path", "/b/rootfs"}, {"readonly", false}});
  CHECK(j["hostname"] == "web");
  CHECK(j["annotations"]["io.layerfs.container"] == "abc");

  Strings dests;
  for (const auto& m : j["mounts"]) dests.push_back(m["destination"]);
  CHECK(dests ==
        Strings{"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"});
  for (const auto& m : j["mounts"])
    if (m["destination"] == "/sys") CHECK(m["options"].back() == "ro");
  Strings ns;
  for (const auto& n : j["linux"]["namespaces"]) ns.push_back(n["type"]);
  CHECK(ns == Strings{"pid", "network", "ipc", "uts", "mount"});
  CHECK(j["linux"]["maskedPaths"].size() == 10);

  // Root without supplementary groups: no additionalGids key.
  s.user = ProcessUser{};
  CHECK_FALSE(s.to_json()["process"]["user"].contains("additionalGids"));
}
