// Integration tests: how rproxy treats clients — malformed and oversized requests, pipelining, Expect,
// HTTP/1.0, slow clients, keep-alive and connection limits.
#include <sys/resource.h>

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "support/echo_json.hpp"
#include "support/proxy_fixture.hpp"
#include "support/raw_client.hpp"
#include "support/scripted_upstream.hpp"

using namespace rproxy;
using namespace rproxy::test;

namespace {

const std::string kOk = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

std::size_t count_of(const std::string& hay, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + 1)) ++n;
  return n;
}

// rejected sends request to a proxy in front of a scripted upstream and checks the answer is status with
// Connection: close, the connection is closed, and the upstream never heard of it.
void check_rejected(const std::string& request, int status, Limits limits = {}) {
  ScriptedUpstream up(UpstreamScript{.response = kOk});
  auto s = make_scenario({make_route({up.url()})});
  limits.drain_timeout = s.limits.drain_timeout;
  s.limits = limits;
  ProxyFixture proxy(s);
  RawClient c(proxy.port());
  c.send(request);
  auto r = c.read_response();
  INFO("request: " << request.substr(0, 300));
  INFO("response head: " << r.raw_head);
  CHECK(r.status == status);
  CHECK(r.complete);
  CHECK(r.header("Connection") == "close");
  CHECK_FALSE(r.body.empty());  // a short explanation
  CHECK(c.wait_closed());
  CHECK(up.connections() == 0);
  CHECK(up.received().empty());
}

}  // namespace

