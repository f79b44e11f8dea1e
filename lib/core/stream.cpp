#include "core/stream.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>
#include <array>
#include <asio/write.hpp>
#include <cerrno>

namespace rproxy {

namespace {
constexpr auto use_nothrow = asio::experimental::as_tuple(asio::use_awaitable);
// One TLS record (16 KiB of plaintext) plus its overhead: the most one raw read needs to make progress.
constexpr std::size_t kRawRead = 17 * 1024;

bool is_ip_literal(const std::string& host) {
  std::error_code ec;
  (void)asio::ip::make_address(host, ec);
  return !ec;
}
}  // namespace

struct Stream::Tls {
  SSL* ssl = nullptr;
  BIO* in = nullptr;    // network → OpenSSL (owned by ssl)
  BIO* out = nullptr;   // OpenSSL → network (owned by ssl)
  std::string pending;  // TLS bytes taken from `out`, not yet on the socket
  std::string gather;   // small gathered writes are joined here, to go out as one record
  bool writing = false;
  bool tcp_eof = false;
  ~Tls() {
    if (ssl) SSL_free(ssl);
  }
};

Stream::Stream(asio::ip::tcp::socket sock) : sock_(std::move(sock)) {}
Stream::~Stream() = default;

void Stream::set_ssl_error(const char* what, int ret) {
  error_ = what;
  auto code = ERR_peek_last_error();
  if (code != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    // "error:0A000086:SSL routines::certificate verify failed": keep the reason, drop the code prefix.
    std::string text = buf;
    auto colon = text.rfind(':');
    error_ += ": " + (colon == std::string::npos ? text : text.substr(colon + 1));
  } else if (ret == 0 || SSL_get_error(tls_->ssl, ret) == SSL_ERROR_SYSCALL) {
    error_ += tls_->tcp_eof ? ": the peer closed the connection" : ": connection reset";
  }
  if (!SSL_is_server(tls_->ssl)) {
    auto verify = SSL_get_verify_result(tls_->ssl);
    if (verify != X509_V_OK) error_ += std::string(" (") + X509_verify_cert_error_string(verify) + ")";
  }
  ERR_clear_error();
}

void Stream::attach_tls(ssl_ctx_st* ctx) {
  tls_ = std::make_unique<Tls>();
  tls_->ssl = SSL_new(ctx);
  tls_->in = BIO_new(BIO_s_mem());
  tls_->out = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(tls_->in, -1);
  SSL_set_bio(tls_->ssl, tls_->in, tls_->out);
}

void Stream::start_tls_server(ssl_ctx_st* ctx) {
  attach_tls(ctx);
  SSL_set_accept_state(tls_->ssl);
}

void Stream::start_tls_client(ssl_ctx_st* ctx, const std::string& server_name, bool verify_name) {
  attach_tls(ctx);
  SSL_set_connect_state(tls_->ssl);
  bool ip = is_ip_literal(server_name);
  // RFC 6066: SNI carries DNS names only.
  if (!ip && !server_name.empty()) SSL_set_tlsext_host_name(tls_->ssl, server_name.c_str());
  if (verify_name && !server_name.empty()) {
    if (ip)
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(tls_->ssl), server_name.c_str());
    else
      SSL_set1_host(tls_->ssl, server_name.c_str());
  }
}

