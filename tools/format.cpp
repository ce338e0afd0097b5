#include "format.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "command.hpp"

namespace layer::cli {

std::string human_bytes(uint64_t n) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  if (n < 1024) return std::to_string(n) + " B";
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf,
                v < 10    ? "%.2f %s"
                : v < 100 ? "%.1f %s"
                          : "%.0f %s",
                v, kUnits[u]);
  return buf;
}

std::string human_rate(double bps) {
  return human_bytes(static_cast<uint64_t>(bps > 0 ? bps : 0)) + "/s";
}

std::string human_seconds(double s) {
  char buf[32];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%.1fs", s);
  } else {
    int m = static_cast<int>(s / 60);
    std::snprintf(buf, sizeof buf, "%dm%02ds", m, static_cast<int>(s - m * 60));
  }
  return buf;
}

std::string short_id(const std::string& hex) {
  return hex.substr(0, 12);
}

void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], r[i].size());
    }
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 3, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
}

uint64_t parse_size(const std::string& option, const std::string& v, bool zero_ok) {
  char* end = nullptr;
  errno = 0;
  unsigned long long n = std::strtoull(v.c_str(), &end, 10);
  std::string unit = end ? end : "";
  uint64_t mul = 1;
  if (unit == "k" || unit == "K" || unit == "KiB")
    mul = 1ull << 10;
  else if (unit == "m" || unit == "M" || unit == "MiB")
    mul = 1ull << 20;
  else if (unit == "g" || unit == "G" || unit == "GiB")
    mul = 1ull << 30;
  else if (!unit.empty())
    mul = 0;
  if (v.empty() || v[0] == '-' || errno || mul == 0 || (n == 0 && !zero_ok) || n > UINT64_MAX / mul)
    throw UsageError(option + " wants a size like 5242880, 512K or 16M, not '" + v + "'");
  return n * mul;
}

}  // namespace layer::cli
