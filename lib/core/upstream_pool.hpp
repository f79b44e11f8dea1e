// UpstreamPool keeps idle keep-alive connections to upstreams, per worker (so it needs no lock). A pooled
// connection is checked before reuse: if the upstream closed it or sent stray bytes, it is discarded.
#pragma once

#include <sys/socket.h>

#include <deque>
#include <memory>
#include <string>
#include <unordered_map>

#include <asio/ip/tcp.hpp>

#include "core/byte_buffer.hpp"
#include "core/deadline.hpp"
#include "core/stream.hpp"

namespace rproxy {

struct UpstreamConn {
  explicit UpstreamConn(asio::any_io_executor ex) : stream(asio::ip::tcp::socket(ex)) {}
  Stream stream;
  asio::ip::tcp::socket& sock() { return stream.socket(); }
  ByteBuffer buf;  // bytes read from the upstream not yet consumed
  // What it is connected to: the authority, plus scheme and route for TLS (a connection verified under one
  // route's CA settings must not serve another route).
  std::string key;
  SteadyClock::time_point idle_since{};
  bool reused = false;
};

class UpstreamPool {
 public:
  static constexpr std::size_t kMaxIdlePerUpstream = 256;
  static constexpr std::chrono::seconds kMaxIdleAge{30};

  std::unique_ptr<UpstreamConn> take(const std::string& key) {
    auto it = idle_.find(key);
    if (it == idle_.end()) return nullptr;
    auto& q = it->second;
    auto now = SteadyClock::now();
    while (!q.empty()) {
      auto c = std::move(q.back());
      q.pop_back();
      if (now - c->idle_since < kMaxIdleAge && still_open(*c)) {
        c->reused = true;
        return c;
      }
    }
    return nullptr;
  }

  void put(std::unique_ptr<UpstreamConn> c) {
    auto& q = idle_[c->key];
    if (q.size() >= kMaxIdlePerUpstream) q.pop_front();
    c->idle_since = SteadyClock::now();
    q.push_back(std::move(c));
  }

  void clear() { idle_.clear(); }

 private:
  // A closed or chatty idle connection must not carry the next request: peek without blocking.
  static bool still_open(UpstreamConn& c) {
    if (!c.buf.empty() || c.stream.has_buffered_input()) return false;
    char b;
    auto n = ::recv(c.sock().native_handle(), &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
  std::unordered_map<std::string, std::deque<std::unique_ptr<UpstreamConn>>> idle_;
};

}  // namespace rproxy
