#include "support/raw_client.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstring>
#include <stdexcept>

namespace rproxy::test {

namespace {

// OpenSSL's socket BIO writes with write(), not send(MSG_NOSIGNAL), so writing to a closed peer raises
// SIGPIPE, which the test binary does not ignore. SigpipeGuard blocks SIGPIPE on this thread around one
// SSL_* call (SSL_read and SSL_connect may write too: alerts, key updates) and swallows a SIGPIPE that
// call raised, leaving the process's signal disposition alone.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &block, &old_mask_);
  }
  ~SigpipeGuard() {
    int saved = errno;  // callers read errno after the SSL_* call; keep it intact
    if (!was_pending_) {
      sigset_t pending;
      sigemptyset(&pending);
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        sigset_t pipe_only;
        sigemptyset(&pipe_only);
        sigaddset(&pipe_only, SIGPIPE);
        timespec zero{};
        while (sigtimedwait(&pipe_only, nullptr, &zero) < 0 && errno == EINTR) {
        }
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
    errno = saved;
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t old_mask_{};
  bool was_pending_ = false;
};

// SslCall is the outcome of one SSL_* call, captured before anything else can touch errno or the
// thread's OpenSSL error queue.
struct SslCall {
  int ret = 0;
  int error = SSL_ERROR_NONE;  // SSL_get_error, when ret says the call did not succeed
  int saved_errno = 0;
};

template <typename F>
SslCall ssl_call(SSL* ssl, F&& f, bool (*ok)(int)) {
  SslCall c;
  SigpipeGuard guard;
  ERR_clear_error();  // stale entries would make SSL_get_error misreport this call
  errno = 0;
  c.ret = f();
  c.saved_errno = errno;
  c.error = ok(c.ret) ? SSL_ERROR_NONE : SSL_get_error(ssl, c.ret);
  return c;
}

bool positive(int r) {
  return r > 0;
}
bool non_negative(int r) {
  return r >= 0;
}

// drain_ssl_errors joins OpenSSL's queued errors (oldest first) and empties the queue; connection_reset
// is set when one of them is the system error ECONNRESET (OpenSSL 3 may report a reset that way).
std::string drain_ssl_errors(bool* connection_reset = nullptr) {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    if (connection_reset && ERR_GET_LIB(e) == ERR_LIB_SYS && ERR_GET_REASON(e) == ECONNRESET)
      *connection_reset = true;
    char text[256];
    ERR_error_string_n(e, text, sizeof(text));
    if (!out.empty()) out += "; ";
    out += text;
  }
  return out;
}

// describe_failure turns a failed SSL_* call into tls_error() text: the error class, OpenSSL's error
// strings and, when certificate verification failed, the verify result (the error strings alone only say
// "certificate verify failed", not why).
std::string describe_failure(SSL* ssl, const std::string& what, const SslCall& c, bool* connection_reset) {
  std::string msg = what + " failed: ";
  auto queued = drain_ssl_errors(connection_reset);
  switch (c.error) {
    case SSL_ERROR_ZERO_RETURN:
      msg += "peer sent close_notify";
      break;
    case SSL_ERROR_SYSCALL:
      if (c.saved_errno == ECONNRESET && connection_reset) *connection_reset = true;
      msg += "syscall error: ";
      msg += !queued.empty()      ? queued
             : c.saved_errno != 0 ? std::string(std::strerror(c.saved_errno))
                                  : std::string("unexpected EOF (no close_notify)");
      break;
    case SSL_ERROR_SSL:
      msg += queued.empty() ? std::string("SSL_ERROR_SSL") : queued;
      break;
    default:
      msg += "SSL_get_error " + std::to_string(c.error) + (queued.empty() ? "" : ": " + queued);
  }
  // Without a CA file nothing is verified and the result (e.g. "self-signed certificate") is just noise.
  long verify = SSL_get_verify_result(ssl);
  if (verify != X509_V_OK && (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER))
    msg += "; verify result " + std::to_string(verify) + ": " + X509_verify_cert_error_string(verify);
  return msg;
}

// wait_fd polls fd for events until deadline (nullopt: no limit, like a blocking send). False on timeout
// or a poll failure.
bool wait_fd(int fd, short events, std::optional<Clock::time_point> deadline) {
  for (;;) {
    int wait = -1;
    if (deadline) {
      auto left = std::chrono::duration_cast<milliseconds>(*deadline - Clock::now()).count();
      wait = static_cast<int>(std::clamp<long long>(left, 0, INT_MAX));
    }
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, wait);
    if (r < 0 && errno == EINTR) continue;
    return r > 0;  // POLLERR/POLLHUP count as ready: the next SSL_* call reports what happened
  }
}

