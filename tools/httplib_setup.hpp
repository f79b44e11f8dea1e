// What every cpp-httplib server in rproxy (the echo upstream, the admin endpoint) sets up the same way,
// because of traps in httplib 0.11.4 (../shared/notes/cpp-httplib-0.11.4.md): its default socket options
// add SO_REUSEPORT (a second server would silently share the port), Nagle is on, and its buffering
// handlers have no cap for chunked bodies.
#pragma once

#include <httplib.h>
#include <sys/socket.h>

#include <cstddef>
#include <ctime>
#include <string>

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

}  // namespace rproxy
