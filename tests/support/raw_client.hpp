// RawClient: a blocking TCP client for integration tests. It sends literal bytes and parses what comes back
// itself (its own HTTP/1.1 response and chunked decoding, independent of the engine's parser), so tests
// see exactly the bytes rproxy put on the wire. Every read has a timeout; nothing here can hang a test.
// start_tls switches a connected client to TLS (OpenSSL); every read and write then goes through it.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
// Only the SSL/SSL_CTX typedefs and the TLS1_x_VERSION constants (for TlsOptions), not all of ssl.h.
#include <openssl/prov_ssl.h>
#include <openssl/types.h>

#include "echo_server.hpp"

namespace rproxy::test {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

long long ms_since(Clock::time_point t);
bool iequal(std::string_view a, std::string_view b);

// HttpResponse is one parsed response. status == 0 means no (complete) head arrived; complete == false
// means the head arrived but the body ended early (peer closed or timed out before its framing said so).
struct HttpResponse {
  int status = 0;
  std::string version;  // "HTTP/1.1"
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;  // wire order, values trimmed
  std::string body;                                        // de-chunked
  bool complete = false;
  bool chunked = false;
  std::string raw_head;  // status line + fields + CRLF CRLF, as received

  std::optional<std::string> header(std::string_view name) const;
  std::size_t header_count(std::string_view name) const;
  bool has_header(std::string_view name) const { return header_count(name) > 0; }
  nlohmann::json json() const;  // throws when the body is not JSON
};

// ReadOptions say how a response body is delimited for the request it answers.
struct ReadOptions {
  bool head_request = false;  // a response to HEAD has no body
  milliseconds timeout{5000};   // for the whole response
};

// TlsOptions configure RawClient::start_tls. Every member has an initializer so designated initializers
// ({.ca_file = ..., .alpn = {...}}) compile under -Wextra -Werror (-Wmissing-field-initializers).
struct TlsOptions {
  std::string ca_file{};            // verify the server against this CA file (PEM); "" = do not verify
  std::string server_name{};        // SNI (DNS names only) and the DNS name or IP to verify; "" = none
  std::vector<std::string> alpn{};  // offered ALPN protocols, e.g. {"h2", "http/1.1"}; empty = no ALPN
  int min_version = 0;              // e.g. TLS1_2_VERSION; 0 = library default
  // e.g. TLS1_1_VERSION to check that a server refuses old versions. Below TLS 1.2 the client lowers its
  // own security level so it really offers the old version (OpenSSL 3 otherwise refuses locally).
  int max_version = 0;
};

class RawClient {
 public:
  // Connects to host:port (IPv4 or IPv6 literal); throws std::runtime_error on failure.
  explicit RawClient(std::uint16_t port, const std::string& host = "127.0.0.1");
  ~RawClient();
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  // start_tls performs a TLS handshake on the connected socket, waiting up to timeout; afterwards every
  // send and read goes through TLS (the socket is then non-blocking inside, so a raw ::recv on fd() would
  // bypass TLS). Returns false when the handshake or verification fails, with tls_error() saying why
  // (OpenSSL errors and the verify result); TLS then stays off and the socket is as the failure left it.
  // Bytes already in buffer() cannot be handed to TLS, so that is a failure too.
  bool start_tls(const TlsOptions& options, milliseconds timeout = milliseconds(5000));
  bool tls_active() const { return ssl_ != nullptr; }
  // tls_error describes the last TLS failure: a handshake, or a later read/write/alert.
  const std::string& tls_error() const { return tls_error_; }
  std::string alpn_selected() const;             // "" when none was selected
  std::string tls_version() const;               // "TLSv1.3"; "" without TLS
  std::string peer_certificate_subject() const;  // RFC 2253, e.g. "CN=localhost"; "" when none
  // tls_close_notify tells whether the peer ended TLS with close_notify (peer_closed() is also true on a
  // bare TCP EOF, which over TLS means truncation).
  bool tls_close_notify() const { return close_notify_; }

  // send writes all of data; throws on failure. try_send reports failure instead.
  void send(std::string_view data);
  bool try_send(std::string_view data);

  // fill reads whatever is available into the buffer, waiting up to timeout. False on EOF, reset, error
  // or timeout (peer_closed()/was_reset() tell which).
  bool fill(milliseconds timeout);

  // read_response parses one response from the buffer, reading more as needed. Never throws; see
  // HttpResponse for how an incomplete response looks. Interim 1xx responses are returned on their own.
  HttpResponse read_response(ReadOptions options = {});
  // read_head parses only a status line and header section (body bytes stay in the buffer).
  HttpResponse read_head(milliseconds timeout = milliseconds(5000));

  // read_chunk reads one chunk of a chunked body whose head was read with read_head: its data, "" for the
  // last chunk (trailers consumed), nullopt on close, timeout or bad framing.
  std::optional<std::string> read_chunk(milliseconds timeout = milliseconds(5000));

  // read_until_close reads until EOF/reset or timeout; returns everything received (including the buffer).
  std::string read_until_close(milliseconds timeout = milliseconds(5000));
  // wait_closed tells whether the peer closed (EOF or reset) within timeout; data read meanwhile is kept.
  bool wait_closed(milliseconds timeout = milliseconds(5000));

  // read_frame decodes one WebSocket frame (nullopt on close, timeout or an invalid frame).
  std::optional<WebSocketFrame> read_frame(milliseconds timeout = milliseconds(5000));

  bool peer_closed() const { return peer_closed_; }
  bool was_reset() const { return reset_; }
  std::string& buffer() { return buf_; }
  int fd() const { return fd_; }
  // shutdown_write half-closes the connection (the peer reads EOF). With TLS it first sends close_notify.
  void shutdown_write();

 private:
  bool take_line(std::string& line, Clock::time_point deadline);
  bool need(std::size_t n, Clock::time_point deadline);
  bool fill_until(Clock::time_point deadline);
  bool tls_fill_until(Clock::time_point deadline);
  bool tls_try_send(std::string_view data);
  void tls_shutdown_write();
  void free_tls();

  int fd_ = -1;
  std::string buf_;
  bool peer_closed_ = false;
  bool reset_ = false;
  SSL_CTX* ssl_ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  bool tls_failed_ = false;  // a fatal TLS error happened: OpenSSL forbids further SSL_* I/O on it
  bool close_notify_ = false;
  std::string tls_error_;
};

// fetch connects to 127.0.0.1:port, sends request and reads one response.
HttpResponse fetch(std::uint16_t port, const std::string& request, ReadOptions options = {});

// fetch_tls is fetch over TLS: connects to 127.0.0.1:port, performs the handshake (options.timeout),
// sends request and reads one response. Throws std::runtime_error (with tls_error()) when the handshake
// fails; use RawClient directly to test failures.
HttpResponse fetch_tls(std::uint16_t port, const std::string& request, const TlsOptions& tls,
                       ReadOptions options = {});

// Request helpers.
std::string get_request(const std::string& target, const std::string& host = "proxy.test",
                        const std::string& extra_headers = "");

// websocket_upgrade: a WebSocket upgrade request for target (the RFC 6455 sample key, whose accept value is
// "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=").
std::string websocket_upgrade(const std::string& target, const std::string& host = "proxy.test");

// check_payload compares body with echo_payload_byte() from offset; returns the first bad offset or -1.
long long first_payload_mismatch(std::string_view body, std::uint64_t offset = 0);

}  // namespace rproxy::test
