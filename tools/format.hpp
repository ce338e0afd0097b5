// Small text helpers shared by layerctl's commands: human sizes, rates,
// durations, short ids, sizes given to options and table columns. Stateless; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace layer::cli {

std::string human_bytes(uint64_t n);           // "0 B", "512 B", "1.5 KiB", "12.3 MiB"
std::string human_rate(double bytes_per_sec);  // "12.3 MiB/s"
std::string human_seconds(double s);           // "0.8s", "1m02s"
std::string short_id(const std::string& hex);  // the first 12 hex digits
// A size or rate as given to an option: bytes, or with K/KiB, M/MiB, G/GiB.
// Throws UsageError naming `option` for anything else, and for 0 unless
// `zero_ok`.
uint64_t parse_size(const std::string& option, const std::string& v, bool zero_ok = false);

// Prints rows as left-aligned columns separated by three spaces.
void print_table(const std::vector<std::vector<std::string>>& rows);

}  // namespace layer::cli