// want_events maps SSL_ERROR_WANT_* to poll events; 0 for any other (fatal) error.
short want_events(int ssl_error) {
  if (ssl_error == SSL_ERROR_WANT_READ) return POLLIN;
  if (ssl_error == SSL_ERROR_WANT_WRITE) return POLLOUT;
  return 0;
}

}  // namespace

long long ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - t).count();
}

bool iequal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::optional<std::string> HttpResponse::header(std::string_view name) const {
  for (const auto& [n, v] : headers)
    if (iequal(n, name)) return v;
  return std::nullopt;
}

std::size_t HttpResponse::header_count(std::string_view name) const {
  std::size_t n = 0;
  for (const auto& h : headers)
    if (iequal(h.first, name)) ++n;
  return n;
}

nlohmann::json HttpResponse::json() const {
  return nlohmann::json::parse(body);
}

RawClient::RawClient(std::uint16_t port, const std::string& host) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = AF_INET;
  if (host.find(':') != std::string::npos) {
    family = AF_INET6;
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    if (::inet_pton(AF_INET6, host.c_str(), &a6->sin6_addr) != 1)
      throw std::runtime_error("bad address " + host);
    len = sizeof(sockaddr_in6);
  } else {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    if (::inet_pton(AF_INET, host.c_str(), &a4->sin_addr) != 1)
      throw std::runtime_error("bad address " + host);
    len = sizeof(sockaddr_in);
  }
  fd_ = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    auto err = errno;
    ::close(fd_);
    fd_ = -1;
    throw std::runtime_error("connect to " + host + ":" + std::to_string(port) + ": " + std::strerror(err));
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

RawClient::~RawClient() {
  free_tls();
  if (fd_ >= 0) ::close(fd_);
}

void RawClient::free_tls() {
  SSL_free(ssl_);
  SSL_CTX_free(ssl_ctx_);
  ssl_ = nullptr;
  ssl_ctx_ = nullptr;
}

