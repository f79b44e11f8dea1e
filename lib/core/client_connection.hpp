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

class ClientConnection : public std::enable_shared_from_this<ClientConnection> {
 public:
  // id: the connection's per-run ordinal (Exchange::connection, ConnectionInfo::id).
  ClientConnection(Worker& worker, asio::ip::tcp::socket sock, std::string scheme, std::uint64_t id);
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
