// TLS contexts for the data plane: the listeners' server context and the client contexts routes use to
// reach https:// upstreams. OpenSSL stays behind lib/tls and core/stream; SSL_CTX is thread-safe once
// built, so every worker shares one.
#pragma once

#include <memory>
#include <string>

struct ssl_ctx_st;

namespace rproxy::tls {

using Context = std::shared_ptr<ssl_ctx_st>;

// make_server_context loads a PEM certificate chain and key: TLS 1.2 minimum, forward-secret AEAD suites
// only, ALPN http/1.1 (never h2: rproxy speaks HTTP/1.1), no renegotiation, SNI accepted. Throws
// std::runtime_error naming the file and OpenSSL's reason.
// local_ca_dir: the local CA's data directory when the certificate is the local CA's; a client asking
// (SNI) for a name under .localhost then gets a certificate issued for that exact name on first use
// (cached, at most kMaxOnDemandNames), because OpenSSL-based clients refuse the *.localhost wildcard.
Context make_server_context(const std::string& cert_file, const std::string& key_file,
                            const std::string& local_ca_dir = "");
inline constexpr std::size_t kMaxOnDemandNames = 256;

// make_client_context verifies upstream certificates against the system store plus ca_file (if given),
// or not at all when insecure. TLS 1.2 minimum, ALPN http/1.1. Throws std::runtime_error naming ca_file.
Context make_client_context(const std::string& ca_file, bool insecure);

// openssl_error pops OpenSSL's error queue into one readable reason ("no such file", "key values
// mismatch"); "" when the queue is empty.
std::string openssl_error();

}  // namespace rproxy::tls
