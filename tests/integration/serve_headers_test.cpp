// Integration tests: what rproxy removes, adds and keeps in heads on the way through (RFC 9110 §7.6).
#include <doctest/doctest.h>

#include <set>
#include <string>
#include <vector>

#include "support/echo_json.hpp"
#include "support/proxy_fixture.hpp"
#include "support/raw_client.hpp"
#include "support/scripted_upstream.hpp"

using namespace rproxy;
using namespace rproxy::test;

namespace {

// seen_upstream sends one request through the proxy and returns what the echo upstream saw.
nlohmann::json seen_upstream(std::uint16_t port, const std::string& request) {
  auto r = fetch(port, request);
  INFO("response head: " << r.raw_head);
  REQUIRE(r.status == 200);
  REQUIRE(r.complete);
  return r.json();
}

bool is_added_by_proxy(const std::string& name) {
  return iequal(name, "X-Forwarded-For") || iequal(name, "X-Forwarded-Proto") || iequal(name, "X-Forwarded-Host") ||
         iequal(name, "Via");
}

}  // namespace

TEST_SUITE("serve") {
  TEST_CASE("serve: hop-by-hop and connection-named headers are not forwarded") {
    auto e = start_echo();
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    auto doc = seen_upstream(proxy.port(),
                             "GET /h HTTP/1.1\r\n"
                             "Host: proxy.test\r\n"
                             "Connection: keep-alive, X-Internal\r\n"
                             "Connection: x-second\r\n"
                             "X-Internal: a\r\n"
                             "X-Second: b\r\n"
                             "Keep-Alive: timeout=5\r\n"
                             "Proxy-Connection: keep-alive\r\n"
                             "TE: trailers\r\n"
                             "Trailer: X-Checksum\r\n"
                             "Upgrade: h2c\r\n"
                             "Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"
                             "X-Kept: yes\r\n"
                             "\r\n");
    for (const char* gone : {"Connection", "X-Internal", "X-Second", "Keep-Alive", "Proxy-Connection", "TE", "Trailer",
                             "Upgrade", "Proxy-Authorization"}) {
      CAPTURE(gone);
      CHECK(echo_header_count(doc, gone) == 0);
    }
    CHECK(echo_header(doc, "X-Kept") == "yes");
    CHECK(doc["target"] == "/h");
  }

  TEST_CASE("serve: hop-by-hop response headers are not passed to the client") {
    ScriptedUpstream up(UpstreamScript{
        .response = "HTTP/1.1 200 OK\r\nConnection: X-Up, keep-alive\r\nX-Up: secret\r\nKeep-Alive: timeout=5\r\n"
                    "Proxy-Connection: keep-alive\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok",
        .end = UpstreamScript::End::Close});
    ProxyFixture proxy(make_scenario({make_route({up.url()})}));
    auto r = fetch(proxy.port(), get_request("/"));
    REQUIRE(r.status == 200);
    CHECK(r.body == "ok");
    CHECK_FALSE(r.has_header("X-Up"));
    CHECK_FALSE(r.has_header("Keep-Alive"));
    CHECK_FALSE(r.has_header("Proxy-Connection"));
    CHECK(r.header("X-Kept") == "yes");
    CHECK(r.header("Via") == "1.1 rproxy");
    // Connection may only carry rproxy's own tokens, never the upstream's.
    if (auto c = r.header("Connection")) CHECK(c->find("X-Up") == std::string::npos);
  }

  TEST_CASE("serve: X-Forwarded-For is added or appended to") {
    auto e = start_echo();
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    auto doc = seen_upstream(proxy.port(), get_request("/"));
    CHECK(echo_header(doc, "X-Forwarded-For") == "127.0.0.1");

    doc = seen_upstream(proxy.port(), get_request("/", "proxy.test", "X-Forwarded-For: 203.0.113.7\r\n"));
    CHECK(echo_header(doc, "X-Forwarded-For") == "203.0.113.7, 127.0.0.1");
    CHECK(echo_header_count(doc, "X-Forwarded-For") == 1);

    doc = seen_upstream(proxy.port(), get_request("/", "proxy.test",
                                                  "X-Forwarded-For: 203.0.113.7\r\nX-Other: 1\r\n"
                                                  "x-forwarded-for: 198.51.100.2, 10.0.0.1\r\n"));
    CHECK(echo_header(doc, "X-Forwarded-For") == "203.0.113.7, 198.51.100.2, 10.0.0.1, 127.0.0.1");
    CHECK(echo_header_count(doc, "X-Forwarded-For") == 1);
  }

  TEST_CASE("serve: X-Forwarded-Proto X-Forwarded-Host and Via are set") {
    auto e = start_echo();
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    auto doc = seen_upstream(proxy.port(), get_request("/", "app.test:8080"));
    CHECK(echo_header(doc, "X-Forwarded-Proto") == "http");
    CHECK(echo_header(doc, "X-Forwarded-Host") == "app.test:8080");
    CHECK(echo_header(doc, "Via") == "1.1 rproxy");

    // Client-supplied values are not trusted for Proto and Host; Via is a list and is appended to.
    doc = seen_upstream(proxy.port(), get_request("/", "app.test",
                                                  "X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\n"
                                                  "Via: 1.0 fred\r\n"));
    CHECK(echo_header(doc, "X-Forwarded-Proto") == "http");
    CHECK(echo_header_count(doc, "X-Forwarded-Proto") == 1);
    CHECK(echo_header(doc, "X-Forwarded-Host") == "app.test");
    CHECK(echo_header_count(doc, "X-Forwarded-Host") == 1);
    CHECK(echo_header(doc, "Via") == "1.0 fred, 1.1 rproxy");

    // HTTP/1.0 clients are recorded as such in Via.
    RawClient c(proxy.port());
    c.send("GET /old HTTP/1.0\r\nHost: app.test\r\n\r\n");
    auto r = c.read_response();
    REQUIRE(r.status == 200);
    CHECK(echo_header(r.json(), "Via") == "1.0 rproxy");
  }

  TEST_CASE("serve: Host is preserved by default") {
    auto e = start_echo();
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    auto doc = seen_upstream(proxy.port(), get_request("/", "App.Test:8080"));
    CHECK(echo_header(doc, "Host") == "App.Test:8080");
    CHECK(echo_header_count(doc, "Host") == 1);
  }

  TEST_CASE("serve: host_header upstream replaces Host") {
    auto e = start_echo();
    auto route = make_route({echo_url(*e)});
    route.host_header = HostHeader::Upstream;
    ProxyFixture proxy(make_scenario({route}));
    auto doc = seen_upstream(proxy.port(), get_request("/", "app.test:8080"));
    CHECK(echo_header(doc, "Host") == "127.0.0.1:" + std::to_string(e->port()));
    CHECK(echo_header_count(doc, "Host") == 1);
    CHECK(echo_header(doc, "X-Forwarded-Host") == "app.test:8080");
  }

  TEST_CASE("serve: target and query are forwarded byte for byte") {
    auto e = start_echo();
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    for (const std::string target : {"/a%2Fb?q=1+2&x=%20", "/%7Euser/a%20b/?k=v&&k=%41&=", "/x;p=1/y?a=/b",
                                     "/UPPER/lower?Q=%2f%2F", "/?", "/a//b", "/a/./b/../c"}) {
      CAPTURE(target);
      auto doc = seen_upstream(proxy.port(), get_request(target));
      CHECK(doc["target"] == target);
    }
    // The request line as a raw upstream receives it (also for targets the echo itself cannot parse).
    for (const std::string target : {"/a%2Fb?q=1+2&x=%20", "/x;p=1/y?a=/b?c", "/p?redirect=http://h/x?y=1"}) {
      CAPTURE(target);
      ScriptedUpstream up(UpstreamScript{.response = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"});
      ProxyFixture raw(make_scenario({make_route({up.url()})}));
      auto r = fetch(raw.port(), get_request(target));
      CHECK(r.status == 200);
      CHECK(up.received().rfind("GET " + target + " HTTP/1.1\r\n", 0) == 0);
    }
  }

  TEST_CASE("serve: header order spelling and duplicates are kept") {
    auto e = start_echo();
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    auto doc = seen_upstream(proxy.port(),
                             "GET / HTTP/1.1\r\n"
                             "X-B: 1\r\n"
                             "Host: proxy.test\r\n"
                             "x-a: 2\r\n"
                             "X-B: 3\r\n"
                             "Accept: */*\r\n"
                             "X-Mixed-CASE:   padded value  \r\n"
                             "Cookie: a=1\r\n"
                             "Cookie: b=2\r\n"
                             "\r\n");
    std::vector<std::pair<std::string, std::string>> kept;
    for (const auto& h : echo_headers(doc))
      if (!is_added_by_proxy(h.first)) kept.push_back(h);
    std::vector<std::pair<std::string, std::string>> expected{
        {"X-B", "1"},    {"Host", "proxy.test"},        {"x-a", "2"},       {"X-B", "3"},
        {"Accept", "*/*"}, {"X-Mixed-CASE", "padded value"}, {"Cookie", "a=1"}, {"Cookie", "b=2"}};
    CHECK(kept == expected);
  }

  TEST_CASE("serve: upstream Content-Encoding and body pass through untouched") {
    auto e = start_echo();
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    RawClient c(proxy.port());
    c.send(get_request("/?size=1000&header=Content-Encoding:gzip", "proxy.test", "Accept-Encoding: gzip\r\n"));
    auto r = c.read_response();
    REQUIRE(r.status == 200);
    REQUIRE(r.complete);
    CHECK(r.header("Content-Encoding") == "gzip");
    CHECK(r.header("Content-Length") == "1000");
    CHECK(r.header("Content-Type") == "application/octet-stream");
    CHECK(r.body.size() == 1000);
    CHECK(first_payload_mismatch(r.body) == -1);

    c.send(get_request("/?size=5000&chunked=1&header=Content-Encoding:br", "proxy.test", "Accept-Encoding: gzip\r\n"));
    r = c.read_response();
    REQUIRE(r.status == 200);
    REQUIRE(r.complete);
    CHECK(r.header("Content-Encoding") == "br");
    CHECK(r.body.size() == 5000);
    CHECK(first_payload_mismatch(r.body) == -1);

    // The request side too: the client's Content-Encoding and body reach the upstream unchanged.
    std::string body(3000, '\0');
    for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>(i * 31 + 7);
    c.send("POST /up HTTP/1.1\r\nHost: proxy.test\r\nContent-Encoding: gzip\r\nContent-Length: 3000\r\n\r\n" + body);
    r = c.read_response();
    REQUIRE(r.status == 200);
    auto doc = r.json();
    CHECK(echo_header(doc, "Content-Encoding") == "gzip");
    CHECK(doc["body_size"] == 3000);
    CHECK(doc["body_sha256"] == sha256_hex(body));
  }

  TEST_CASE("serve: no pseudo headers are added upstream") {
    auto e = start_echo();
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    auto doc = seen_upstream(proxy.port(),
                             "GET /p HTTP/1.1\r\nHost: proxy.test\r\nUser-Agent: t/1\r\nAccept: */*\r\n\r\n");
    std::multiset<std::string> got;
    for (const auto& h : echo_headers(doc)) {
      CAPTURE(h.first);
      CHECK(h.first.front() != ':');
      got.insert(h.first);
    }
    std::multiset<std::string> expected{"Host", "User-Agent", "Accept", "X-Forwarded-For", "X-Forwarded-Proto",
                                        "X-Forwarded-Host", "Via"};
    CHECK(got == expected);
    CHECK(doc["version"] == "HTTP/1.1");
  }
}
