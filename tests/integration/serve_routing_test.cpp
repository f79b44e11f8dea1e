// Integration tests: routing in an in-process ProxyServer in front of in-process echo upstreams.
#include <doctest/doctest.h>

#include <string>

#include "support/echo_json.hpp"
#include "support/proxy_fixture.hpp"
#include "support/raw_client.hpp"

using namespace rproxy;
using namespace rproxy::test;

namespace {

// routed sends one request through the proxy and returns the echo's JSON (name tells which upstream).
nlohmann::json routed(std::uint16_t port, const std::string& request) {
  auto r = fetch(port, request);
  INFO("request: " << request << "response head: " << r.raw_head);
  REQUIRE(r.status == 200);
  REQUIRE(r.complete);
  return r.json();
}

std::string req(const std::string& method, const std::string& target, const std::string& host = "proxy.test",
                const std::string& extra = "") {
  return method + " " + target + " HTTP/1.1\r\nHost: " + host + "\r\n" + extra + "\r\n";
}

}  // namespace

TEST_SUITE("serve") {
  TEST_CASE("serve: longest path prefix wins") {
    auto a = start_echo("api");
    auto b = start_echo("api_v2");
    auto c = start_echo("root");
    // Declared shortest first, so the order in the scenario cannot be what picks the winner.
    ProxyFixture proxy(make_scenario({prefix_route("/", {echo_url(*c)}), prefix_route("/api", {echo_url(*a)}),
                                      prefix_route("/api/v2", {echo_url(*b)})}));
    auto p = proxy.port();
    CHECK(routed(p, req("GET", "/api/v2/users"))["name"] == "api_v2");
    CHECK(routed(p, req("GET", "/api/v2"))["name"] == "api_v2");
    CHECK(routed(p, req("GET", "/api/v2?x=1"))["name"] == "api_v2");
    CHECK(routed(p, req("GET", "/api/v3"))["name"] == "api");
    CHECK(routed(p, req("GET", "/api"))["name"] == "api");
    CHECK(routed(p, req("GET", "/api/"))["name"] == "api");
    // Prefixes are segment-aware: /apix is not under /api.
    CHECK(routed(p, req("GET", "/apix"))["name"] == "root");
    CHECK(routed(p, req("GET", "/api/v2x"))["name"] == "api");
    CHECK(routed(p, req("GET", "/"))["name"] == "root");
    CHECK(routed(p, req("GET", "/other/thing"))["name"] == "root");
  }

  TEST_CASE("serve: exact path match beats a prefix and ignores the query") {
    auto a = start_echo("prefix");
    auto b = start_echo("exact");
    auto r_exact = make_route({echo_url(*b)}, "exact");
    r_exact.match.path = "/hooks";
    ProxyFixture proxy(make_scenario({prefix_route("/hooks", {echo_url(*a)}, "prefix"), r_exact}));
    auto p = proxy.port();
    CHECK(routed(p, req("GET", "/hooks"))["name"] == "exact");
    CHECK(routed(p, req("GET", "/hooks?x=1&y=2"))["name"] == "exact");
    CHECK(routed(p, req("GET", "/hooks/"))["name"] == "prefix");
    CHECK(routed(p, req("GET", "/hooks/1"))["name"] == "prefix");
  }

  TEST_CASE("serve: host match is case-insensitive and ignores the port") {
    auto a = start_echo("default");
    auto b = start_echo("admin");
    auto c = start_echo("wildcard");
    auto r_admin = make_route({echo_url(*b)}, "admin");
    r_admin.match.host = "admin.localhost";
    auto r_wild = make_route({echo_url(*c)}, "wild");
    r_wild.match.host = "*.example.com";
    ProxyFixture proxy(make_scenario({make_route({echo_url(*a)}, "default"), r_admin, r_wild}));
    auto p = proxy.port();
    CHECK(routed(p, req("GET", "/", "admin.localhost"))["name"] == "admin");
    CHECK(routed(p, req("GET", "/", "admin.localhost:8080"))["name"] == "admin");
    CHECK(routed(p, req("GET", "/", "ADMIN.Localhost"))["name"] == "admin");
    CHECK(routed(p, req("GET", "/", "other.localhost"))["name"] == "default");
    CHECK(routed(p, req("GET", "/x", "a.example.com"))["name"] == "wildcard");
    CHECK(routed(p, req("GET", "/x", "a.b.example.com:9000"))["name"] == "wildcard");
    CHECK(routed(p, req("GET", "/x", "example.com"))["name"] == "default");
  }

  TEST_CASE("serve: method match") {
    auto a = start_echo("any");
    auto b = start_echo("writes");
    auto r_post = prefix_route("/m", {echo_url(*b)}, "writes");
    r_post.match.methods = {"POST", "PUT"};
    ProxyFixture proxy(make_scenario({make_route({echo_url(*a)}, "any"), r_post}));
    auto p = proxy.port();
    CHECK(routed(p, req("GET", "/m"))["name"] == "any");
    CHECK(routed(p, req("POST", "/m", "proxy.test", "Content-Length: 0\r\n"))["name"] == "writes");
    CHECK(routed(p, req("PUT", "/m/1", "proxy.test", "Content-Length: 2\r\n") + "hi")["name"] == "writes");
    CHECK(routed(p, req("DELETE", "/m"))["name"] == "any");
    // Methods are case-sensitive tokens.
    CHECK(routed(p, req("GET", "/x"))["name"] == "any");
  }

  TEST_CASE("serve: header match by value and by presence") {
    auto a = start_echo("default");
    auto b = start_echo("dev");
    auto c = start_echo("traced");
    auto r_dev = make_route({echo_url(*b)}, "dev");
    r_dev.match.headers = {{"X-Env", "dev"}};
    auto r_traced = make_route({echo_url(*c)}, "traced");
    r_traced.match.headers = {{"X-Trace", "*"}};
    ProxyFixture proxy(make_scenario({make_route({echo_url(*a)}, "default"), r_dev, r_traced}));
    auto p = proxy.port();
    CHECK(routed(p, req("GET", "/", "proxy.test", "X-Env: dev\r\n"))["name"] == "dev");
    CHECK(routed(p, req("GET", "/", "proxy.test", "x-env: dev\r\n"))["name"] == "dev");  // names are case-insensitive
    CHECK(routed(p, req("GET", "/", "proxy.test", "X-Env: prod\r\n"))["name"] == "default");
    CHECK(routed(p, req("GET", "/", "proxy.test", "X-Trace: 1\r\n"))["name"] == "traced");
    CHECK(routed(p, req("GET", "/", "proxy.test", "X-Trace: \r\n"))["name"] == "traced");
    CHECK(routed(p, req("GET", "/"))["name"] == "default");
  }

  TEST_CASE("serve: strip_prefix forwards the rest of the path") {
    auto e = start_echo("api");
    auto r = prefix_route("/api", {echo_url(*e)}, "api");
    r.strip_prefix = true;
    ProxyFixture proxy(make_scenario({r}));
    auto p = proxy.port();
    CHECK(routed(p, req("GET", "/api/users?x=1"))["target"] == "/users?x=1");
    CHECK(routed(p, req("GET", "/api/users/7/"))["target"] == "/users/7/");
    CHECK(routed(p, req("GET", "/api"))["target"] == "/");
    CHECK(routed(p, req("GET", "/api/"))["target"] == "/");
    CHECK(routed(p, req("GET", "/api?q=%20"))["target"] == "/?q=%20");
  }

  TEST_CASE("serve: rewrite replaces the path and keeps the query") {
    auto e = start_echo("hooks");
    auto r = make_route({echo_url(*e)}, "hooks");
    r.match.path = "/hooks";
    r.rewrite = "/api/hooks/incoming";
    auto r2 = prefix_route("/old", {echo_url(*e)}, "old");
    r2.rewrite = "/new";
    ProxyFixture proxy(make_scenario({r, r2}));
    auto p = proxy.port();
    CHECK(routed(p, req("GET", "/hooks"))["target"] == "/api/hooks/incoming");
    CHECK(routed(p, req("GET", "/hooks?a=b&c=%41"))["target"] == "/api/hooks/incoming?a=b&c=%41");
    CHECK(routed(p, req("GET", "/old/anything/below?z=1"))["target"] == "/new?z=1");
  }

  TEST_CASE("serve: unmatched request gets 404 naming no route") {
    auto e = start_echo("api");
    ProxyFixture proxy(make_scenario({prefix_route("/api", {echo_url(*e)}, "api")}));
    RawClient c(proxy.port());
    c.send(req("GET", "/nope?x=1"));
    auto r = c.read_response();
    REQUIRE(r.status == 404);
    CHECK(r.complete);
    CHECK(r.header("X-Rproxy-Error") == "no_route");
    CHECK(r.body.find("no route matched") != std::string::npos);
    CHECK(r.body.find("/nope") != std::string::npos);
    // A 404 for a bodyless request does not cost the connection.
    c.send(req("GET", "/api/ok"));
    auto ok = c.read_response();
    CHECK(ok.status == 200);
    CHECK(ok.json()["target"] == "/api/ok");
  }
}
