// Unit tests for lib/core/proxy_headers: RFC 9110 §7.6 gateway header rules.
#include <doctest/doctest.h>

#include "core/proxy_headers.hpp"

using namespace rproxy;

namespace {
RequestHead client_request() {
  RequestHead h;
  h.method = "GET";
  h.target = "/x";
  h.headers = {{"Host", "app.localhost:8080"},
               {"Connection", "keep-alive, X-Internal"},
               {"X-Internal", "secret"},
               {"Keep-Alive", "timeout=5"},
               {"Proxy-Connection", "keep-alive"},
               {"TE", "trailers"},
               {"Proxy-Authorization", "Basic abc"},
               {"Accept", "*/*"},
               {"X-Forwarded-For", "1.2.3.4"},
               {"x-forwarded-for", "5.6.7.8"},
               {"Content-Length", "0"}};
  return h;
}
ForwardContext ctx() {
  ForwardContext c;
  c.client_ip = "127.0.0.1";
  c.upstream_authority = "127.0.0.1:3000";
  return c;
}
}  // namespace

TEST_CASE("proxy headers: hop-by-hop and Connection-named fields are removed upstream") {
  auto h = client_request();
  prepare_upstream_request(h, ctx());
  for (auto name : {"Connection", "X-Internal", "Keep-Alive", "Proxy-Connection", "TE", "Proxy-Authorization",
                    "Content-Length", "Transfer-Encoding", "Upgrade"}) {
    CAPTURE(name);
    CHECK_FALSE(h.headers.has(name));
  }
  CHECK(h.headers.get("Accept") == "*/*");
}

TEST_CASE("proxy headers: X-Forwarded-For is appended in order and the others are set") {
  auto h = client_request();
  h.headers.add("X-Forwarded-Proto", "https");  // a client may not claim the scheme
  prepare_upstream_request(h, ctx());
  CHECK(h.headers.count("X-Forwarded-For") == 1);
  CHECK(h.headers.get("X-Forwarded-For") == "1.2.3.4, 5.6.7.8, 127.0.0.1");
  CHECK(h.headers.get("X-Forwarded-Proto") == "http");
  CHECK(h.headers.get("X-Forwarded-Host") == "app.localhost:8080");
  CHECK(h.headers.get("Via") == "1.1 rproxy");
}

TEST_CASE("proxy headers: Host is preserved by default and replaced on request") {
  auto h = client_request();
  prepare_upstream_request(h, ctx());
  CHECK(h.headers.get("Host") == "app.localhost:8080");
  auto u = client_request();
  auto c = ctx();
  c.send_upstream_host = true;
  prepare_upstream_request(u, c);
  CHECK(u.headers.get("Host") == "127.0.0.1:3000");
  CHECK(u.headers.get("X-Forwarded-Host") == "app.localhost:8080");
}

TEST_CASE("proxy headers: an HTTP/1.0 request without Host gets the upstream's") {
  RequestHead h;
  h.method = "GET";
  h.target = "/";
  h.version_minor = 0;
  prepare_upstream_request(h, ctx());
  CHECK(h.headers.get("Host") == "127.0.0.1:3000");
  CHECK(h.headers.get("Via") == "1.0 rproxy");
  CHECK(h.version_minor == 1);
}

TEST_CASE("proxy headers: an existing Via is extended") {
  auto h = client_request();
  h.headers.add("Via", "1.1 corp-proxy");
  prepare_upstream_request(h, ctx());
  CHECK(h.headers.get("Via") == "1.1 corp-proxy, 1.1 rproxy");
}

TEST_CASE("proxy headers: upgrade requests keep Upgrade and Connection upgrade") {
  RequestHead h;
  h.method = "GET";
  h.target = "/ws";
  h.headers = {{"Host", "a"}, {"Connection", "keep-alive, Upgrade"}, {"Upgrade", "websocket"},
               {"Sec-WebSocket-Key", "k"}};
  auto c = ctx();
  c.upgrade = true;
  prepare_upstream_request(h, c);
  CHECK(h.headers.get("Upgrade") == "websocket");
  CHECK(h.headers.get("Connection") == "Upgrade");
  CHECK(h.headers.get("Sec-WebSocket-Key") == "k");
}

TEST_CASE("proxy headers: responses lose hop-by-hop fields and gain Via") {
  ResponseHead r;
  r.status = 200;
  r.headers = {{"Connection", "close, X-Debug"}, {"X-Debug", "1"}, {"Keep-Alive", "timeout=5"},
               {"Transfer-Encoding", "chunked"}, {"Content-Encoding", "gzip"}, {"Set-Cookie", "a=1"},
               {"Set-Cookie", "b=2"}};
  prepare_client_response(r, false);
  CHECK_FALSE(r.headers.has("Connection"));
  CHECK_FALSE(r.headers.has("X-Debug"));
  CHECK_FALSE(r.headers.has("Keep-Alive"));
  CHECK_FALSE(r.headers.has("Transfer-Encoding"));
  CHECK(r.headers.get("Content-Encoding") == "gzip");
  CHECK(r.headers.count("Set-Cookie") == 2);
  CHECK(r.headers.get("Via") == "1.1 rproxy");
  CHECK(r.reason == "OK");
}
