#include "util/digest.hpp"

#include "util/error.hpp"

namespace layer {

namespace {
size_t hex_len(std::string_view algorithm) {
  if (algorithm == "sha256") return 64;
  if (algorithm == "sha512") return 128;
  return 0;
}
}  // namespace

bool Digest::valid(std::string_view s) {
  auto colon = s.find(':');
  if (colon == std::string_view::npos) return false;
  size_t want = hex_len(s.substr(0, colon));
  std::string_view hex = s.substr(colon + 1);
  if (want == 0 || hex.size() != want) return false;
  for (char c : hex)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

Digest Digest::parse(std::string_view s) {
  if (!valid(s)) {
    std::string shown(s.substr(0, 200));
    for (char& c : shown)
      if (static_cast<unsigned char>(c) < 0x20) c = '?';
    throw Error("invalid digest '" + shown + "'");
  }
  auto colon = s.find(':');
  return Digest{std::string(s.substr(0, colon)), std::string(s.substr(colon + 1))};
}

std::string hex_encode(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

}  // namespace layer
