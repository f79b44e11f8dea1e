// What every cpp-httplib server in rproxy (the echo upstream, the admin endpoint) sets up the same way,
// because of traps in httplib 0.11.4 (../shared/notes/cpp-httplib-0.11.4.md): its default socket options
// add SO_REUSEPORT (a second server would silently share the port), Nagle is on, and its buffering
// handlers have no cap for chunked bodies.
#pragma once

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <string>
#include <thread>

namespace rproxy {

inline void apply_server_defaults(httplib::Server& server, std::size_t keep_alive_max, time_t keep_alive_s,
                                  time_t io_timeout_s) {
  server.set_socket_options([](socket_t sock) {
    int one = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  });
  server.set_tcp_nodelay(true);
  server.set_keep_alive_max_count(keep_alive_max);  // never 0: httplib's assert is compiled out
  server.set_keep_alive_timeout(keep_alive_s);
  server.set_read_timeout(io_timeout_s);
  server.set_write_timeout(io_timeout_s);
}

// route_every_method sends every method and path to handle(req, res, reader), where reader is the body
// reader for methods with a body and nullptr otherwise, so one function sees everything and reads bodies
// through its own capped reader. HEAD is routed to the GET handler by httplib.
template <typename Handle>
void route_every_method(httplib::Server& server, Handle handle) {
  // "[\s\S]*" rather than ".*": a decoded path may contain a newline, which "." does not match.
  const std::string any = "[\\s\\S]*";
  auto plain = [handle](const httplib::Request& req, httplib::Response& res) { handle(req, res, nullptr); };
  auto with_reader = httplib::Server::HandlerWithContentReader(
      [handle](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
        handle(req, res, &reader);
      });
  server.Get(any, plain);
  server.Options(any, plain);
  server.Post(any, with_reader);
  server.Put(any, with_reader);
  server.Patch(any, with_reader);
  server.Delete(any, with_reader);
}

// host_port renders an address for messages: "127.0.0.1:80", "[::1]:80".
inline std::string host_port(const std::string& host, int port) {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

// serve_on_thread binds server to host:port (0 = any free port), raises httplib's baked-in backlog of 5 to
// SOMAXCONN (a burst of connects would otherwise stall a second on SYN retransmits), runs the accept loop
// on `thread` and returns the bound port once the loop runs: stop() before is_running() would be a no-op
// and the join would hang. listen_fd() gives the bound socket (httplib keeps it protected). Throws
// std::runtime_error starting with `what` and naming the address.
template <typename ListenFd>
std::uint16_t serve_on_thread(httplib::Server& server, ListenFd listen_fd, const std::string& host,
                              std::uint16_t port, std::thread& thread, std::atomic<bool>& loop_exited,
                              const std::string& what) {
  errno = 0;
  int bound = port == 0 ? server.bind_to_any_port(host) : (server.bind_to_port(host, port) ? port : -1);
  if (bound <= 0)
    throw std::runtime_error(what + " cannot listen on " + host_port(host, port) +
                             (errno ? ": " + std::string(std::strerror(errno)) : ""));
  ::listen(listen_fd(), SOMAXCONN);
  thread = std::thread([&server, &loop_exited] {
    server.listen_after_bind();
    loop_exited = true;
  });
  while (!server.is_running()) {
    if (loop_exited) {
      thread.join();
      throw std::runtime_error(what + ": the accept loop on " + host_port(host, bound) + " exited at once");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return static_cast<std::uint16_t>(bound);
}

}  // namespace rproxy
