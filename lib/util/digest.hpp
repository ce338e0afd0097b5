// Digest: a validated content digest ("sha256:<64 lowercase hex>", or
// sha512). Parsing refuses anything else, so a Digest is always safe to use
// as a path component. Hasher: streaming digest over OpenSSL's EVP; one
// Hasher per stream, not thread-safe.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <openssl/evp.h>

namespace layer {

struct Digest {
  std::string algorithm;  // "sha256" or "sha512"
  std::string hex;        // lowercase, of the algorithm's length

  // Throws Error naming the string for anything but a well-formed digest.
  static Digest parse(std::string_view s);
  static bool valid(std::string_view s);
  std::string str() const { return algorithm + ":" + hex; }
  std::string short_hex() const { return hex.substr(0, 12); }
  bool operator==(const Digest&) const = default;
  auto operator<=>(const Digest&) const = default;
};

class Hasher {
 public:
  explicit Hasher(std::string_view algorithm = "sha256");
  void update(const void* data, size_t len);
  void update(std::string_view s) { update(s.data(), s.size()); }
  Digest finish();  // may be called once
  const std::string& algorithm() const { return algorithm_; }

  static Digest of(std::string_view data, std::string_view algorithm = "sha256");

 private:
  struct CtxFree {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, CtxFree> ctx_;
  std::string algorithm_;
};

// Lowercase hex of raw bytes (digests, file handles, random names).
std::string hex_encode(std::string_view bytes);

}  // namespace layer
