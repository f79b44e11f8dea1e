// ClientConnection serves one accepted client socket on its worker's event loop: it parses requests,
// runs the pipeline, talks to upstreams and streams bodies both ways with bounded buffers.
#pragma once

#include <memory>
#include <string>

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>

#include "core/worker.hpp"
#include "rproxy/stage.hpp"

namespace rproxy {

// ListenerInfo: what the listener a connection arrived on speaks.
struct ListenerInfo {
  bool tls = false;
  std::string host;        // as configured, for URLs in messages
  std::uint16_t port = 0;  // bound port
  // Non-zero on the plain listener of tls.redirect_http: every request gets a 308 to this HTTPS port.
  std::uint16_t redirect_to_port = 0;
};

class ClientConnection : public std::enable_shared_from_this<ClientConnection> {
 public:
  // id: the connection's per-run ordinal (Exchange::connection, ConnectionInfo::id).
  ClientConnection(Worker& worker, asio::ip::tcp::socket sock, const ListenerInfo& listener, std::uint64_t id);
  ~ClientConnection();
  asio::awaitable<void> run();
  // close_if_idle ends the connection if it is waiting for a request (graceful stop).
  void close_if_idle();
  // force_close tears everything down (end of the drain period).
  void force_close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rproxy