bool RawClient::start_tls(const TlsOptions& options, milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  tls_error_.clear();
  if (ssl_) {
    tls_error_ = "start_tls: TLS is already on";
    return false;
  }
  if (fd_ < 0 || peer_closed_) {
    tls_error_ = "start_tls: connection is closed";
    return false;
  }
  if (!buf_.empty()) {
    // Those bytes were read from the socket already and would be lost to the TLS layer.
    tls_error_ = "start_tls: " + std::to_string(buf_.size()) + " received bytes are still buffered";
    return false;
  }
  int old_flags = ::fcntl(fd_, F_GETFL);
  auto fail = [&](std::string why) {
    tls_error_ = std::move(why);
    free_tls();
    if (old_flags >= 0) ::fcntl(fd_, F_SETFL, old_flags);  // plain reads and writes block again
    return false;
  };
  ERR_clear_error();
  ssl_ctx_ = SSL_CTX_new(TLS_client_method());
  if (!ssl_ctx_) return fail("SSL_CTX_new: " + drain_ssl_errors());
  if (options.min_version != 0 && SSL_CTX_set_min_proto_version(ssl_ctx_, options.min_version) != 1)
    return fail("bad min_version " + std::to_string(options.min_version) + ": " + drain_ssl_errors());
  if (options.max_version != 0 && SSL_CTX_set_max_proto_version(ssl_ctx_, options.max_version) != 1)
    return fail("bad max_version " + std::to_string(options.max_version) + ": " + drain_ssl_errors());
  bool old_version = (options.min_version != 0 && options.min_version < TLS1_2_VERSION) ||
                     (options.max_version != 0 && options.max_version < TLS1_2_VERSION);
  if (old_version) {
    // OpenSSL 3 allows TLS 1.0/1.1 (and their SHA-1 signatures) only at security level 0; without this the
    // client would refuse locally ("no protocols available") and a test meant to prove the server refuses
    // old versions would pass without the server being asked.
    SSL_CTX_set_security_level(ssl_ctx_, 0);
    if (SSL_CTX_set_cipher_list(ssl_ctx_, "DEFAULT:@SECLEVEL=0") != 1)
      return fail("SSL_CTX_set_cipher_list: " + drain_ssl_errors());
  }
  if (!options.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ssl_ctx_, options.ca_file.c_str(), nullptr) != 1)
      return fail("loading CA file " + options.ca_file + ": " + drain_ssl_errors());
    SSL_CTX_set_verify(ssl_ctx_, SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ssl_ctx_, SSL_VERIFY_NONE, nullptr);
  }

  ssl_ = SSL_new(ssl_ctx_);
  if (!ssl_) return fail("SSL_new: " + drain_ssl_errors());
  // Already the default since OpenSSL 1.1.1; explicit because SSL_read must not report WANT_READ merely
  // for a non-application record (e.g. a TLS 1.3 session ticket) when more data is readable.
  SSL_set_mode(ssl_, SSL_MODE_AUTO_RETRY);

  if (!options.alpn.empty()) {
    std::string wire;  // ALPN wire format: length-prefixed protocol names
    for (const auto& proto : options.alpn) {
      if (proto.empty() || proto.size() > 255) return fail("bad ALPN protocol name \"" + proto + "\"");
      wire += static_cast<char>(proto.size());
      wire += proto;
    }
    // SSL_set_alpn_protos returns 0 on success, unlike most of OpenSSL.
    if (SSL_set_alpn_protos(ssl_, reinterpret_cast<const unsigned char*>(wire.data()),
                            static_cast<unsigned>(wire.size())) != 0)
      return fail("SSL_set_alpn_protos: " + drain_ssl_errors());
  }

  if (!options.server_name.empty()) {
    std::string name = options.server_name;
    if (name.size() > 2 && name.front() == '[' && name.back() == ']') name = name.substr(1, name.size() - 2);
    unsigned char addr[16];
    bool is_ip =
        ::inet_pton(AF_INET, name.c_str(), addr) == 1 || ::inet_pton(AF_INET6, name.c_str(), addr) == 1;
    if (is_ip) {
      // An IP is checked against the certificate's IP SANs; SNI must not carry an IP (RFC 6066 section 3).
      if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), name.c_str()) != 1)
        return fail("X509_VERIFY_PARAM_set1_ip_asc " + name + ": " + drain_ssl_errors());
    } else {
      if (SSL_set1_host(ssl_, name.c_str()) != 1)
        return fail("SSL_set1_host " + name + ": " + drain_ssl_errors());
      if (SSL_set_tlsext_host_name(ssl_, name.c_str()) != 1)
        return fail("SSL_set_tlsext_host_name " + name + ": " + drain_ssl_errors());
    }
  }

  // Non-blocking from here on: with a blocking socket SSL_read could block past any deadline once poll
  // said "readable" (half a record arrived, or only a session ticket did), and the handshake needs a timeout.
  if (old_flags < 0 || ::fcntl(fd_, F_SETFL, old_flags | O_NONBLOCK) != 0)
    return fail(std::string("fcntl O_NONBLOCK: ") + std::strerror(errno));
  if (SSL_set_fd(ssl_, fd_) != 1) return fail("SSL_set_fd: " + drain_ssl_errors());

  for (;;) {
    auto c = ssl_call(
        ssl_, [&] { return SSL_connect(ssl_); }, [](int r) { return r == 1; });
    if (c.ret == 1) break;
    auto events = want_events(c.error);
    if (events == 0) return fail(describe_failure(ssl_, "TLS handshake", c, nullptr));
    if (!wait_fd(fd_, events, deadline))
      return fail("TLS handshake timed out after " + std::to_string(timeout.count()) + " ms");
  }
  return true;
}

