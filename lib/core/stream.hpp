// Stream is one connection's byte transport: a TCP socket, optionally with TLS on top. The engine reads and
// writes through it and never needs to know which; socket-level actions (options, RST, SIOCOUTQ, close)
// still go to socket().
//
// TLS runs OpenSSL over memory BIOs rather than asio::ssl::stream, because the engine needs what that stream
// cannot give: a non-blocking read attempt before waiting (idle connections hold no buffer), a half-close
// (close_notify + FIN) while the other direction is still being read (WebSocket tunnels), and one read and
// one write in flight at once without either owning the other's records.
//
// Concurrency: at most one reader and one writer at a time, on the connection's own event loop.
#pragma once

#include <asio/awaitable.hpp>
#include <asio/buffer.hpp>
#include <asio/ip/tcp.hpp>
#include <cstddef>
#include <memory>
#include <string>
#include <system_error>

struct ssl_st;
struct ssl_ctx_st;

namespace rproxy {

class Stream {
 public:
  explicit Stream(asio::ip::tcp::socket sock);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  asio::ip::tcp::socket& socket() { return sock_; }
  bool is_tls() const { return tls_ != nullptr; }

  // try_read returns bytes read (> 0), 0 at a clean end of stream, kWouldBlock when nothing is available
  // yet (wait_readable, then try again) or kError (a reset or a TLS failure; see error_text()).
  static constexpr long kWouldBlock = -1;
  static constexpr long kError = -2;
  long try_read(char* out, std::size_t capacity);
  // wait_readable completes when the socket has bytes (or was cancelled/closed: ec is then set).
  asio::awaitable<std::error_code> wait_readable();
  // read_some waits for at least one byte: n > 0, or ec == asio::error::eof at a clean end of stream.
  asio::awaitable<std::pair<std::error_code, std::size_t>> read_some(char* out, std::size_t capacity);
  // write sends every byte of the buffers (in order) or fails.
  asio::awaitable<std::error_code> write(const asio::const_buffer* buffers, std::size_t count);
  asio::awaitable<std::error_code> write(asio::const_buffer buffer);
  // shutdown_send ends our direction: TLS close_notify first, then a TCP FIN. Reading continues to work.
  asio::awaitable<void> shutdown_send();
  // has_buffered_input: bytes were received and are waiting inside the TLS layer (a pooled connection
  // with unread data must not be reused).
  bool has_buffered_input() const;

  // ---- TLS -------------------------------------------------------------------------------------------
  // start_tls_server / start_tls_client attach TLS (the context outlives the stream); handshake runs it.
  // server_name: SNI (DNS names only) and the name verified when the context verifies peers; IP literals
  // are verified as IP addresses.
  void start_tls_server(ssl_ctx_st* ctx);
  void start_tls_client(ssl_ctx_st* ctx, const std::string& server_name, bool verify_name);
  // handshake completes the TLS handshake; false on failure, with error_text() saying why (including the
  // certificate verification result). Cancelling the socket aborts it.
  asio::awaitable<bool> handshake();
  const std::string& error_text() const { return error_; }
  // Negotiated details for logs and tests ("" before the handshake or without TLS).
  std::string tls_version() const;
  std::string alpn() const;
  std::string sni() const;

 private:
  struct Tls;
  void attach_tls(ssl_ctx_st* ctx);
  // Moves TLS output into out_ and sends what the socket takes now, unless a write is in progress (that
  // writer sends it, in order, after its own bytes).
  void flush_nonblocking();
  long feed_from_socket();
  // send_now sends OpenSSL's output without waiting when the socket takes all of it; false when some is
  // left (queued in pending for flush()).
  bool send_now();
  asio::awaitable<std::error_code> flush();
  void set_ssl_error(const char* what, int ret);

  asio::ip::tcp::socket sock_;
  std::unique_ptr<Tls> tls_;
  std::string error_;
};

}  // namespace rproxy
