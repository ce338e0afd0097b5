#include "commit/parallel_gzip.hpp"

#include <zlib.h>

#include <catch2/catch.hpp>
#include <random>
#include <string>

using layer::commit::ParallelGzip;

namespace {

std::string gzip(const std::string& in, unsigned threads, int level = -1, size_t piece = 70000) {
  std::string out;
  ParallelGzip z([&](const void* p, size_t n) { out.append(static_cast<const char*>(p), n); },
                 level, threads);
  for (size_t pos = 0; pos < in.size(); pos += piece)
    z.write(in.data() + pos, std::min(piece, in.size() - pos));
  z.finish();
  return out;
}

std::string gunzip(const std::string& in) {
  z_stream s{};
  REQUIRE(inflateInit2(&s, 16 + 15) == Z_OK);
  std::string out;
  char buf[65536];
  s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  s.avail_in = static_cast<uInt>(in.size());
  int r;
  do {
    s.next_out = reinterpret_cast<Bytef*>(buf);
    s.avail_out = sizeof buf;
    r = inflate(&s, Z_NO_FLUSH);
    REQUIRE((r == Z_OK || r == Z_STREAM_END));
    out.append(buf, sizeof buf - s.avail_out);
  } while (r != Z_STREAM_END);
  CHECK(s.avail_in == 0);  // one member, nothing after it
  inflateEnd(&s);
  return out;
}

std::string data(size_t n) {
  std::mt19937 rng(42);
  std::string s;
  s.reserve(n);
  while (s.size() < n) {
    if (rng() % 2) {
      for (int i = 0; i < 4096 && s.size() < n; ++i) s += static_cast<char>(rng());
    } else {
      for (int i = 0; i < 500 && s.size() < n; ++i) s += "line " + std::to_string(i) + "\n";
    }
  }
  s.resize(n);
  return s;
}

}  // namespace

TEST_CASE("parallel gzip: a gzip stream of the input, the same for any thread count") {
  for (size_t n :
       {size_t{0}, size_t{1}, ParallelGzip::kChunk, ParallelGzip::kChunk + 1, size_t{3'500'000}}) {
    INFO("size " << n);
    std::string in = data(n);
    std::string one = gzip(in, 1);
    CHECK(gunzip(one) == in);
    CHECK(gzip(in, 4) == one);
    CHECK(gzip(in, 3, -1, 1 << 20) == one);  // write sizes do not matter either
    if (n > 100000) CHECK(one.size() < in.size());
  }
}

TEST_CASE("parallel gzip: levels") {
  std::string in = data(2'000'000);
  std::string fast = gzip(in, 2, 1), best = gzip(in, 2, 9), stored = gzip(in, 2, 0);
  CHECK(gunzip(fast) == in);
  CHECK(gunzip(best) == in);
  CHECK(gunzip(stored) == in);
  CHECK(best.size() <= fast.size());
  CHECK(stored.size() > in.size());
  CHECK_THROWS(gzip(in, 1, 10));
}

TEST_CASE("parallel gzip: an error of the output stops it") {
  ParallelGzip z(
      [](const void*, size_t n) {
        if (n > 10) throw std::runtime_error("disk full");
      },
      -1, 2);
  std::string in = data(5'000'000);
  CHECK_THROWS_WITH(
      [&] {
        z.write(in.data(), in.size());
        z.finish();
      }(),
      "disk full");
}
