// Hasher (util/digest.hpp), apart from the digest parsing so that a program
// that only parses digests (the daemon) does not link libcrypto.
#include <openssl/evp.h>

#include "util/digest.hpp"
#include "util/error.hpp"

namespace layer {

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

Digest Hasher::of(std::string_view data, std::string_view algorithm) {
  Hasher h(algorithm);
  h.update(data);
  return h.finish();
}

}  // namespace layer
