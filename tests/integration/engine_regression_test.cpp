// Regression tests for engine bugs, each named after what broke.
#include <doctest/doctest.h>

#include "support/proxy_fixture.hpp"
#include "support/raw_client.hpp"

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
