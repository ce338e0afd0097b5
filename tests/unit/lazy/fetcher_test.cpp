// lib/lazy Fetcher: on-demand fetches are verified, shared between
// concurrent callers, carry small neighbours along, leave nothing behind on
// failure and are retried; completion fetches the rest in few requests.
#include <catch2/catch.hpp>
#include <chrono>
#include <mutex>
#include <thread>

#include "lazy/estargz_writer.hpp"
#include "lazy/fetcher.hpp"
#include "lazy/zstd_chunked_writer.hpp"
#include "lazy_fixtures.hpp"

using namespace layer;
using namespace layer::lazy;
using namespace layer::testing;

namespace {

class MemObjects : public ObjectStore {
 public:
  bool has(const Digest& d) override {
    std::lock_guard lock(mu);
    return objects.count(d) > 0;
  }
  void put(const Digest& d, const std::function<void(const Sink&)>& produce) override {
    std::string data;
    produce([&](const char* p, size_t n) { data.append(p, n); });
    std::lock_guard lock(mu);
    objects[d] = data;
  }
  std::mutex mu;
  std::map<Digest, std::string> objects;
};

// A blob served slowly, with requests logged and failures on demand.
class SlowReader : public RangeReader {
 public:
  explicit SlowReader(std::string blob) : mem(std::move(blob)) {}
  std::string read(uint64_t offset, uint64_t length) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    std::lock_guard lock(mu);
    log.push_back({offset, length});
    if (fail > 0) {
      --fail;
      throw Error("registry 127.0.0.1: connection refused");
    }
    return mem.read(offset, length);
  }
  MemReader mem;
  std::mutex mu;
  std::vector<Span> log;
  int fail = 0;
  int delay_ms = 0;
};

struct Fixture {
  std::string tar;
  std::string blob;
  Toc toc;
  Fixture(bool zstd) {
    TarBuilder tb;
    tb.dir("d");
    for (int i = 0; i < 40; ++i) tb.file("d/f" + std::to_string(i), pattern(1000 + i, i));
    tb.file("d/big", pattern(2 << 20, 99));
    tb.hardlink("d/big2", "d/big");
    tar = tb.finish();
    StringSource src(tar);
    oci::Descriptor desc;
    auto sink = [&](const char* p, size_t n) { blob.append(p, n); };
    if (zstd) {
      auto r = write_zstd_chunked(src, sink, {.level = 1, .chunk_size = 1 << 20});
      desc.media_type = "application/vnd.oci.image.layer.v1.tar+zstd";
      desc.annotations = r.annotations;
    } else {
      auto r = write_estargz(src, sink, {.level = 1, .chunk_size = 1 << 20});
      desc.media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
      desc.annotations[kEstargzTocDigest] = r.toc_digest.str();
    }
    desc.digest = Hasher::of(blob);
    desc.size = static_cast<int64_t>(blob.size());
    MemReader m(blob);
    toc = read_toc(m, *TocSource::of(desc), "layer");
  }
  size_t at(const std::string& p) const { return *toc.find(p); }
};

}  // namespace

TEST_CASE("fetcher: a miss fetches the file and its small neighbours in one request") {
  for (bool zstd : {false, true}) {
    INFO(zstd);
    Fixture fx(zstd);
    SlowReader r(fx.blob);
    MemObjects objs;
    Fetcher f(fx.toc, r, objs);
    size_t total = f.missing();
    CHECK(total == 41);
    f.ensure(fx.at("d/f10"));
    CHECK(r.log.size() == 1);
    CHECK(objs.objects.at(Hasher::of(pattern(1010, 10))) == pattern(1010, 10));
    CHECK(objs.objects.size() == 40);  // all 40 small files came along; not the big one
    CHECK(f.missing() == 1);
    f.ensure(fx.at("d/f11"));  // present: no request
    CHECK(r.log.size() == 1);
    f.ensure(fx.at("d/big2"));  // a hard link: its target's content
    CHECK(objs.objects.at(Hasher::of(pattern(2 << 20, 99))) == pattern(2 << 20, 99));
    CHECK(f.missing() == 0);
  }
}

TEST_CASE("fetcher: concurrent opens of one file share one fetch") {
  Fixture fx(false);
  SlowReader r(fx.blob);
  r.delay_ms = 100;
  MemObjects objs;
  Fetcher f(fx.toc, r, objs);
  std::vector<std::thread> ts;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t)
    ts.emplace_back([&] {
      f.ensure(fx.at("d/big"));
      ++ok;
    });
  for (auto& t : ts) t.join();
  CHECK(ok == 8);
  CHECK(r.log.size() == 1);
  CHECK(f.stats().on_demand_requests == 1);
}

TEST_CASE("fetcher: a network error fails the open, keeps nothing, and the next one retries") {
  Fixture fx(true);
  SlowReader r(fx.blob);
  MemObjects objs;
  Fetcher f(fx.toc, r, objs);
  r.fail = 1;
  CHECK_THROWS_WITH(f.ensure(fx.at("d/big")), Catch::Contains("connection refused"));
  CHECK(objs.objects.empty());
  f.ensure(fx.at("d/big"));
  CHECK(objs.has(Hasher::of(pattern(2 << 20, 99))));
}

TEST_CASE("fetcher: corrupt bytes are never stored") {
  Fixture fx(false);
  size_t i = fx.at("d/big");
  auto [lo, hi] = fx.toc.blob_range(i);
  std::string bad = fx.blob;
  // A valid gzip member of other bytes where the file's first chunk was.
  std::string forged = gzip_member(std::string(1 << 20, 'x'));
  REQUIRE(forged.size() < hi - lo);
  bad.replace(lo, forged.size(), forged);
  SlowReader r(bad);
  MemObjects objs;
  Fetcher f(fx.toc, r, objs);
  CHECK_THROWS_WITH(f.ensure(i), Catch::Contains("digest"));
  CHECK_FALSE(objs.has(Hasher::of(pattern(2 << 20, 99))));
}

TEST_CASE("fetcher: completion fetches the rest, recorded accesses first, in few requests") {
  Fixture fx(true);
  SlowReader r(fx.blob);
  MemObjects objs;
  Fetcher f(fx.toc, r, objs);
  std::atomic<bool> stop{false};
  f.complete({fx.at("d/big")}, stop);
  CHECK(f.missing() == 0);
  REQUIRE(!r.log.empty());
  CHECK(r.log.front().offset == fx.toc.blob_range(fx.at("d/big")).first);
  CHECK(r.log.size() <= 3);
  for (const auto& [d, data] : objs.objects) CHECK(Hasher::of(data) == d);
  CHECK(f.stats().bytes < fx.blob.size());
}

TEST_CASE("fetcher: completion stops when told to") {
  Fixture fx(true);
  SlowReader r(fx.blob);
  MemObjects objs;
  Fetcher f(fx.toc, r, objs);
  std::atomic<bool> stop{true};
  f.complete({}, stop);
  CHECK(r.log.empty());
}

TEST_CASE("fetcher: an open during completion waits for the batch holding its file, no deadlock") {
  Fixture fx(false);
  SlowReader r(fx.blob);
  r.delay_ms = 30;
  MemObjects objs;
  FetchOptions opt;
  opt.background = {0, 4096};  // many small background spans
  Fetcher f(fx.toc, r, objs, opt);
  std::atomic<bool> stop{false};
  std::thread bg([&] { f.complete({}, stop); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  f.ensure(fx.at("d/f30"));
  CHECK(objs.has(Hasher::of(pattern(1030, 30))));
  bg.join();
  CHECK(f.missing() == 0);
}
