#include "tls/tls_context.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <stdexcept>

#include "core/access_log.hpp"
#include "tls/local_ca.hpp"

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

// The settings every server context shares (the certificate aside).
void configure_server(SSL_CTX* c) {
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
  // Idle connections give their read/write buffers back (about 34 KiB each).
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_cipher_list(c, kTls12Ciphers);
  static constexpr unsigned char kSessionContext[] = "rproxy";
  SSL_CTX_set_session_id_context(c, kSessionContext, sizeof kSessionContext - 1);
  SSL_CTX_set_alpn_select_cb(c, select_alpn, nullptr);
}

template <typename T, auto Free>
using OwnedBy = std::unique_ptr<T, decltype(Free)>;

// OnDemandCerts issues (once per name) a certificate for a .localhost name a client asks for by SNI, and
// switches the connection to it. Shared by every worker, hence the lock; a miss costs one P-256 key and
// signature (about a millisecond) on the worker thread, once per name per run.
class OnDemandCerts {
 public:
  explicit OnDemandCerts(std::string dir) : dir_(std::move(dir)) {}

  SSL_CTX* context_for(const std::string& name) {
    std::lock_guard lock(mutex_);
    if (auto it = contexts_.find(name); it != contexts_.end()) return it->second.get();
    if (contexts_.size() >= kMaxOnDemandNames) return nullptr;
    try {
      auto pem = issue_leaf_for(dir_, name);
      auto ctx = wrap(SSL_CTX_new(TLS_server_method()));
      if (!ctx) return nullptr;
      configure_server(ctx.get());
      OwnedBy<BIO, &BIO_free> cert_bio(BIO_new_mem_buf(pem.cert.data(), static_cast<int>(pem.cert.size())),
                                       &BIO_free);
      OwnedBy<BIO, &BIO_free> key_bio(BIO_new_mem_buf(pem.key.data(), static_cast<int>(pem.key.size())),
                                      &BIO_free);
      OwnedBy<X509, &X509_free> cert(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr),
                                     &X509_free);
      OwnedBy<EVP_PKEY, &EVP_PKEY_free> key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr),
                                            &EVP_PKEY_free);
      if (!cert || !key || SSL_CTX_use_certificate(ctx.get(), cert.get()) != 1 ||
          SSL_CTX_use_PrivateKey(ctx.get(), key.get()) != 1) {
        log_line("rproxy: cannot use the certificate issued for " + name + ": " + openssl_error());
        return nullptr;
      }
      auto* raw = ctx.get();
      contexts_.emplace(name, std::move(ctx));
      return raw;
    } catch (const std::exception& e) {
      log_line(std::string("rproxy: no certificate for ") + name + ": " + e.what());
      return nullptr;
    }
  }

 private:
  std::string dir_;
  std::mutex mutex_;
  std::map<std::string, Context> contexts_;
};

int on_server_name(SSL* ssl, int*, void* arg) {
  const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!sni) return SSL_TLSEXT_ERR_OK;
  std::string name(sni);
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  const std::string suffix = ".localhost";
  if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return SSL_TLSEXT_ERR_OK;  // localhost, IPs and other names: the default certificate
  if (auto* ctx = static_cast<OnDemandCerts*>(arg)->context_for(name)) SSL_set_SSL_CTX(ssl, ctx);
  return SSL_TLSEXT_ERR_OK;
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

Context make_server_context(const std::string& cert_file, const std::string& key_file,
                            const std::string& local_ca_dir) {
  ERR_clear_error();
  std::shared_ptr<OnDemandCerts> on_demand;
  if (!local_ca_dir.empty()) on_demand = std::make_shared<OnDemandCerts>(local_ca_dir);
  // The context owns the on-demand issuer (the SNI callback's argument) through its deleter.
  Context ctx(SSL_CTX_new(TLS_server_method()), [on_demand](SSL_CTX* c) { SSL_CTX_free(c); });
  if (!ctx) throw std::runtime_error("cannot create a TLS context: " + openssl_error());
  auto* c = ctx.get();
  configure_server(c);
  if (on_demand) {
    SSL_CTX_set_tlsext_servername_callback(c, on_server_name);
    SSL_CTX_set_tlsext_servername_arg(c, on_demand.get());
  }
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
