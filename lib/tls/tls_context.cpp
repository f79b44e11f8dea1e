#include "tls/tls_context.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <stdexcept>

namespace rproxy::tls {

namespace {

// Mozilla's "intermediate" TLS 1.2 suites (forward secrecy, AEAD); TLS 1.3 suites are OpenSSL's defaults.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

constexpr unsigned char kAlpnHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned inlen, void*) {
  // Only http/1.1: a client that offers h2 alone gets no ALPN answer and may fall back or give up.
  unsigned i = 0;
  while (i < inlen) {
    unsigned len = in[i];
    if (i + 1 + len > inlen) break;
    if (len == 8 && std::string_view(reinterpret_cast<const char*>(in + i + 1), 8) == "http/1.1") {
      *out = in + i + 1;
      *outlen = 8;
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

Context wrap(SSL_CTX* ctx) {
  return Context(ctx, SSL_CTX_free);
}

}  // namespace

std::string openssl_error() {
  std::string out;
  while (auto code = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(code);
    std::string text = reason ? reason : "error " + std::to_string(code);
    if (out.find(text) == std::string::npos) out += (out.empty() ? "" : "; ") + text;
  }
  return out;
}

Context make_server_context(const std::string& cert_file, const std::string& key_file) {
  ERR_clear_error();
  auto ctx = wrap(SSL_CTX_new(TLS_server_method()));
  if (!ctx) throw std::runtime_error("cannot create a TLS context: " + openssl_error());
  auto* c = ctx.get();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
  // Idle connections give their read/write buffers back (about 34 KiB each).
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_cipher_list(c, kTls12Ciphers);
  static constexpr unsigned char kSessionContext[] = "rproxy";
  SSL_CTX_set_session_id_context(c, kSessionContext, sizeof kSessionContext - 1);
  SSL_CTX_set_alpn_select_cb(c, select_alpn, nullptr);
  if (SSL_CTX_use_certificate_chain_file(c, cert_file.c_str()) != 1)
    throw std::runtime_error("cannot load certificate " + cert_file + ": " + openssl_error());
  if (SSL_CTX_use_PrivateKey_file(c, key_file.c_str(), SSL_FILETYPE_PEM) != 1)
    throw std::runtime_error("cannot load private key " + key_file + ": " + openssl_error());
  if (SSL_CTX_check_private_key(c) != 1)
    throw std::runtime_error("private key " + key_file + " does not belong to certificate " + cert_file +
                             ": " + openssl_error());
  return ctx;
}

Context make_client_context(const std::string& ca_file, bool insecure) {
  ERR_clear_error();
  auto ctx = wrap(SSL_CTX_new(TLS_client_method()));
  if (!ctx) throw std::runtime_error("cannot create a TLS context: " + openssl_error());
  auto* c = ctx.get();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_alpn_protos(c, kAlpnHttp11, sizeof kAlpnHttp11);
  if (insecure) {
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, nullptr);
    return ctx;
  }
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
  if (SSL_CTX_set_default_verify_paths(c) != 1)
    throw std::runtime_error("cannot load the system certificate store: " + openssl_error());
  if (!ca_file.empty() && SSL_CTX_load_verify_locations(c, ca_file.c_str(), nullptr) != 1)
    throw std::runtime_error("cannot load CA file " + ca_file + ": " + openssl_error());
  ERR_clear_error();
  return ctx;
}

}  // namespace rproxy::tls
