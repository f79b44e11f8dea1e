// Integration tests: message framing through rproxy — HEAD, bodiless statuses, close-delimited and HTTP/1.0
// upstream responses, interim responses, absolute-form targets and client-requested close.
#include <doctest/doctest.h>

#include <cstdio>
#include <string>

#include "support/echo_json.hpp"
#include "support/proxy_fixture.hpp"
#include "support/raw_client.hpp"
#include "support/scripted_upstream.hpp"

using namespace rproxy;
using namespace rproxy::test;

TEST_SUITE("serve") {
  TEST_CASE("serve: HEAD response keeps Content-Length and has no body") {
    auto e = start_echo();
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    RawClient c(proxy.port());
    c.send("HEAD /?size=5000 HTTP/1.1\r\nHost: proxy.test\r\n\r\n");
    auto r = c.read_response({.head_request = true});
    REQUIRE(r.status == 200);
    CHECK(r.header("Content-Length") == "5000");
    CHECK_FALSE(r.has_header("Transfer-Encoding"));
    // No body bytes follow: the next response on the connection parses cleanly.
    c.send(get_request("/after-head"));
    auto next = c.read_response();
    REQUIRE(next.status == 200);
    CHECK(next.json()["target"] == "/after-head");
  }

  TEST_CASE("serve: 204 and 304 upstream responses carry no body") {
    auto e = start_echo();
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    RawClient c(proxy.port());
    for (int status : {204, 304}) {
      CAPTURE(status);
      c.send(get_request("/?status=" + std::to_string(status)));
      auto r = c.read_response();
      CHECK(r.status == status);
      CHECK_FALSE(r.has_header("Transfer-Encoding"));
    }
    c.send(get_request("/after"));
    auto next = c.read_response();
    REQUIRE(next.status == 200);
    CHECK(next.json()["target"] == "/after");
  }

  TEST_CASE("serve: close-delimited upstream body is re-framed for the client") {
    ScriptedUpstream up(UpstreamScript{.response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello until close"});
    ProxyFixture proxy(make_scenario({make_route({up.url()})}));
    {
      RawClient c(proxy.port());
      c.send(get_request("/eof"));
      auto r = c.read_response();
      REQUIRE(r.status == 200);
      CHECK(r.complete);
      CHECK(r.chunked);  // an HTTP/1.1 client gets a chunked body, so the connection can stay open
      CHECK(r.body == "hello until close");
    }
    {
      RawClient c(proxy.port());
      c.send("GET /eof HTTP/1.0\r\nHost: proxy.test\r\n\r\n");
      auto r = c.read_response();
      REQUIRE(r.status == 200);
      CHECK(r.body == "hello until close");
      CHECK(c.peer_closed());
    }
  }

  TEST_CASE("serve: HTTP/1.0 upstream response is answered as HTTP/1.1") {
    ScriptedUpstream up(UpstreamScript{.response = "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold"});
    ProxyFixture proxy(make_scenario({make_route({up.url()})}));
    RawClient c(proxy.port());
    c.send(get_request("/"));
    auto r = c.read_response();
    REQUIRE(r.status == 200);
    CHECK(r.version == "HTTP/1.1");
    CHECK(r.body == "old");
    CHECK(r.header("Via") == "1.0 rproxy");
    // The client connection is kept (the upstream one is not reused: HTTP/1.0 without keep-alive).
    c.send(get_request("/again"));
    auto again = c.read_response();
    CHECK(again.status == 200);
    CHECK(up.connections() == 2);
  }

  TEST_CASE("serve: interim 103 response is passed on before the final one") {
    ScriptedUpstream up(UpstreamScript{.response = "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                                                   "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"});
    ProxyFixture proxy(make_scenario({make_route({up.url()})}));
    RawClient c(proxy.port());
    c.send(get_request("/hints"));
    auto interim = c.read_response();
    CHECK(interim.status == 103);
    CHECK(interim.header("Link") == "</style.css>; rel=preload");
    auto r = c.read_response();
    CHECK(r.status == 200);
    CHECK(r.body == "ok");
  }

  TEST_CASE("serve: absolute-form target is forwarded in origin form") {
    auto e = start_echo();
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    auto r = fetch(proxy.port(), "GET http://proxy.test/abs/path?x=1 HTTP/1.1\r\nHost: proxy.test\r\n\r\n");
    REQUIRE(r.status == 200);
    auto doc = r.json();
    CHECK(doc["target"] == "/abs/path?x=1");
    CHECK(echo_header(doc, "Host") == "proxy.test");
  }

  TEST_CASE("serve: client Connection close is honoured") {
    auto e = start_echo();
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    RawClient c(proxy.port());
    c.send(get_request("/bye", "proxy.test", "Connection: close\r\n"));
    auto r = c.read_response();
    REQUIRE(r.status == 200);
    CHECK(r.header("Connection") == "close");
    CHECK(c.wait_closed());
    // The upstream never sees the client's Connection header (it is hop-by-hop).
    CHECK(echo_header_count(r.json(), "Connection") == 0);
  }

  TEST_CASE("serve: unrequested 101 from upstream gives 502") {
    ScriptedUpstream up(UpstreamScript{
        .response = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"});
    ProxyFixture proxy(make_scenario({make_route({up.url()})}));
    auto r = fetch(proxy.port(), get_request("/no-upgrade"));
    CHECK(r.status == 502);
    CHECK(r.header("X-Rproxy-Error") == "upstream_bad_response");
  }

  TEST_CASE("serve: request bodies are forwarded intact in both framings") {
    auto e = start_echo();
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    std::string body(200000, '\0');
    for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>((i * 7) ^ (i >> 5));
    RawClient c(proxy.port());
    c.send("PUT /cl HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
    auto r = c.read_response();
    REQUIRE(r.status == 200);
    CHECK(r.json()["body_size"] == body.size());
    CHECK(r.json()["body_sha256"] == sha256_hex(body));

    std::string chunked = "POST /te HTTP/1.1\r\nHost: proxy.test\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (std::size_t off = 0; off < body.size(); off += 30000) {
      auto piece = body.substr(off, 30000);
      char size[16];
      std::snprintf(size, sizeof size, "%zx", piece.size());
      chunked += std::string(size) + ";ext=1\r\n" + piece + "\r\n";
    }
    chunked += "0\r\nX-Trailer: t\r\n\r\n";
    c.send(chunked);
    r = c.read_response();
    REQUIRE(r.status == 200);
    CHECK(r.json()["body_size"] == body.size());
    CHECK(r.json()["body_sha256"] == sha256_hex(body));
    // A GET with a body is a legal request too.
    c.send("GET /get-body HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 4\r\n\r\nabcd");
    r = c.read_response();
    REQUIRE(r.status == 200);
    CHECK(r.json()["body_size"] == 4);
  }
}