long Stream::feed_from_socket() {
  char raw[kRawRead];
  while (true) {
    auto n = ::recv(sock_.native_handle(), raw, sizeof raw, MSG_DONTWAIT);
    if (n > 0) {
      BIO_write(tls_->in, raw, static_cast<int>(n));
      return n;
    }
    if (n == 0) {
      tls_->tcp_eof = true;
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return kWouldBlock;
    return kError;
  }
}

void Stream::flush_nonblocking() {
  if (tls_->writing) return;
  char* data = nullptr;
  auto len = BIO_get_mem_data(tls_->out, &data);
  if (len > 0) {
    tls_->pending.append(data, static_cast<std::size_t>(len));
    (void)BIO_reset(tls_->out);
  }
  while (!tls_->pending.empty()) {
    auto n = ::send(sock_.native_handle(), tls_->pending.data(), tls_->pending.size(),
                    MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n <= 0) return;  // the next write() sends the rest
    tls_->pending.erase(0, static_cast<std::size_t>(n));
  }
}

long Stream::try_read(char* out, std::size_t capacity) {
  if (!tls_) {
    while (true) {
      auto n = ::recv(sock_.native_handle(), out, capacity, MSG_DONTWAIT);
      if (n >= 0) return n;
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK ? kWouldBlock : kError;
    }
  }
  int cap = static_cast<int>(std::min<std::size_t>(capacity, 1 << 30));
  while (true) {
    ERR_clear_error();
    int n = SSL_read(tls_->ssl, out, cap);
    if (n > 0) {
      if (BIO_ctrl_pending(tls_->out) > 0) flush_nonblocking();
      return n;
    }
    int err = SSL_get_error(tls_->ssl, n);
    if (BIO_ctrl_pending(tls_->out) > 0) flush_nonblocking();  // key updates, session tickets
    if (err == SSL_ERROR_ZERO_RETURN) return 0;                // close_notify
    if (err != SSL_ERROR_WANT_READ) {
      set_ssl_error("TLS read failed", n);
      return kError;
    }
    // A FIN without close_notify ends the stream too; whether a body was complete is the framing's call.
    if (tls_->tcp_eof) return 0;
    auto fed = feed_from_socket();
    if (fed == kWouldBlock || fed == kError) return fed;
  }
}

asio::awaitable<std::error_code> Stream::wait_readable() {
  auto [ec] = co_await sock_.async_wait(asio::ip::tcp::socket::wait_read, use_nothrow);
  co_return ec;
}

asio::awaitable<std::pair<std::error_code, std::size_t>> Stream::read_some(char* out, std::size_t capacity) {
  while (true) {
    auto n = try_read(out, capacity);
    if (n > 0) co_return std::pair<std::error_code, std::size_t>{{}, static_cast<std::size_t>(n)};
    if (n == 0) co_return std::pair<std::error_code, std::size_t>{asio::error::eof, 0};
    if (n == kError) {
      std::error_code ec(errno == 0 ? ECONNRESET : errno, std::system_category());
      if (tls_) ec = asio::error::connection_reset;
      co_return std::pair<std::error_code, std::size_t>{ec, 0};
    }
    auto ec = co_await wait_readable();
    if (ec) co_return std::pair<std::error_code, std::size_t>{ec, 0};
  }
}

bool Stream::send_now() {
  // The common case: nothing queued and the socket takes the whole output at once, straight from
  // OpenSSL's buffer, with no copy and no suspension.
  if (!tls_->pending.empty()) return false;
  char* data = nullptr;
  auto len = BIO_get_mem_data(tls_->out, &data);
  if (len <= 0) return true;
  auto n = ::send(sock_.native_handle(), data, static_cast<std::size_t>(len), MSG_DONTWAIT | MSG_NOSIGNAL);
  std::size_t sent = n > 0 ? static_cast<std::size_t>(n) : 0;
  if (sent < static_cast<std::size_t>(len))
    tls_->pending.append(data + sent, static_cast<std::size_t>(len) - sent);
  (void)BIO_reset(tls_->out);
  return tls_->pending.empty();
}

asio::awaitable<std::error_code> Stream::flush() {
  // Drains everything OpenSSL produced, including bytes added while an earlier part was being sent.
  while (true) {
    char* data = nullptr;
    auto len = BIO_get_mem_data(tls_->out, &data);
    if (len > 0) {
      tls_->pending.append(data, static_cast<std::size_t>(len));
      (void)BIO_reset(tls_->out);
    }
    if (tls_->pending.empty()) co_return std::error_code{};
    std::string sending;
    sending.swap(tls_->pending);
    auto [ec, n] = co_await asio::async_write(sock_, asio::buffer(sending), use_nothrow);
    (void)n;
    if (ec) co_return ec;
  }
}

asio::awaitable<std::error_code> Stream::write(const asio::const_buffer* buffers, std::size_t count) {
  if (!tls_) {
    std::error_code ec;
    if (count == 1) {
      std::tie(ec, std::ignore) = co_await asio::async_write(sock_, buffers[0], use_nothrow);
    } else if (count <= 4) {
      // A fixed array (empty buffers are skipped): no allocation for the usual head + body (+ chunk framing).
      std::array<asio::const_buffer, 4> v{};
      std::copy(buffers, buffers + count, v.begin());
      std::tie(ec, std::ignore) = co_await asio::async_write(sock_, v, use_nothrow);
    } else {
      std::vector<asio::const_buffer> v(buffers, buffers + count);
      std::tie(ec, std::ignore) = co_await asio::async_write(sock_, v, use_nothrow);
    }
    co_return ec;
  }
  tls_->writing = true;
  std::error_code result;
  // A response head and a small body become one record (one seal, one header) instead of two.
  std::size_t total = 0;
  for (std::size_t i = 0; i < count; ++i) total += buffers[i].size();
  asio::const_buffer joined;
  if (count > 1 && total <= 16 * 1024) {
    tls_->gather.clear();
    for (std::size_t i = 0; i < count; ++i)
      tls_->gather.append(static_cast<const char*>(buffers[i].data()), buffers[i].size());
    joined = asio::buffer(tls_->gather);
    buffers = &joined;
    count = 1;
  }
  for (std::size_t i = 0; i < count && !result; ++i) {
    const char* p = static_cast<const char*>(buffers[i].data());
    std::size_t left = buffers[i].size();
    while (left > 0) {
      int chunk = static_cast<int>(std::min<std::size_t>(left, 1 << 20));
      ERR_clear_error();
      int n = SSL_write(tls_->ssl, p, chunk);  // a memory BIO takes everything: no partial writes
      if (n <= 0) {
        set_ssl_error("TLS write failed", n);
        result = asio::error::connection_reset;
        break;
      }
      p += n;
      left -= static_cast<std::size_t>(n);
    }
    // Bound what one write holds encrypted in memory: send as we go on large writes.
    if (!result && BIO_ctrl_pending(tls_->out) >= 256 * 1024) result = co_await flush();
  }
  if (!result && !send_now()) result = co_await flush();
  tls_->writing = false;
  co_return result;
}

asio::awaitable<std::error_code> Stream::write(asio::const_buffer buffer) {
  // A coroutine of its own: the buffer must live in this frame while the write is in flight.
  auto ec = co_await write(&buffer, 1);
  co_return ec;
}

asio::awaitable<void> Stream::shutdown_send() {
  std::error_code ec;
  if (tls_ && !(SSL_get_shutdown(tls_->ssl) & SSL_SENT_SHUTDOWN) && SSL_is_init_finished(tls_->ssl)) {
    ERR_clear_error();
    (void)SSL_shutdown(tls_->ssl);  // queues close_notify; the peer's is not awaited
    ERR_clear_error();
    if (!tls_->writing) {
      tls_->writing = true;
      ec = co_await flush();
      tls_->writing = false;
    }
  }
  sock_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
}

bool Stream::has_buffered_input() const {
  return tls_ && (SSL_pending(tls_->ssl) > 0 || BIO_ctrl_pending(tls_->in) > 0);
}

asio::awaitable<bool> Stream::handshake() {
  while (true) {
    ERR_clear_error();
    int r = SSL_do_handshake(tls_->ssl);
    int err = r == 1 ? SSL_ERROR_NONE : SSL_get_error(tls_->ssl, r);
    if (err != SSL_ERROR_NONE && err != SSL_ERROR_WANT_READ) {
      set_ssl_error("TLS handshake failed", r);
      // Send the alert (it tells the peer why), best effort.
      tls_->writing = false;
      flush_nonblocking();
      co_return false;
    }
    tls_->writing = true;
    auto ec = co_await flush();
    tls_->writing = false;
    if (ec) {
      error_ = "TLS handshake failed: " + ec.message();
      co_return false;
    }
    if (r == 1) co_return true;
    auto fed = feed_from_socket();
    if (fed == kWouldBlock) {
      auto wec = co_await wait_readable();
      if (wec) {
        error_ = "TLS handshake did not complete in time";
        co_return false;
      }
      continue;
    }
    if (fed == 0 || fed == kError) {
      error_ = fed == 0 ? "TLS handshake failed: the peer closed the connection"
                        : "TLS handshake failed: connection reset";
      co_return false;
    }
  }
}

std::string Stream::tls_version() const {
  return tls_ ? SSL_get_version(tls_->ssl) : "";
}

std::string Stream::alpn() const {
  if (!tls_) return "";
  const unsigned char* p = nullptr;
  unsigned len = 0;
  SSL_get0_alpn_selected(tls_->ssl, &p, &len);
  return p ? std::string(reinterpret_cast<const char*>(p), len) : "";
}

std::string Stream::sni() const {
  if (!tls_) return "";
  const char* name = SSL_get_servername(tls_->ssl, TLSEXT_NAMETYPE_host_name);
  return name ? name : "";
}

}  // namespace rproxy
