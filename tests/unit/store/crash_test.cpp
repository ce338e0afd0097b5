// Crash safety and concurrency of Store::ingest_layer (issue 2 §2, §6): a
// child process unpacking a layer is SIGKILLed at many points; afterwards
// opening the store finds the whole layer or nothing, and ingesting again
// succeeds. Two processes (and several threads) ingesting one layer at once
// both succeed and the layer is unpacked exactly once.
#include <dirent.h>
#include <openssl/evp.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <thread>

#include "../unpack/tar_builder.hpp"
#include "store/layout.hpp"
#include "store/store.hpp"
#include "unpack/unpacker.hpp"
#include "util/error.hpp"

using namespace layer;
using namespace layer::testing;
using layer::store::Ingest;
using layer::store::Layout;
using layer::store::Store;

namespace {

// path → type/mode/size/owner/mtime/content digest, for a whole tree.
std::map<std::string, std::string> tree_of(const std::string& root) {
  std::map<std::string, std::string> out;
  std::function<void(const std::string&)> walk = [&](const std::string& rel) {
    std::string p = rel.empty() ? root : root + "/" + rel;
    struct stat st;
    REQUIRE(::lstat(p.c_str(), &st) == 0);
    std::string v = std::to_string(st.st_mode) + ":" + std::to_string(st.st_size) + ":" +
                    std::to_string(st.st_uid);
    // The layer root has no tar entry here: its mtime is the unpack time.
    if (!rel.empty()) v += ":" + std::to_string(st.st_mtim.tv_sec);
    if (S_ISREG(st.st_mode)) v += ":" + Hasher::of(sys::xread_file(AT_FDCWD, p, 1 << 30, p)).hex;
    out[rel] = v;
    if (!S_ISDIR(st.st_mode)) return;
    DIR* d = ::opendir(p.c_str());
    REQUIRE(d);
    while (auto* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") walk(rel.empty() ? n : rel + "/" + n);
    }
    ::closedir(d);
  };
  walk("");
  return out;
}

size_t count_entries(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return 0;
  size_t n = 0;
  while (auto* e = ::readdir(d))
    if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") ++n;
  ::closedir(d);
  return n;
}

Blob big_layer() {
  TarBuilder tb;
  for (int d = 0; d < 8; ++d) {
    std::string dir = "d" + std::to_string(d) + "/";
    tb.dir(dir, {.mode = 0750, .mtime = 1400000000 + d});
    for (int f = 0; f < 40; ++f)
      tb.file(dir + "f" + std::to_string(f), pseudo_random(static_cast<size_t>(100 + f * 37), f),
              {.mode = 0640, .uid = 7});
  }
  for (int i = 0; i < 3; ++i) tb.file("big" + std::to_string(i), pseudo_random(2 << 20, i));
  return make_blob(tb.finish(), Filter::Gzip, "crash/test:1");
}

// Content objects on (store format 2): the big files become objects.
unpack::Options sharing() {
  unpack::Options o;
  o.share_content = true;
  return o;
}

int exit_code_of(pid_t pid, bool* killed = nullptr) {
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  if (killed) *killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_CASE("SIGKILL at any point of an ingest leaves the whole layer or nothing") {
  TempDir t;
  Blob b = big_layer();
  std::map<std::string, std::string> want;
  {
    Store ref = Store::open(t / "ref");
    StringSource src(b.bytes);
    ref.ingest_layer(b.spec, src, sharing());
    want = tree_of(ref.root() + "/" + Layout::layer_diff(b.spec.diff_id));
  }
  // How long a whole ingest takes, to spread time-based kills over it.
  auto t0 = std::chrono::steady_clock::now();
  {
    Store s = Store::open(t / "timing");
    StringSource src(b.bytes);
    s.ingest_layer(b.spec, src, sharing());
  }
  auto full = std::chrono::steady_clock::now() - t0;

  int found_whole = 0, found_nothing = 0;
  const int kByteKills = 6, kTimeKills = 8;
  for (int i = 0; i < kByteKills + kTimeKills; ++i) {
    std::string root = t / ("s" + std::to_string(i));
    uint64_t kill_at = b.bytes.size() * static_cast<uint64_t>(i) / kByteKills;
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      try {
        Store s = Store::open(root);
        StringSource src(b.bytes, 256 << 10);
        unpack::ProgressFn progress;
        if (i < kByteKills)
          progress = [&](uint64_t n) {
            if (n >= kill_at) ::raise(SIGKILL);
          };
        s.ingest_layer(b.spec, src, sharing(), progress);
        ::_exit(0);
      } catch (...) {
        ::_exit(1);
      }
    }
    if (i >= kByteKills) {
      // From just after the start to past the end (publish, fsync, return).
      auto delay = full * (i - kByteKills + 1) / kTimeKills * 11 / 10;
      std::this_thread::sleep_for(delay);
      ::kill(pid, SIGKILL);
    }
    bool killed = false;
    int code = exit_code_of(pid, &killed);
    INFO("iteration " << i << " killed " << killed << " exit " << code);
    CHECK((killed || code == 0));

    Store s = Store::open(root);
    CHECK(count_entries(root + "/tmp") == 0);  // the sweep removed the debris
    if (s.has_layer(b.spec.diff_id)) {
      ++found_whole;
      CHECK(tree_of(root + "/" + Layout::layer_diff(b.spec.diff_id)) == want);
      CHECK(s.layer_info(b.spec.diff_id)->diff_id == b.spec.diff_id);
      // No layer names a missing object (objects are published first).
      auto objects = s.layer_objects(b.spec.diff_id);
      CHECK(objects.size() == 3);
      for (const auto& o : objects) CHECK(s.has_object(o));
    } else {
      ++found_nothing;
      CHECK(count_entries(root + "/layers/sha256") == 0);
    }
    StringSource again(b.bytes);
    s.ingest_layer(b.spec, again, sharing());
    CHECK(tree_of(root + "/" + Layout::layer_diff(b.spec.diff_id)) == want);
    sys::xremove_tree(t.fd.get(), "s" + std::to_string(i));
  }
  CHECK(found_nothing >= kByteKills - 1);  // every byte-position kill is mid-unpack
  INFO("whole " << found_whole << " nothing " << found_nothing);
  CHECK(found_whole + found_nothing == kByteKills + kTimeKills);
}

TEST_CASE("two processes ingesting one layer both succeed; it is unpacked once") {
  TempDir t;
  Blob b = big_layer();
  std::string root = t / "store";
  Store::open(root);
  for (int round = 0; round < 2; ++round) {
    int go[2];
    REQUIRE(::pipe(go) == 0);
    pid_t pids[2];
    for (auto& pid : pids) {
      pid = ::fork();
      REQUIRE(pid >= 0);
      if (pid == 0) {
        ::close(go[1]);
        char c;
        if (::read(go[0], &c, 1) != 0) ::_exit(3);  // wait for the start signal (EOF)
        try {
          Store s = Store::open(root);
          StringSource src(b.bytes, 128 << 10);
          Ingest r = s.ingest_layer(b.spec, src, {});
          if (r == Ingest::AlreadyPresent && src.consumed() != 0) ::_exit(4);
          ::_exit(r == Ingest::Unpacked ? 10 : 11);
        } catch (...) {
          ::_exit(1);
        }
      }
    }
    ::close(go[0]);
    ::close(go[1]);  // both start now
    int a = exit_code_of(pids[0]), c = exit_code_of(pids[1]);
    INFO("round " << round << ": exits " << a << " " << c);
    CHECK(((a == 10 && c == 11) || (a == 11 && c == 10)));
    Store s = Store::open(root, store::LockMode::Exclusive);
    CHECK(s.has_layer(b.spec.diff_id));
    CHECK(count_entries(root + "/tmp") == 0);
    CHECK(s.layers().size() == 1);
    // Remove it for the next round.
    store::ImageRecord rec;
    rec.ref = "x";
    rec.manifest = rec.config = Hasher::of("x");
    rec.diff_ids = {b.spec.diff_id};
    s.put_image(rec);
    s.remove_image("x");
    CHECK(s.layers().empty());
  }
}

TEST_CASE("threads ingesting one layer through one Store: unpacked once") {
  TempDir t;
  Blob b = big_layer();
  Store s = Store::open(t / "store");
  std::atomic<int> unpacked{0}, present{0}, failed{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&] {
      try {
        StringSource src(b.bytes, 64 << 10);
        if (s.ingest_layer(b.spec, src, {}) == Ingest::Unpacked)
          ++unpacked;
        else
          ++present;
      } catch (...) {
        ++failed;
      }
    });
  for (auto& th : threads) th.join();
  CHECK(unpacked == 1);
  CHECK(present == 3);
  CHECK(failed == 0);
  CHECK(count_entries(t / "store/tmp") == 0);
}
