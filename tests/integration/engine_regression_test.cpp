// Regression tests for engine bugs, each named after what broke.
#include <doctest/doctest.h>

#include "support/proxy_fixture.hpp"
#include "support/raw_client.hpp"
#include "support/scripted_upstream.hpp"

using namespace rproxy;
using namespace rproxy::test;

TEST_CASE("engine: HTTP/1.0 keep-alive clients are told the connection stays open") {
  // Without "Connection: keep-alive" in the answer an HTTP/1.0 client assumes close.
  auto e = start_echo("a");
  ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
  RawClient c(proxy.port());
  for (int i = 0; i < 2; ++i) {
    c.send("GET /ka HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n");
    auto r = c.read_response();
    CAPTURE(i);
    REQUIRE(r.status == 200);
    CHECK(iequal(r.header("Connection").value_or(""), "keep-alive"));
  }
  c.send("GET /nf HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n");
  auto missing = c.read_response();
  CHECK(missing.status == 200);
}

TEST_CASE("engine: a 404 for an unmatched route does not crash the worker") {
  // g++ 12 resumed a finished coroutine frame when a LocalResponse temporary was passed by value.
  std::vector<Route> routes{prefix_route("/api", {"http://127.0.0.1:1"})};
  ProxyFixture proxy(make_scenario(routes));
  for (int i = 0; i < 3; ++i) {
    RawClient c(proxy.port());
    c.send("GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n");
    auto r = c.read_response();
    CHECK(r.status == 404);
    CHECK(r.header("X-Rproxy-Error") == "no_route");
  }
}


TEST_CASE("engine: an upstream reset in a close-delimited body is passed on truncated") {
  // read_into reported a reset like a clean EOF, so the client got a final chunk for a cut-off body.
  UpstreamScript script;
  script.response = "HTTP/1.1 200 OK\r\n\r\nhello partial body";
  script.delay_after = std::chrono::milliseconds(50);
  script.end = UpstreamScript::End::Reset;
  ScriptedUpstream up(script);
  ProxyFixture proxy(make_scenario({make_route({up.url()})}));
  RawClient c(proxy.port());
  c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  auto all = c.read_until_close();
  CHECK(all.find("hello partial body") != std::string::npos);
  CHECK(all.find("\r\n0\r\n\r\n") == std::string::npos);
}

TEST_CASE("engine: a clean close ends a close-delimited body with a final chunk") {
  UpstreamScript script;
  script.response = "HTTP/1.1 200 OK\r\n\r\nwhole body";
  script.end = UpstreamScript::End::Close;
  ScriptedUpstream up(script);
  ProxyFixture proxy(make_scenario({make_route({up.url()})}));
  RawClient c(proxy.port());
  c.send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  auto all = c.read_until_close();
  CHECK(all.find("whole body") != std::string::npos);
  CHECK(all.find("\r\n0\r\n\r\n") != std::string::npos);
}

TEST_CASE("engine: Connection cannot strip Host or stage-added headers") {
  auto e = start_echo("a");
  auto route = make_route({echo_url(*e)});
  StageSpec stage;
  stage.type = "headers";
  stage.params = {{"request", {{"set", {{"X-Api-Key", "secret"}}}}}};
  route.stages.push_back(stage);
  ProxyFixture proxy(make_scenario({route}));
  RawClient c(proxy.port());
  c.send("GET /x HTTP/1.1\r\nHost: app.test\r\nConnection: X-Api-Key, Host, X-Drop\r\nX-Drop: 1\r\n\r\n");
  auto r = c.read_response();
  REQUIRE(r.status == 200);
  auto body = r.body;
  CHECK(body.find("[\"X-Api-Key\",\"secret\"]") != std::string::npos);
  CHECK(body.find("[\"Host\",\"app.test\"]") != std::string::npos);
  CHECK(body.find("X-Drop") == std::string::npos);
}

TEST_CASE("engine: endless empty lines before a request line are rejected") {
  auto e = start_echo("a");
  ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
  RawClient c(proxy.port());
  std::string crlfs;
  for (int i = 0; i < 1000; ++i) crlfs += "\r\n";
  c.send(crlfs);
  auto r = c.read_response();
  CHECK(r.status == 400);
}

TEST_CASE("engine: a header line over 8 KiB gets 431") {
  auto e = start_echo("a");
  ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
  RawClient c(proxy.port());
  c.send("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n");
  auto r = c.read_response();
  CHECK(r.status == 431);
}

TEST_CASE("engine: a silent new connection is closed at the head deadline") {
  auto e = start_echo("a");
  auto s = make_scenario({make_route({echo_url(*e)})});
  s.limits.head_timeout = std::chrono::milliseconds(300);
  ProxyFixture proxy(s);
  RawClient c(proxy.port());
  auto t0 = Clock::now();
  CHECK(c.wait_closed(std::chrono::milliseconds(3000)));
  CHECK(ms_since(t0) < 2500);
}

TEST_CASE("engine: an upstream that answers 413 mid-upload reaches the client") {
  // The failed body write used to turn the upstream's own early answer into 502 upstream_closed.
  UpstreamScript script;
  script.response = "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large";
  script.end = UpstreamScript::End::Close;
  ScriptedUpstream up(script);
  ProxyFixture proxy(make_scenario({make_route({up.url()})}));
  RawClient c(proxy.port());
  const std::size_t total = 64u << 20;
  c.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(total) + "\r\n\r\n");
  std::string chunk(256 * 1024, 'x');
  std::size_t sent = 0;
  while (sent < total && c.try_send(chunk)) sent += chunk.size();
  auto r = c.read_response();
  CHECK(r.status == 413);
  CHECK(r.body == "too large");
}
