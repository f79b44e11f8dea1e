// Integration tests: upstream failures and misbehaviour (scripted raw upstreams), and the upstream pool.
#include <doctest/doctest.h>

#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/echo_json.hpp"
#include "support/proxy_fixture.hpp"
#include "support/raw_client.hpp"
#include "support/scripted_upstream.hpp"
#include "support/subprocess.hpp"

using namespace rproxy;
using namespace rproxy::test;

namespace {

const std::string kOk = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

// through_scripted runs one GET through a proxy in front of a scripted upstream answering `response`.
HttpResponse through_scripted(const std::string& response) {
  ScriptedUpstream up(UpstreamScript{.response = response});
  ProxyFixture proxy(make_scenario({make_route({up.url()})}));
  return fetch(proxy.port(), get_request("/"));
}

}  // namespace

TEST_SUITE("serve") {
  TEST_CASE("serve: upstream refusing the connection gives 502") {
    ClosedPort dead;
    ProxyFixture proxy(make_scenario({make_route({dead.url()})}));
    RawClient c(proxy.port());
    c.send(get_request("/x"));
    auto r = c.read_response();
    REQUIRE(r.status == 502);
    CHECK(r.complete);
    CHECK(r.header("X-Rproxy-Error") == "upstream_connect_refused");
    CHECK(r.body.find(std::to_string(dead.port())) != std::string::npos);  // names the upstream
    CHECK(proxy.server().stats().upstream_errors == 1);
    // The client connection survives a bodyless request's 502.
    c.send(get_request("/y"));
    CHECK(c.read_response().status == 502);
  }

  TEST_CASE("serve: silent upstream gives 504 after read_timeout") {
    ScriptedUpstream up(UpstreamScript{.end = UpstreamScript::End::Silent});
    auto route = make_route({up.url()});
    route.read_timeout = Millis(500);
    ProxyFixture proxy(make_scenario({route}));
    RawClient c(proxy.port());
    auto start = Clock::now();
    c.send(get_request("/silence"));
    auto r = c.read_response();
    auto elapsed = ms_since(start);
    REQUIRE(r.status == 504);
    CHECK(r.header("X-Rproxy-Error") == "upstream_response_timeout");
    CHECK(elapsed >= 450);
    CHECK(elapsed < 2000);
    CHECK(up.received().rfind("GET /silence HTTP/1.1\r\n", 0) == 0);
  }

  TEST_CASE("serve: garbage status line from upstream gives 502") {
    for (const std::string bad : {"garbage\r\n\r\n", "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
                                  "HTTP/9.9 200 OK\r\nContent-Length: 0\r\n\r\n",
                                  "HTTP/1.1 200 OK\r\nNo colon here\r\nContent-Length: 0\r\n\r\n"}) {
      CAPTURE(bad);
      auto r = through_scripted(bad);
      CHECK(r.status == 502);
      CHECK(r.header("X-Rproxy-Error") == "upstream_bad_response");
    }
  }

  TEST_CASE("serve: upstream response with content-length and transfer-encoding gives 502") {
    for (const std::string bad :
         {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
          "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"}) {
      CAPTURE(bad);
      auto r = through_scripted(bad);
      CHECK(r.status == 502);
      CHECK(r.header("X-Rproxy-Error") == "upstream_bad_response");
      CHECK(r.body.find("hello") == std::string::npos);
    }
  }

  TEST_CASE("serve: upstream dying mid-body truncates the client response") {
    for (auto end : {UpstreamScript::End::Close, UpstreamScript::End::Reset}) {
      CAPTURE(static_cast<int>(end));
      ScriptedUpstream up(UpstreamScript{.response = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789",
                                         .delay_after = milliseconds(100),
                                         .end = end});
      ProxyFixture proxy(make_scenario({make_route({up.url()})}));
      RawClient c(proxy.port());
      c.send(get_request("/cut"));
      auto r = c.read_response();
      CHECK(r.status == 200);
      CHECK(r.header("Content-Length") == "1000");
      CHECK_FALSE(r.complete);
      CHECK(r.body.size() < 1000);
      CHECK(r.body == "0123456789");
      CHECK(c.peer_closed());
    }
    {
      // Chunked: the client must never see the terminating zero chunk.
      ScriptedUpstream up(UpstreamScript{
          .response = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n5\r\nab"});
      ProxyFixture proxy(make_scenario({make_route({up.url()})}));
      RawClient c(proxy.port());
      c.send(get_request("/cut"));
      auto r = c.read_response();
      CHECK(r.status == 200);
      CHECK(r.chunked);
      CHECK_FALSE(r.complete);
      CHECK(c.peer_closed());
    }
    {
      // curl reports a transfer closed with bytes outstanding as exit code 18.
      ScriptedUpstream up(UpstreamScript{.response = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789"});
      ProxyFixture proxy(make_scenario({make_route({up.url()})}));
      auto res = run_curl({"-o", "-", "http://127.0.0.1:" + std::to_string(proxy.port()) + "/cut"});
      CAPTURE(res.err);
      CHECK(res.exit_code == 18);
      CHECK(res.out == "0123456789");
    }
  }

  TEST_CASE("serve: upstream stalling mid-body is cut off after read_timeout") {
    ScriptedUpstream up(UpstreamScript{.response = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
                                       .end = UpstreamScript::End::Silent});
    auto route = make_route({up.url()});
    route.read_timeout = Millis(500);
    ProxyFixture proxy(make_scenario({route}));
    RawClient c(proxy.port());
    auto start = Clock::now();
    c.send(get_request("/stall"));
    auto r = c.read_response();
    auto elapsed = ms_since(start);
    CHECK(r.status == 200);
    CHECK_FALSE(r.complete);
    CHECK(r.body == "0123456789");
    CHECK(c.peer_closed());
    CHECK(elapsed >= 450);
    CHECK(elapsed < 3000);
  }

  TEST_CASE("serve: oversized upstream response head gives 502") {
    std::string head = "HTTP/1.1 200 OK\r\n";
    for (int i = 0; i < 80; ++i) head += "X-Big-" + std::to_string(i) + ": " + std::string(1000, 'b') + "\r\n";
    auto r = through_scripted(head + "Content-Length: 0\r\n\r\n");
    CHECK(r.status == 502);
    CHECK(r.header("X-Rproxy-Error") == "upstream_bad_response");
  }

  TEST_CASE("serve: keep-alive pool reuses one upstream connection") {
    auto e = start_echo();
    auto s = make_scenario({make_route({echo_url(*e)})});
    s.workers = 1;  // the pool is per event loop
    ProxyFixture proxy(s);
    std::set<std::string> remotes;
    {
      RawClient c(proxy.port());
      for (int i = 0; i < 10; ++i) {
        c.send(get_request("/ka/" + std::to_string(i)));
        auto r = c.read_response();
        REQUIRE(r.status == 200);
        remotes.insert(r.json()["remote_addr"].get<std::string>());
      }
    }
    for (int i = 0; i < 10; ++i) {
      auto r = fetch(proxy.port(), get_request("/fresh/" + std::to_string(i)));
      REQUIRE(r.status == 200);
      remotes.insert(r.json()["remote_addr"].get<std::string>());
    }
    CAPTURE(remotes.size());
    CHECK(remotes.size() == 1);
  }

  TEST_CASE("serve: a pooled connection the upstream closed while idle is replaced") {
    ScriptedUpstream up({UpstreamScript{.response = kOk, .delay_after = milliseconds(100)},
                         UpstreamScript{.response = kOk, .end = UpstreamScript::End::Silent, .exchanges = 100}});
    auto s = make_scenario({make_route({up.url()})});
    s.workers = 1;
    ProxyFixture proxy(s);
    RawClient c(proxy.port());
    c.send(get_request("/one"));
    auto r1 = c.read_response();
    CHECK(r1.status == 200);
    // The upstream closes its side 100 ms after answering; wait well past that.
    std::this_thread::sleep_for(milliseconds(600));
    c.send(get_request("/two"));
    auto r2 = c.read_response();
    CHECK(r2.status == 200);
    CHECK(r2.body == "ok");
    CHECK(up.connections() == 2);
  }

  TEST_CASE("serve: a pooled connection closed as the request arrives is retried") {
    // First connection: answers one request, then reads the next head and closes without answering.
    ScriptedUpstream up({UpstreamScript{.response = kOk, .read_head_before_end = true},
                         UpstreamScript{.response = kOk, .end = UpstreamScript::End::Silent, .exchanges = 100}});
    auto s = make_scenario({make_route({up.url()})});
    s.workers = 1;
    ProxyFixture proxy(s);
    RawClient c(proxy.port());
    c.send(get_request("/one"));
    CHECK(c.read_response().status == 200);
    c.send(get_request("/two"));
    auto r2 = c.read_response();
    CHECK(r2.status == 200);
    CHECK(r2.body == "ok");
    CHECK(up.connections() == 2);
    CHECK(up.heads_received() == 3);  // /one, /two (dropped), /two again
  }
}
