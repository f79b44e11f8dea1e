#include "support/scripted_upstream.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace rproxy::test {

namespace {
std::uint16_t bind_loopback(int fd) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    throw std::runtime_error(std::string("bind: ") + std::strerror(errno));
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}
}  // namespace

ScriptedUpstream::ScriptedUpstream(std::vector<UpstreamScript> scripts) : scripts_(std::move(scripts)) {
  if (scripts_.empty()) scripts_.emplace_back();
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw std::runtime_error("socket failed");
  port_ = bind_loopback(listen_fd_);
  if (::listen(listen_fd_, 128) != 0) throw std::runtime_error("listen failed");
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  acceptor_ = std::thread([this] { accept_loop(); });
}

ScriptedUpstream::~ScriptedUpstream() { stop(); }

void ScriptedUpstream::stop() {
  if (stopping_.exchange(true)) return;
  std::uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
  if (acceptor_.joinable()) acceptor_.join();
  {
    std::lock_guard lock(mutex_);
    for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
    cv_.notify_all();
  }
  for (auto& t : workers_)
    if (t.joinable()) t.join();
  ::close(listen_fd_);
  ::close(wake_fd_);
}

std::string ScriptedUpstream::received() const {
  std::lock_guard lock(mutex_);
  return received_;
}

std::size_t ScriptedUpstream::heads_received() const {
  std::lock_guard lock(mutex_);
  return heads_;
}

bool ScriptedUpstream::wait_for_heads(std::size_t n, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, timeout, [&] { return heads_ >= n; });
}

void ScriptedUpstream::record(const char* data, std::size_t n) {
  std::lock_guard lock(mutex_);
  received_.append(data, n);
}

void ScriptedUpstream::accept_loop() {
  for (;;) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    int r = ::poll(p, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || (p[1].revents & POLLIN) || stopping_) return;
    if (!(p[0].revents & POLLIN)) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto index = accepted_.fetch_add(1);
    const auto& script = scripts_[std::min(index, scripts_.size() - 1)];
    {
      std::lock_guard lock(mutex_);
      open_fds_.push_back(fd);
    }
    workers_.emplace_back([this, fd, &script] { serve(fd, script); });
  }
}

bool ScriptedUpstream::sleep_for(std::chrono::milliseconds d) {
  if (d.count() <= 0) return !stopping_;
  std::unique_lock lock(mutex_);
  return !cv_.wait_for(lock, d, [&] { return stopping_.load(); });
}

bool ScriptedUpstream::read_head_on(int fd, std::string& pending) {
  for (;;) {
    auto end = pending.find("\r\n\r\n");
    if (end != std::string::npos) {
      pending.erase(0, end + 4);
      std::lock_guard lock(mutex_);
      ++heads_;
      cv_.notify_all();
      return true;
    }
    pollfd p[2] = {{fd, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    int r = ::poll(p, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || (p[1].revents & POLLIN)) return false;
    char buf[16384];
    auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return false;
    record(buf, static_cast<std::size_t>(n));
    pending.append(buf, static_cast<std::size_t>(n));
  }
}

void ScriptedUpstream::serve(int fd, const UpstreamScript& script) {
  std::string pending;
  bool alive = true;
  for (int i = 0; alive && i < std::max(1, script.exchanges); ++i) {
    if (script.read_head && !read_head_on(fd, pending)) {
      alive = false;
      break;
    }
    if (!sleep_for(script.delay_before)) {
      alive = false;
      break;
    }
    std::string_view out = script.response;
    while (!out.empty()) {
      auto n = ::send(fd, out.data(), out.size(), MSG_NOSIGNAL);
      if (n <= 0) {
        alive = false;
        break;
      }
      out.remove_prefix(static_cast<std::size_t>(n));
    }
  }
  if (alive && script.read_head_before_end) alive = read_head_on(fd, pending);
  if (alive) sleep_for(script.delay_after);
  if (alive && script.end == UpstreamScript::End::Silent) {
    // Keep reading (and recording) until the peer goes away or the test stops us.
    for (;;) {
      pollfd p[2] = {{fd, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
      int r = ::poll(p, 2, -1);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 || (p[1].revents & POLLIN)) break;
      char buf[16384];
      auto n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      record(buf, static_cast<std::size_t>(n));
    }
  } else if (script.end == UpstreamScript::End::Reset) {
    struct linger lg {
      1, 0
    };
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  } else {
    // Drain what already arrived so close() sends a FIN, not an RST for unread data.
    char buf[16384];
    for (;;) {
      auto n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n <= 0) break;
      record(buf, static_cast<std::size_t>(n));
    }
  }
  {
    std::lock_guard lock(mutex_);
    open_fds_.erase(std::remove(open_fds_.begin(), open_fds_.end(), fd), open_fds_.end());
  }
  ::close(fd);
}

ClosedPort::ClosedPort() {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::runtime_error("socket failed");
  port_ = bind_loopback(fd_);
}

ClosedPort::~ClosedPort() { ::close(fd_); }

}  // namespace rproxy::test