std::string RawClient::alpn_selected() const {
  if (!ssl_) return {};
  const unsigned char* data = nullptr;
  unsigned len = 0;
  SSL_get0_alpn_selected(ssl_, &data, &len);
  return data ? std::string(reinterpret_cast<const char*>(data), len) : std::string();
}

std::string RawClient::tls_version() const {
  return ssl_ ? SSL_get_version(ssl_) : "";
}

std::string RawClient::peer_certificate_subject() const {
  if (!ssl_) return {};
  X509* cert = SSL_get0_peer_certificate(ssl_);
  if (!cert) return {};
  BIO* mem = BIO_new(BIO_s_mem());
  if (!mem) return {};
  std::string out;
  if (X509_NAME_print_ex(mem, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
    char* data = nullptr;
    long len = BIO_get_mem_data(mem, &data);
    if (data && len > 0) out.assign(data, static_cast<std::size_t>(len));
  }
  BIO_free(mem);
  return out;
}

void RawClient::send(std::string_view data) {
  if (!try_send(data))
    throw std::runtime_error("send failed: " + (ssl_ ? tls_error_ : std::string(std::strerror(errno))));
}

bool RawClient::try_send(std::string_view data) {
  if (ssl_) return tls_try_send(data);
  while (!data.empty()) {
    auto n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

bool RawClient::tls_try_send(std::string_view data) {
  if (tls_failed_) {
    tls_error_ = "send after a fatal TLS error (" + tls_error_ + ")";
    return false;
  }
  while (!data.empty()) {
    // Partial writes are off, so a WANT_* retry must repeat exactly this buffer and length.
    int len = static_cast<int>(std::min<std::size_t>(data.size(), 1 << 20));
    auto c = ssl_call(
        ssl_, [&] { return SSL_write(ssl_, data.data(), len); }, positive);
    if (c.ret > 0) {
      data.remove_prefix(static_cast<std::size_t>(c.ret));
      continue;
    }
    auto events = want_events(c.error);
    if (events != 0) {
      // No deadline, as a plain blocking send has none.
      if (wait_fd(fd_, events, std::nullopt)) continue;
      tls_error_ = std::string("send: poll failed: ") + std::strerror(errno);
      return false;
    }
    tls_failed_ = true;
    tls_error_ = describe_failure(ssl_, "SSL_write", c, nullptr);
    errno = c.saved_errno;
    return false;
  }
  return true;
}

void RawClient::shutdown_write() {
  if (ssl_) tls_shutdown_write();
  ::shutdown(fd_, SHUT_WR);
}

void RawClient::tls_shutdown_write() {
  // OpenSSL forbids SSL_shutdown after a fatal error; the TCP half-close still happens.
  if (tls_failed_ || (SSL_get_shutdown(ssl_) & SSL_SENT_SHUTDOWN)) return;
  auto deadline = Clock::now() + milliseconds(5000);
  for (;;) {
    // Called once only: the first SSL_shutdown sends close_notify (returning 0); a second would wait for
    // the peer's close_notify, which is for the test to read (peer_closed()/tls_close_notify()).
    auto c = ssl_call(
        ssl_, [&] { return SSL_shutdown(ssl_); }, non_negative);
    if (c.ret >= 0) return;
    if (c.error == SSL_ERROR_WANT_WRITE && wait_fd(fd_, POLLOUT, deadline)) continue;
    tls_error_ = describe_failure(ssl_, "SSL_shutdown", c, nullptr);
    return;
  }
}

bool RawClient::fill(milliseconds timeout) {
  return fill_until(Clock::now() + timeout);
}

bool RawClient::tls_fill_until(Clock::time_point deadline) {
  for (;;) {
    // SSL_read comes before poll: decrypted bytes (SSL_pending) or whole records may already sit inside
    // OpenSSL, and the socket would not show them as readable.
    char tmp[65536];
    auto c = ssl_call(
        ssl_, [&] { return SSL_read(ssl_, tmp, sizeof(tmp)); }, positive);
    if (c.ret > 0) {
      buf_.append(tmp, static_cast<std::size_t>(c.ret));
      return true;
    }
    auto events = want_events(c.error);
    if (events != 0) {
      if (!wait_fd(fd_, events, deadline)) return false;  // timeout
      continue;
    }
    peer_closed_ = true;
    if (c.error == SSL_ERROR_ZERO_RETURN) {
      close_notify_ = true;  // a clean TLS close; the connection stays usable for shutdown_write
      return false;
    }
    // A bare TCP EOF (OpenSSL 3: "unexpected eof while reading"), a reset or a fatal alert.
    tls_failed_ = true;
    bool connection_reset = false;
    tls_error_ = describe_failure(ssl_, "SSL_read", c, &connection_reset);
    reset_ = connection_reset;
    return false;
  }
}

bool RawClient::fill_until(Clock::time_point deadline) {
  if (peer_closed_) return false;
  if (ssl_) return tls_fill_until(deadline);
  for (;;) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left < 0) left = 0;
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    char tmp[65536];
    auto n = ::recv(fd_, tmp, sizeof(tmp), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      peer_closed_ = true;
      reset_ = n < 0 && errno == ECONNRESET;
      return false;
    }
    buf_.append(tmp, static_cast<std::size_t>(n));
    return true;
  }
}

bool RawClient::need(std::size_t n, Clock::time_point deadline) {
  while (buf_.size() < n)
    if (!fill_until(deadline)) return false;
  return true;
}

bool RawClient::take_line(std::string& line, Clock::time_point deadline) {
  std::size_t at;
  std::size_t from = 0;
  while ((at = buf_.find("\r\n", from)) == std::string::npos) {
    from = buf_.empty() ? 0 : buf_.size() - 1;
    if (!fill_until(deadline)) return false;
  }
  line = buf_.substr(0, at);
  buf_.erase(0, at + 2);
  return true;
}

HttpResponse RawClient::read_head(milliseconds timeout) {
  HttpResponse r;
  auto deadline = Clock::now() + timeout;
  std::size_t end;
  std::size_t from = 0;
  while ((end = buf_.find("\r\n\r\n", from)) == std::string::npos) {
    from = buf_.size() > 3 ? buf_.size() - 3 : 0;
    if (!fill_until(deadline)) return r;
  }
  r.raw_head = buf_.substr(0, end + 4);
  buf_.erase(0, end + 4);
  std::string_view head(r.raw_head);
  auto line_end = head.find("\r\n");
  auto status_line = head.substr(0, line_end);
  auto sp1 = status_line.find(' ');
  if (sp1 == std::string_view::npos || status_line.size() < sp1 + 4) return r;
  r.version = std::string(status_line.substr(0, sp1));
  auto code = status_line.substr(sp1 + 1, 3);
  if (!std::all_of(code.begin(), code.end(), [](char c) { return c >= '0' && c <= '9'; })) return r;
  r.reason = status_line.size() > sp1 + 5 ? std::string(status_line.substr(sp1 + 5)) : std::string();
  auto fields = head.substr(line_end + 2);
  while (!fields.empty()) {
    auto e = fields.find("\r\n");
    auto line = fields.substr(0, e);
    fields.remove_prefix(e + 2);
    if (line.empty()) break;
    auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    auto value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    r.headers.emplace_back(std::string(line.substr(0, colon)), std::string(value));
  }
  r.status = std::stoi(std::string(code));
  return r;
}

HttpResponse RawClient::read_response(ReadOptions options) {
  auto deadline = Clock::now() + options.timeout;
  auto r = read_head(options.timeout);
  if (r.status == 0) return r;
  if (options.head_request || r.status < 200 || r.status == 204 || r.status == 304) {
    r.complete = true;
    return r;
  }
  auto te = r.header("Transfer-Encoding");
  if (te && iequal(*te, "chunked")) {
    r.chunked = true;
    for (;;) {
      std::string size_line;
      if (!take_line(size_line, deadline)) return r;
      auto semi = size_line.find(';');
      if (semi != std::string::npos) size_line.resize(semi);
      std::uint64_t size = 0;
      try {
        size = std::stoull(size_line, nullptr, 16);
      } catch (...) {
        return r;
      }
      if (size == 0) break;
      if (!need(size + 2, deadline)) {
        r.body += buf_;  // what arrived of the chunk, for diagnostics
        buf_.clear();
        return r;
      }
      r.body.append(buf_, 0, size);
      if (buf_.compare(size, 2, "\r\n") != 0) return r;
      buf_.erase(0, size + 2);
    }
    // Trailer section up to the empty line.
    for (;;) {
      std::string line;
      if (!take_line(line, deadline)) return r;
      if (line.empty()) break;
    }
    r.complete = true;
  } else if (auto cl = r.header("Content-Length")) {
    if (cl->empty() || cl->find_first_not_of("0123456789") != std::string::npos || cl->size() > 18) return r;
    std::uint64_t length = std::stoull(*cl);
    if (!need(length, deadline)) {
      r.body = std::move(buf_);
      buf_.clear();
      return r;
    }
    r.body = buf_.substr(0, length);
    buf_.erase(0, length);
    r.complete = true;
  } else {
    while (fill_until(deadline)) {
    }
    r.body = std::move(buf_);
    buf_.clear();
    r.complete = peer_closed_;
  }
  return r;
}

std::optional<std::string> RawClient::read_chunk(milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  std::string size_line;
  if (!take_line(size_line, deadline)) return std::nullopt;
  auto semi = size_line.find(';');
  if (semi != std::string::npos) size_line.resize(semi);
  std::uint64_t size = 0;
  try {
    size = std::stoull(size_line, nullptr, 16);
  } catch (...) {
    return std::nullopt;
  }
  if (size == 0) {
    for (;;) {
      std::string line;
      if (!take_line(line, deadline)) return std::nullopt;
      if (line.empty()) return std::string();
    }
  }
  if (!need(size + 2, deadline)) return std::nullopt;
  if (buf_.compare(size, 2, "\r\n") != 0) return std::nullopt;
  auto data = buf_.substr(0, size);
  buf_.erase(0, size + 2);
  return data;
}

std::string RawClient::read_until_close(milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (fill_until(deadline)) {
  }
  std::string out = std::move(buf_);
  buf_.clear();
  return out;
}

bool RawClient::wait_closed(milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (!peer_closed_ && Clock::now() < deadline) fill_until(deadline);
  return peer_closed_;
}

std::optional<WebSocketFrame> RawClient::read_frame(milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    WebSocketFrame frame;
    std::size_t consumed = 0;
    auto status = decode_websocket_frame(buf_, frame, consumed);
    if (status == FrameDecodeStatus::Invalid) return std::nullopt;
    if (status == FrameDecodeStatus::Complete) {
      buf_.erase(0, consumed);
      return frame;
    }
    if (!fill_until(deadline)) return std::nullopt;
  }
}

HttpResponse fetch(std::uint16_t port, const std::string& request, ReadOptions options) {
  RawClient c(port);
  c.send(request);
  return c.read_response(options);
}

HttpResponse fetch_tls(std::uint16_t port, const std::string& request, const TlsOptions& tls,
                       ReadOptions options) {
  RawClient c(port);
  if (!c.start_tls(tls, options.timeout)) throw std::runtime_error("fetch_tls: " + c.tls_error());
  c.send(request);
  return c.read_response(options);
}

std::string get_request(const std::string& target, const std::string& host,
                        const std::string& extra_headers) {
  return "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\n" + extra_headers + "\r\n";
}

std::string websocket_upgrade(const std::string& target, const std::string& host) {
  return "GET " + target + " HTTP/1.1\r\nHost: " + host +
         "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
}

long long first_payload_mismatch(std::string_view body, std::uint64_t offset) {
  for (std::size_t i = 0; i < body.size(); ++i)
    if (body[i] != echo_payload_byte(offset + i)) return static_cast<long long>(i);
  return -1;
}

}  // namespace rproxy::test
