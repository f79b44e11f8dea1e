#include "support/raw_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace rproxy::test {

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

nlohmann::json HttpResponse::json() const { return nlohmann::json::parse(body); }

RawClient::RawClient(std::uint16_t port, const std::string& host) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = AF_INET;
  if (host.find(':') != std::string::npos) {
    family = AF_INET6;
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    if (::inet_pton(AF_INET6, host.c_str(), &a6->sin6_addr) != 1) throw std::runtime_error("bad address " + host);
    len = sizeof(sockaddr_in6);
  } else {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    if (::inet_pton(AF_INET, host.c_str(), &a4->sin_addr) != 1) throw std::runtime_error("bad address " + host);
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
  if (fd_ >= 0) ::close(fd_);
}

void RawClient::send(std::string_view data) {
  if (!try_send(data)) throw std::runtime_error(std::string("send failed: ") + std::strerror(errno));
}

bool RawClient::try_send(std::string_view data) {
  while (!data.empty()) {
    auto n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

void RawClient::shutdown_write() { ::shutdown(fd_, SHUT_WR); }

bool RawClient::fill(milliseconds timeout) { return fill_until(Clock::now() + timeout); }

bool RawClient::fill_until(Clock::time_point deadline) {
  if (peer_closed_) return false;
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

std::string get_request(const std::string& target, const std::string& host, const std::string& extra_headers) {
  return "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\n" + extra_headers + "\r\n";
}

long long first_payload_mismatch(std::string_view body, std::uint64_t offset) {
  for (std::size_t i = 0; i < body.size(); ++i)
    if (body[i] != echo_payload_byte(offset + i)) return static_cast<long long>(i);
  return -1;
}

}  // namespace rproxy::test
