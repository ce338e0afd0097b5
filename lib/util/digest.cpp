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

Hasher::Hasher(std::string_view algorithm) : ctx_(EVP_MD_CTX_new()), algorithm_(algorithm) {
  const EVP_MD* md = algorithm == "sha256"   ? EVP_sha256()
                     : algorithm == "sha512" ? EVP_sha512()
                                             : nullptr;
  if (!md) throw Error("unsupported digest algorithm '" + algorithm_ + "'");
  if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), md, nullptr) != 1) throw Error("EVP init", ENOMEM);
}

void Hasher::update(const void* data, size_t len) { EVP_DigestUpdate(ctx_.get(), data, len); }

Digest Hasher::finish() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx_.get(), md, &n);
  return Digest{algorithm_, hex_encode(std::string_view(reinterpret_cast<const char*>(md), n))};
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

Digest Hasher::of(std::string_view data, std::string_view algorithm) {
  Hasher h(algorithm);
  h.update(data);
  return h.finish();
}

}  // namespace layer