TEST_SUITE("serve") {
  TEST_CASE("serve: content-length with transfer-encoding is rejected before the upstream") {
    check_rejected(
        "POST /smuggle HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        "0\r\n\r\nGET /admin HTTP/1.1\r\nHost: proxy.test\r\n\r\n",
        400);
  }

  TEST_CASE("serve: duplicate Host is rejected with 400") {
    check_rejected("GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", 400);
  }

  TEST_CASE("serve: missing Host is rejected with 400") { check_rejected("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400); }

  TEST_CASE("serve: request line over 8 KiB gets 414") {
    check_rejected("GET /" + std::string(9000, 'a') + " HTTP/1.1\r\nHost: proxy.test\r\n\r\n", 414);
  }

  TEST_CASE("serve: 40 KiB of headers get 431") {
    std::string req = "GET / HTTP/1.1\r\nHost: proxy.test\r\n";
    for (int i = 0; i < 40; ++i) req += "X-Fill-" + std::to_string(i) + ": " + std::string(1024, 'v') + "\r\n";
    check_rejected(req + "\r\n", 431);
  }

  TEST_CASE("serve: 101 header fields get 431 and 100 are fine") {
    auto build = [](int fields) {
      std::string req = "GET / HTTP/1.1\r\nHost: proxy.test\r\n";
      for (int i = 1; i < fields; ++i) req += "X-H" + std::to_string(i) + ": " + std::to_string(i) + "\r\n";
      return req + "\r\n";
    };
    check_rejected(build(101), 431);
    auto e = start_echo();
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    auto r = fetch(proxy.port(), build(100));
    CHECK(r.status == 200);
  }

  TEST_CASE("serve: declared body over max_body gets 413") {
    Limits limits;
    limits.max_body = 1000;
    check_rejected(
        "POST /up HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 2000\r\n\r\n" + std::string(2000, 'x'), 413, limits);

    // Exactly at the limit is fine.
    auto e = start_echo();
    auto s = make_scenario({make_route({echo_url(*e)})});
    s.limits.max_body = 1000;
    ProxyFixture proxy(s);
    auto r = fetch(proxy.port(),
                   "POST /up HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 1000\r\n\r\n" + std::string(1000, 'x'));
    REQUIRE(r.status == 200);
    CHECK(r.json()["body_size"] == 1000);
  }

  TEST_CASE("serve: chunked body over max_body gets 413") {
    auto e = start_echo();
    auto s = make_scenario({make_route({echo_url(*e)})});
    s.limits.max_body = 1000;
    ProxyFixture proxy(s);
    auto chunked = [](std::size_t total) {
      std::string out = "POST /up HTTP/1.1\r\nHost: proxy.test\r\nTransfer-Encoding: chunked\r\n\r\n";
      for (std::size_t sent = 0; sent < total; sent += 500)
        out += "1f4\r\n" + std::string(500, 'y') + "\r\n";  // 0x1f4 = 500
      return out + "0\r\n\r\n";
    };
    {
      RawClient c(proxy.port());
      c.send(chunked(2000));
      auto r = c.read_response();
      CHECK(r.status == 413);
      CHECK(r.header("X-Rproxy-Error") == "request_body_too_large");
      CHECK(c.wait_closed());
    }
    auto r = fetch(proxy.port(), chunked(1000));
    REQUIRE(r.status == 200);
    CHECK(r.json()["body_size"] == 1000);
  }

  TEST_CASE("serve: malformed chunked request body gets 400 and close") {
    auto e = start_echo();
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    RawClient c(proxy.port());
    c.send("POST /bad-chunks HTTP/1.1\r\nHost: proxy.test\r\nTransfer-Encoding: chunked\r\n\r\n"
           "5\r\nhello\r\nzz\r\nxx\r\n0\r\n\r\n");
    auto r = c.read_response();
    CHECK(r.status == 400);
    CHECK(r.header("Connection") == "close");
    CHECK(c.wait_closed());
  }

  TEST_CASE("serve: a stalled request body gets 408 after body_timeout") {
    auto e = start_echo();
    auto s = make_scenario({make_route({echo_url(*e)})});
    s.limits.body_timeout = Millis(500);
    ProxyFixture proxy(s);
    RawClient c(proxy.port());
    auto start = Clock::now();
    c.send("POST /stall HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 100\r\n\r\n0123456789");
    auto r = c.read_response();
    auto elapsed = ms_since(start);
    CHECK(r.status == 408);
    CHECK(elapsed >= 450);
    CHECK(elapsed < 3000);
    CHECK(c.wait_closed());
  }

  TEST_CASE("serve: idle keep-alive connection is closed after idle_timeout") {
    auto e = start_echo();
    auto s = make_scenario({make_route({echo_url(*e)})});
    s.limits.idle_timeout = Millis(500);
    ProxyFixture proxy(s);
    RawClient c(proxy.port());
    c.send(get_request("/once"));
    REQUIRE(c.read_response().status == 200);
    auto start = Clock::now();
    CHECK(c.wait_closed(milliseconds(4000)));
    auto elapsed = ms_since(start);
    CHECK(elapsed >= 400);
    CHECK(elapsed < 3000);
    CHECK(c.buffer().empty());  // closed silently: no 408 for a connection that was merely idle
  }

  TEST_CASE("serve: unsupported Expect value gets 417") {
    ScriptedUpstream up(UpstreamScript{.response = kOk});
    ProxyFixture proxy(make_scenario({make_route({up.url()})}));
    RawClient c(proxy.port());
    c.send("POST /e HTTP/1.1\r\nHost: proxy.test\r\nExpect: something-else\r\nContent-Length: 3\r\n\r\nabc");
    auto r = c.read_response();
    CHECK(r.status == 417);
    CHECK(r.header("X-Rproxy-Error") == "expectation_failed");
    CHECK(up.connections() == 0);
  }

  TEST_CASE("serve: pipelined requests are answered in order") {
    auto e = start_echo();
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    RawClient c(proxy.port());
    c.send(get_request("/first?delay=100ms") + "POST /second HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 3\r\n\r\nabc" +
           get_request("/third"));
    auto r1 = c.read_response();
    auto r2 = c.read_response();
    auto r3 = c.read_response();
    REQUIRE(r1.status == 200);
    REQUIRE(r2.status == 200);
    REQUIRE(r3.status == 200);
    CHECK(r1.json()["target"] == "/first?delay=100ms");
    CHECK(r2.json()["target"] == "/second");
    CHECK(r2.json()["body_size"] == 3);
    CHECK(r3.json()["target"] == "/third");
    // The connection is still usable afterwards.
    c.send(get_request("/fourth"));
    CHECK(c.read_response().json()["target"] == "/fourth");
  }

  TEST_CASE("serve: a bad request followed by a pipelined good one gets one 400 and close") {
    ScriptedUpstream up(UpstreamScript{.response = kOk});
    ProxyFixture proxy(make_scenario({make_route({up.url()})}));
    RawClient c(proxy.port());
    c.send("GET /bad HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n" + get_request("/good"));
    auto all = c.read_until_close();
    CHECK(c.peer_closed());
    INFO("received: " << all);
    CHECK(all.rfind("HTTP/1.1 400 ", 0) == 0);
    CHECK(count_of(all, "HTTP/1.") == 1);
    CHECK(up.connections() == 0);
  }

  TEST_CASE("serve: Expect 100-continue gets exactly one interim response") {
    auto e = start_echo();
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    RawClient c(proxy.port());
    c.send("POST /e HTTP/1.1\r\nHost: proxy.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    auto interim = c.read_head();
    REQUIRE(interim.status == 100);
    CHECK(interim.reason == "Continue");
    CHECK(c.buffer().empty());
    c.send("hello");
    auto r = c.read_response();
    REQUIRE(r.status == 200);
    auto doc = r.json();
    CHECK(doc["body_size"] == 5);
    CHECK(echo_header_count(doc, "Expect") == 0);
    // Nothing else (no second 100) follows on the connection.
    c.send(get_request("/next"));
    auto next = c.read_response();
    CHECK(next.status == 200);
    CHECK(next.json()["target"] == "/next");

    // A client that sends the body without waiting still gets at most one 100 and the final response.
    RawClient eager(proxy.port());
    eager.send("PUT /e HTTP/1.1\r\nHost: proxy.test\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc");
    auto first = eager.read_response();
    if (first.status == 100) first = eager.read_response();
    REQUIRE(first.status == 200);
    CHECK(first.json()["body_size"] == 3);
  }

  TEST_CASE("serve: HTTP/1.0 request gets a response and close") {
    auto e = start_echo();
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    {
      RawClient c(proxy.port());
      c.send("GET /ten HTTP/1.0\r\nHost: proxy.test\r\n\r\n");
      auto r = c.read_response();
      REQUIRE(r.status == 200);
      CHECK(r.json()["target"] == "/ten");
      CHECK(c.wait_closed());
    }
    {
      // A chunked upstream body cannot be sent chunked to an HTTP/1.0 client: it is delimited by close.
      RawClient c(proxy.port());
      c.send("GET /?size=3000&chunked=1 HTTP/1.0\r\nHost: proxy.test\r\n\r\n");
      auto r = c.read_response();
      REQUIRE(r.status == 200);
      CHECK_FALSE(r.has_header("Transfer-Encoding"));
      CHECK(r.complete);
      CHECK(r.body.size() == 3000);
      CHECK(first_payload_mismatch(r.body) == -1);
    }
  }

  TEST_CASE("serve: a client trickling its head gets 408 after head_timeout") {
    auto e = start_echo();
    auto s = make_scenario({make_route({echo_url(*e)})});
    s.limits.head_timeout = Millis(1000);
    ProxyFixture proxy(s);
    RawClient c(proxy.port());
    std::string head = "GET /slow HTTP/1.1\r\nHost: proxy.test\r\nX-Pad: " + std::string(200, 'a') + "\r\n\r\n";
    auto start = Clock::now();
    for (std::size_t i = 0; i < head.size() && ms_since(start) < 5000; ++i) {
      if (!c.try_send(std::string_view(head).substr(i, 1))) break;
      if (c.fill(milliseconds(200)) || c.peer_closed()) break;  // an answer (or close) arrived
    }
    auto r = c.read_response();
    auto elapsed = ms_since(start);
    CHECK(r.status == 408);
    CHECK(r.header("X-Rproxy-Error") == "request_timeout");
    CHECK(elapsed >= 900);
    CHECK(elapsed < 3000);
    CHECK(c.wait_closed());
  }

  TEST_CASE("serve: idle keep-alive connections do not delay a new request") {
    auto e = start_echo();
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    std::vector<std::unique_ptr<RawClient>> idle;
    for (int i = 0; i < 30; ++i) {
      idle.push_back(std::make_unique<RawClient>(proxy.port()));
      idle.back()->send(get_request("/idle/" + std::to_string(i)));
      REQUIRE(idle.back()->read_response().status == 200);
    }
    auto start = Clock::now();
    auto r = fetch(proxy.port(), get_request("/fresh"));
    CHECK(ms_since(start) < 1000);
    REQUIRE(r.status == 200);
    CHECK(r.json()["target"] == "/fresh");
    for (int i : {0, 15, 29}) {
      CAPTURE(i);
      idle[static_cast<std::size_t>(i)]->send(get_request("/again"));
      CHECK(idle[static_cast<std::size_t>(i)]->read_response().status == 200);
    }
  }

  TEST_CASE("serve: 1000 concurrent connections all get answered") {
    rlimit rl{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &rl) == 0);
    // Client sockets, proxy client and upstream sockets and echo sockets all live in this process.
    const rlim_t want = 6000;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
      MESSAGE("skipped: RLIMIT_NOFILE hard limit " << rl.rlim_max << " < " << want);
      return;
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
      rl.rlim_cur = want;
      REQUIRE(::setrlimit(RLIMIT_NOFILE, &rl) == 0);
    }
    auto a = start_echo("a");
    auto b = start_echo("b");
    auto s = make_scenario({make_route({echo_url(*a), echo_url(*b)})});
    s.limits.max_conns = 2000;
    ProxyFixture proxy(s);
    const int n = 1000;
    std::vector<std::unique_ptr<RawClient>> clients;
    for (int i = 0; i < n; ++i) clients.push_back(std::make_unique<RawClient>(proxy.port()));
    for (int i = 0; i < n; ++i) clients[static_cast<std::size_t>(i)]->send(get_request("/c/" + std::to_string(i)));
    int ok = 0;
    for (int i = 0; i < n; ++i) {
      auto r = clients[static_cast<std::size_t>(i)]->read_response({.timeout = milliseconds(10000)});
      if (r.status == 200 && r.json()["target"] == "/c/" + std::to_string(i)) ++ok;
    }
    CHECK(ok == n);
    CHECK(proxy.server().stats().connections_refused == 0);
  }

  TEST_CASE("serve: max_conns refuses the extra connection with 503") {
    auto e = start_echo();
    auto s = make_scenario({make_route({echo_url(*e)})});
    s.limits.max_conns = 5;
    ProxyFixture proxy(s);
    std::vector<std::unique_ptr<RawClient>> held;
    for (int i = 0; i < 5; ++i) {
      held.push_back(std::make_unique<RawClient>(proxy.port()));
      held.back()->send(get_request("/held"));
      REQUIRE(held.back()->read_response().status == 200);
    }
    RawClient extra(proxy.port());
    extra.try_send(get_request("/extra"));  // may fail if the proxy already closed; the 503 is what matters
    auto r = extra.read_response();
    CHECK(r.status == 503);
    CHECK(r.header("X-Rproxy-Error") == "max_conns");
    CHECK(extra.wait_closed());
    CHECK(proxy.server().stats().connections_refused == 1);
    for (auto& c : held) {
      c->send(get_request("/still"));
      auto again = c->read_response();
      CHECK(again.status == 200);
    }
    // Closing one frees a slot.
    held.pop_back();
    int later_status = 0;
    for (auto start = Clock::now(); later_status != 200 && ms_since(start) < 3000;) {
      later_status = fetch(proxy.port(), get_request("/later")).status;
      if (later_status != 200) std::this_thread::sleep_for(milliseconds(50));
    }
    CHECK(later_status == 200);
  }
}
