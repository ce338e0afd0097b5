#include "mount_options.hpp"

#include <catch2/catch.hpp>

#include "util/error.hpp"

using layer::Error;
using layer::overlay::IdMap;
using layer::fuse::MountOptions;
using layer::fuse::split_escaped;

TEST_CASE("mount options: the fuse-overlayfs set") {
  MountOptions o;
  o.parse("lowerdir=/a:/b\\:c,upperdir=/u,workdir=/w,fsync=0,squash_to_uid=5");
  o.parse("noacl,static_nlink,threaded=1,xattr_permissions=0,allow_other,nodev,fsname=x");
  o.parse("redirect_dir=off,metacopy=on,volatile,noxattrs=1");
  o.validate();
  CHECK(o.core.lowerdirs == std::vector<std::string>{"/a", "/b:c"});
  CHECK(o.core.upperdir == "/u");
  CHECK(o.core.workdir == "/w");
  CHECK_FALSE(o.core.fsync);
  CHECK(o.core.squash_to_uid == 5);
  CHECK_FALSE(o.acl);
  CHECK(o.core.static_nlink);
  CHECK_FALSE(o.xattrs);
  CHECK(o.fuse_options == std::vector<std::string>{"allow_other", "nodev", "fsname=x"});
}

TEST_CASE("mount options: escaped comma in a path") {
  MountOptions o;
  o.parse("lowerdir=/a\\,b:/c");
  CHECK(o.core.lowerdirs == std::vector<std::string>{"/a,b", "/c"});
}

TEST_CASE("mount options: read-only without upperdir") {
  MountOptions o;
  o.parse("lowerdir=/a,ro");
  o.validate();
  CHECK(o.core.read_only);
  CHECK(o.core.upperdir.empty());
}

TEST_CASE("mount options: what podman, mount(8) and fstab pass, as fuse-overlayfs takes it") {
  MountOptions o;
  o.parse("lowerdir=/a,upperdir=/u,workdir=/w,,volatile");  // podman 4.3's exact string
  o.parse("nodev,context=\"system_u:object_r:container_file_t:s0:c1,c2\"");
  o.parse("defaults,nofail,_netdev,x-systemd.automount,comment=x,lazytime,noauto,debug");
  o.validate();
  CHECK(o.debug);
  CHECK_FALSE(o.core.fsync);
  // Only what the kernel's FUSE mount takes goes to libfuse: no context= (the
  // kernel refuses it without SELinux), no lazytime, no fstab words.
  CHECK(o.fuse_options == std::vector<std::string>{"nodev"});
}

TEST_CASE("mount options: must-fail rows name the option") {
  struct Row {
    const char* opts;
    const char* mentions;
  };
  const Row rows[] = {
      {"lowerdir=/a,bogus", "bogus"},
      {"lowerdir=/a,fsync=maybe", "fsync"},
      {"lowerdir=", "lowerdir"},
      {"lowerdir=/a::/b", "lowerdir"},
      {"lowerdir=/a,squash_to_uid=-1", "squash_to_uid"},
      {"lowerdir=/a,xattr_permissions=7", "xattr_permissions"},
      {"lowerdir=/a,uidmapping=0:1000", "uidmapping"},
      {"lowerdir=/a,uidmapping=0:x:5", "uidmapping"},
      {"lowerdir=/a,noacl=1", "noacl"},
      {"lowerdir=/a,plugins=/x.so", "plugins"},
      {"lowerdir=/a,context=", "context"},
      {"lowerdir=/a,nofail=1", "nofail"},
      {"lowerdir=/a,debug=1", "debug"},
  };
  for (const auto& r : rows) {
    INFO(r.opts);
    MountOptions o;
    try {
      o.parse(r.opts);
      FAIL("accepted");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find(r.mentions) != std::string::npos);
    }
  }
}

TEST_CASE("mount options: bad combinations") {
  MountOptions none;
  CHECK_THROWS_AS(none.validate(), Error);
  MountOptions no_work;
  no_work.parse("lowerdir=/a,upperdir=/u");
  CHECK_THROWS_AS(no_work.validate(), Error);
  MountOptions squash;
  squash.parse("lowerdir=/a,squash_to_root,squash_to_uid=1");
  CHECK_THROWS_AS(squash.validate(), Error);
}

TEST_CASE("id map: ranges both ways, unmapped to overflow") {
  IdMap m = IdMap::parse("100000:0:65536:5000:65536:1", "t");  // disk:mount:count
  CHECK(m.to_inside(100000) == 0);
  CHECK(m.to_inside(100005) == 5);
  CHECK(m.to_inside(5000) == 65536);
  CHECK(m.to_inside(42) == 65534);
  CHECK(m.to_outside(0) == 100000);
  CHECK(m.to_outside(65536) == 5000);
  CHECK(m.to_outside(70000) == 65534);
  CHECK(IdMap().to_inside(7) == 7);
  CHECK_THROWS_AS(IdMap::parse("0:1:0", "t"), Error);
  CHECK_THROWS_AS(IdMap::parse("4294967295:0:2", "t"), Error);
}

TEST_CASE("split_escaped") {
  CHECK(split_escaped("a:b\\:c:", ':') == std::vector<std::string>{"a", "b:c", ""});
  CHECK(split_escaped("x\\\\y", ':') == std::vector<std::string>{"x\\y"});
}

TEST_CASE("mount options: atime as the kernel's mount reads it") {
  using layer::overlay::Atime;
  struct Row {
    const char* opts;
    Atime atime;
    bool nodiratime;
  };
  const Row rows[] = {
      {"lowerdir=/a", Atime::kRelatime, false},
      {"lowerdir=/a,noatime", Atime::kNoatime, false},
      {"lowerdir=/a,strictatime", Atime::kStrictatime, false},
      {"lowerdir=/a,relatime", Atime::kRelatime, false},
      {"lowerdir=/a,noatime,atime", Atime::kRelatime, false},  // atime: the default
      {"lowerdir=/a,strictatime,norelatime", Atime::kStrictatime, false},
      {"lowerdir=/a,noatime,relatime", Atime::kNoatime, false},  // bits, as mount(8) sets them
      {"lowerdir=/a,noatime,strictatime", Atime::kStrictatime, false},
      {"lowerdir=/a,strictatime,nostrictatime", Atime::kRelatime, false},
      {"lowerdir=/a,nodiratime", Atime::kRelatime, true},
      {"lowerdir=/a,nodiratime,diratime,noatime", Atime::kNoatime, false},
  };
  for (const Row& r : rows) {
    MountOptions o;
    o.parse(r.opts);
    CAPTURE(r.opts);
    CHECK(o.core.atime_rule() == r.atime);
    CHECK(o.core.nodiratime == r.nodiratime);
    CHECK(o.fuse_options.empty());  // the daemon applies them, not libfuse
  }
  MountOptions bad;
  CHECK_THROWS_AS(bad.parse("lowerdir=/a,noatime=1"), Error);
}
