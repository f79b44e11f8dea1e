// Sha256: incremental SHA-256 over OpenSSL's EVP interface, for content addressing and body digests
// (bodies are hashed as they stream, never buffered for it).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX, kept out of this header

namespace rproxy {

// Sha256 hashes a stream incrementally (bodies are never buffered).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, std::size_t size);
  void update(std::string_view data) { update(data.data(), data.size()); }
  // hex_digest finishes the hash and returns it as 64 lowercase hex digits; call once.
  std::string hex_digest();

 private:
  evp_md_ctx_st* ctx_;
};
std::string sha256_hex(std::string_view data);

}  // namespace rproxy
