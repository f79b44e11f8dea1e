// Integration tests for A/B splitting: real echo upstreams per variant, the proxy in-process (or the rproxy
// binary for CLI forms), real sockets. Each bullet of the split issue has a case here.
#include <doctest/doctest.h>
#include <signal.h>

#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/proxy_fixture.hpp"
#include "support/raw_client.hpp"
#include "support/subprocess.hpp"

using namespace rproxy;
using namespace rproxy::test;
using nlohmann::json;

namespace {

UpstreamSpec named(const std::string& name, const std::string& url) {
  auto u = upstream_spec(url);
  u.name = name;
  return u;
}

Scenario split_scenario(const std::vector<UpstreamSpec>& ups, json params, std::uint64_t seed = 42) {
  Route r;
  r.upstreams = ups;
  r.stages.push_back(StageSpec{"split", "", std::move(params)});
  auto s = make_scenario({r});
  s.seed = seed;
  return s;
}

json ab(unsigned wa, unsigned wb) {
  return {{"variants", {{{"name", "a"}, {"weight", wa}}, {{"name", "b"}, {"weight", wb}}}}};
}

// variant_sequence sends n sequential requests on one connection and returns X-Rproxy-Variant of each,
// checking that the echo that answered belongs to that variant.
std::string variant_sequence(std::uint16_t port, int n, const std::string& extra = "") {
  std::string seq;
  RawClient c(port);
  for (int i = 0; i < n; ++i) {
    c.send(get_request("/", "proxy.test", extra));
    auto r = c.read_response();
    REQUIRE(r.status == 200);
    auto v = r.header("X-Rproxy-Variant");
    REQUIRE(v);
    CHECK(r.json()["name"] == *v);
    seq += *v;
  }
  return seq;
}

std::optional<std::string> cookie_from(const HttpResponse& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (!iequal(k, "Set-Cookie") || v.rfind(name + "=", 0) != 0) continue;
    return v.substr(name.size() + 1, v.find(';') - name.size() - 1);
  }
  return std::nullopt;
}

// A port that refuses connections: bound once, then released.
std::uint16_t refused_port() {
  auto e = start_echo("gone");
  auto p = e->port();
  e->stop();
  return p;
}

}  // namespace

TEST_SUITE("split") {
  TEST_CASE("split: 90/10 over 10,000 requests lands within 1.5 points, report and access log agree") {
    auto a = start_echo("a");
    auto b = start_echo("b");
    TempDir dir;
    auto s = split_scenario({named("a", echo_url(*a)), named("b", echo_url(*b))}, ab(90, 10));
    s.access_log.path = dir.file("access.log");
    ProxyFixture proxy(s);
    constexpr int kClients = 4;
    constexpr int kPerClient = 2500;
    std::vector<std::thread> threads;
    std::array<int, kClients> b_count{};
    for (int t = 0; t < kClients; ++t)
      threads.emplace_back([&, t] {
        RawClient c(proxy.port());
        for (int i = 0; i < kPerClient; ++i) {
          c.send(get_request("/"));
          auto r = c.read_response();
          if (r.status != 200) continue;
          b_count[static_cast<std::size_t>(t)] += r.header("X-Rproxy-Variant") == "b";
        }
      });
    for (auto& t : threads) t.join();
    int total_b = 0;
    for (int n : b_count) total_b += n;
    double share_b = total_b / 10000.0;
    MESSAGE("observed share of b: " << share_b);
    CHECK(share_b > 0.085);
    CHECK(share_b < 0.115);

    proxy.stop();
    auto rep = proxy.server().report()["stages"]["default/split"];
    CHECK(rep["requests"] == 10000);
    CHECK(rep["variants"][1]["requests"] == total_b);
    CHECK(rep["variants"][0]["requests"] == 10000 - total_b);
    CHECK(rep["variants"][0]["status"]["2xx"] == 10000 - total_b);
    auto ci = rep["variants"][1]["share_ci95"];
    CHECK(ci[0].get<double>() < share_b);
    CHECK(ci[1].get<double>() > share_b);
    // The access log counts the same.
    auto log = read_file(dir.file("access.log"));
    std::size_t lines = 0;
    std::size_t b_lines = 0;
    for (std::size_t pos = 0; (pos = log.find('\n', pos)) != std::string::npos; ++pos) ++lines;
    for (std::size_t pos = 0; (pos = log.find(" variant=b", pos)) != std::string::npos; ++pos) ++b_lines;
    CHECK(lines == 10000);
    CHECK(b_lines == static_cast<std::size_t>(total_b));
  }

  TEST_CASE(
      "split: the same seed gives the same assignment sequence across restarts; another seed does not") {
    auto a = start_echo("a");
    auto b = start_echo("b");
    auto ups = std::vector<UpstreamSpec>{named("a", echo_url(*a)), named("b", echo_url(*b))};
    std::string first;
    std::string second;
    std::string other;
    {
      ProxyFixture proxy(split_scenario(ups, ab(50, 50), 42));
      first = variant_sequence(proxy.port(), 200);
    }
    {
      ProxyFixture proxy(split_scenario(ups, ab(50, 50), 42));
      second = variant_sequence(proxy.port(), 200);
    }
    {
      ProxyFixture proxy(split_scenario(ups, ab(50, 50), 43));
      other = variant_sequence(proxy.port(), 200);
    }
    CHECK(first == second);
    CHECK(first != other);
    CHECK(first.find('a') != std::string::npos);
    CHECK(first.find('b') != std::string::npos);
  }

  TEST_CASE("split: cookie stickiness keeps 50 clients on their variants") {
    auto a = start_echo("a");
    auto b = start_echo("b");
    auto params = ab(50, 50);
    params["sticky"] = "cookie";
    ProxyFixture proxy(split_scenario({named("a", echo_url(*a)), named("b", echo_url(*b))}, params));
    std::set<std::string> seen;
    for (int client = 0; client < 50; ++client) {
      auto r = fetch(proxy.port(), get_request("/"));
      REQUIRE(r.status == 200);
      auto key = cookie_from(r, "rproxy_split");
      REQUIRE(key);
      auto set_cookie = r.header("Set-Cookie");
      CHECK(set_cookie->find("HttpOnly") != std::string::npos);
      CHECK(set_cookie->find("SameSite=Lax") != std::string::npos);
      CHECK(set_cookie->find("Path=/") != std::string::npos);
      auto variant = *r.header("X-Rproxy-Variant");
      seen.insert(variant);
      auto seq = variant_sequence(proxy.port(), 5, "Cookie: rproxy_split=" + *key + "\r\n");
      CHECK(seq == std::string(5, variant[0]));
    }
    CHECK(seen.size() == 2);
  }

  TEST_CASE("split: header and ip stickiness") {
    auto a = start_echo("a");
    auto b = start_echo("b");
    auto ups = std::vector<UpstreamSpec>{named("a", echo_url(*a)), named("b", echo_url(*b))};
    auto params = ab(50, 50);
    params["sticky"] = "header:X-User-Id";
    ProxyFixture proxy(split_scenario(ups, params));
    std::set<char> seen;
    for (int u = 0; u < 30; ++u) {
      auto seq = variant_sequence(proxy.port(), 4, "X-User-Id: user-" + std::to_string(u) + "\r\n");
      CHECK(seq == std::string(4, seq[0]));
      seen.insert(seq[0]);
    }
    CHECK(seen.size() == 2);
    params["sticky"] = "ip";
    ProxyFixture by_ip(split_scenario(ups, params));
    auto seq = variant_sequence(by_ip.port(), 20);
    CHECK(seq == std::string(20, seq[0]));
  }

  TEST_CASE("split: override by header, by query (pinning a cookie client) and by cookie") {
    auto a = start_echo("a");
    auto b = start_echo("b");
    auto params = ab(100, 0);  // without overrides nothing reaches b
    params["sticky"] = "cookie";
    ProxyFixture proxy(split_scenario({named("a", echo_url(*a)), named("b", echo_url(*b))}, params));
    CHECK(variant_sequence(proxy.port(), 5) == "aaaaa");
    CHECK(variant_sequence(proxy.port(), 5, "X-Rproxy-Variant: b\r\n") == "bbbbb");
    auto r = fetch(proxy.port(), get_request("/page?rproxy_variant=b&x=1"));
    REQUIRE(r.status == 200);
    CHECK(r.header("X-Rproxy-Variant") == "b");
    CHECK(r.json()["target"] == "/page?x=1");  // the override parameter is not forwarded
    auto pin = cookie_from(r, "rproxy_variant");
    REQUIRE(pin);
    CHECK(*pin == "b");
    CHECK(variant_sequence(proxy.port(), 5, "Cookie: rproxy_variant=b\r\n") == "bbbbb");
    auto unpin =
        fetch(proxy.port(), get_request("/?rproxy_variant=", "proxy.test", "Cookie: rproxy_variant=b\r\n"));
    CHECK(unpin.header("X-Rproxy-Variant") == "a");
    CHECK(cookie_from(unpin, "rproxy_variant") == "");
    auto bad = fetch(proxy.port(), get_request("/", "proxy.test", "X-Rproxy-Variant: c\r\n"));
    CHECK(bad.status == 400);
    CHECK(bad.header("X-Rproxy-Error") == "unknown_variant");
  }

  TEST_CASE(
      "split: a variant that refuses connections fails over, and gets its traffic back when it recovers") {
    auto a = start_echo("a");
    auto b_port = refused_port();
    EchoOptions bo;
    bo.name = "b";
    bo.port = b_port;
    ProxyFixture proxy(
        split_scenario({named("a", echo_url(*a)), named("b", upstream_url(b_port))}, ab(0, 100)));
    // b is down: everything is served by a, labelled a, and counted as failover.
    RawClient c(proxy.port());
    for (int i = 0; i < 10; ++i) {
      c.send(get_request("/"));
      auto r = c.read_response();
      REQUIRE(r.status == 200);
      CHECK(r.header("X-Rproxy-Variant") == "a");
      CHECK(r.json()["name"] == "a");
    }
    // Stats are counted when an exchange completes, just after its last byte is written: wait for the
    // tenth to be counted rather than racing it.
    json rep;
    for (int i = 0; i < 100; ++i) {
      rep = proxy.server().report()["stages"]["default/split"];
      if (rep["variants"][1]["failovers_out"] == 10) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    CHECK(rep["variants"][1]["failovers_out"] == 10);
    CHECK(rep["variants"][0]["failovers_in"] == 10);
    // b comes back on its port: its traffic returns at once.
    EchoServer b(bo);
    b.start();
    CHECK(variant_sequence(proxy.port(), 10) == "bbbbbbbbbb");
  }

  TEST_CASE("split: shadow copies find differences and a slow shadow does not slow the primary") {
    auto a = start_echo("a");
    EchoOptions slow;
    slow.name = "b";
    slow.delay = std::chrono::milliseconds(1500);
    EchoServer b(slow);
    b.start();
    json params = {{"variants", {{{"name", "a"}}, {{"name", "b"}}}},
                   {"shadow", {{"variant", "b"}, {"timeout", "5s"}}}};
    ProxyFixture proxy(split_scenario({named("a", echo_url(*a)), named("b", echo_url(b))}, params));
    auto t0 = Clock::now();
    RawClient c(proxy.port());
    long long worst = 0;
    for (int i = 0; i < 200; ++i) {
      auto t = Clock::now();
      c.send(get_request("/item?id=" + std::to_string(i)));
      auto r = c.read_response();
      REQUIRE(r.status == 200);
      CHECK(r.header("X-Rproxy-Variant") == "a");
      worst = std::max(worst, ms_since(t));
    }
    MESSAGE("200 primary requests with a 1.5 s shadow took " << ms_since(t0) << " ms, slowest " << worst
                                                             << " ms");
    CHECK(worst < 500);  // each would take 1.5 s if the shadow were on the path
    // Wait for the copies in flight to be compared.
    json sh;
    for (int i = 0; i < 100; ++i) {
      sh = proxy.server().report()["stages"]["default/split"]["shadow"];
      std::uint64_t skipped = 0;
      for (const auto& [k, v] : sh["skipped"].items()) skipped += v.get<std::uint64_t>();
      if (sh["compared"].get<std::uint64_t>() + skipped == 200) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    CHECK(sh["requested"] == 200);
    CHECK(sh["compared"].get<int>() > 0);
    CHECK(sh["skipped"].contains("shadow queue full"));  // bounded: the excess was dropped, not queued
    CHECK(sh["different"] == sh["compared"]);            // the echo bodies name their server
    CHECK(sh["routes"]["default"]["differences"].contains("body $.name"));
  }

  TEST_CASE("split: shadow with ignored fields reports identical responses, JSON compared structurally") {
    auto a = start_echo("a");
    auto b = start_echo("b");
    json params = {{"variants", {{{"name", "a"}}, {{"name", "b"}}}},
                   {"shadow", {{"variant", "b"}, {"ignore", {"name", "remote_addr", "headers"}}}}};
    ProxyFixture proxy(split_scenario({named("a", echo_url(*a)), named("b", echo_url(*b))}, params));
    for (int i = 0; i < 20; ++i) {
      auto r = fetch(proxy.port(), "POST /echo?i=" + std::to_string(i) +
                                       " HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 5\r\n\r\nhello");
      REQUIRE(r.status == 200);
    }
    json sh;
    for (int i = 0; i < 50; ++i) {
      sh = proxy.server().report()["stages"]["default/split"]["shadow"];
      if (sh["compared"] == 20) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    CHECK(sh["compared"] == 20);
    CHECK(sh["identical"] == 20);  // same method, target and teed body reached the shadow
  }

  TEST_CASE(
      "split: a body over the shadow cap skips only its own copy, not later requests on the connection") {
    auto a = start_echo("a");
    auto b = start_echo("b");
    json params = {
        {"variants", {{{"name", "a"}}, {{"name", "b"}}}},
        {"shadow", {{"variant", "b"}, {"max_body", "16B"}, {"ignore", {"name", "remote_addr", "headers"}}}}};
    ProxyFixture proxy(split_scenario({named("a", echo_url(*a)), named("b", echo_url(*b))}, params));
    RawClient c(proxy.port());
    c.send("POST /big HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 100\r\n\r\n" + std::string(100, 'x'));
    REQUIRE(c.read_response().status == 200);
    for (int i = 0; i < 3; ++i) {
      c.send(get_request("/small"));
      REQUIRE(c.read_response().status == 200);
    }
    json sh;
    for (int i = 0; i < 50; ++i) {
      sh = proxy.server().report()["stages"]["default/split"]["shadow"];
      if (sh["compared"] == 3) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    CHECK(sh["skipped"]["request body over the shadow capture cap"] == 1);
    CHECK(sh["compared"] == 3);
    CHECK(sh["identical"] == 3);  // the GET copies carried no leftover body
  }

  TEST_CASE(
      "split CLI: the documented form runs, --report counts what was sent, --explain and --print-scenario") {
    auto a = start_echo("a");
    auto b = start_echo("b");
    TempDir dir;
    auto report = dir.file("report.json");
    Subprocess p({RPROXY_BINARY, "split", "--listen", "127.0.0.1:0", "--to", "a=" + echo_url(*a), "--to",
                  "b=" + echo_url(*b), "--weights", "90,10", "--seed", "42", "--sticky", "header:X-User-Id",
                  "--report", report});
    auto line = p.wait_for_stderr("rproxy: listening on http://", std::chrono::seconds(10));
    REQUIRE(line);
    auto port = static_cast<std::uint16_t>(std::stoi(line->substr(line->rfind(':') + 1)));
    std::map<std::string, int> by_variant;
    for (int u = 0; u < 100; ++u) {
      auto r = fetch(port, get_request("/", "proxy.test", "X-User-Id: user-" + std::to_string(u) + "\r\n"));
      REQUIRE(r.status == 200);
      ++by_variant[*r.header("X-Rproxy-Variant")];
    }
    p.signal(SIGTERM);
    REQUIRE(p.wait_exit(std::chrono::seconds(10)) == 0);
    auto rep = json::parse(read_file(report));
    const auto& split = rep["stages"]["default/split"];
    CHECK(split["requests"] == 100);
    CHECK(split["variants"][0]["requests"] == by_variant["a"]);
    CHECK(split["variants"][1]["requests"] == by_variant["b"]);
    CHECK(p.stderr_text().find("95% CI") != std::string::npos);  // the exit summary

    // --explain agrees with what the running proxy did.
    auto ex = run_command({RPROXY_BINARY, "split", "--to", "a=" + echo_url(*a), "--to", "b=" + echo_url(*b),
                           "--weights", "90,10", "--seed", "42", "--sticky", "header:X-User-Id", "--explain",
                           "user-7"});
    CHECK(ex.exit_code == 0);
    CHECK(ex.out.find("variant ") != std::string::npos);

    // --print-scenario gives a file `rproxy run` accepts.
    auto printed =
        run_command({RPROXY_BINARY, "split", "--to", "a=" + echo_url(*a), "--to", "b=" + echo_url(*b),
                     "--weights", "90,10", "--sticky", "cookie", "--print-scenario"});
    REQUIRE(printed.exit_code == 0);
    auto file = dir.write("split.json", printed.out);
    auto validated = run_command({RPROXY_BINARY, "validate", file});
    CHECK(validated.exit_code == 0);
    auto doc = json::parse(printed.out);
    CHECK(doc["routes"][0]["stages"][0]["type"] == "split");
    CHECK(doc["routes"][0]["stages"][0]["params"]["sticky"] == "cookie");
  }

  TEST_CASE("split CLI: bad flags exit 2 with one message naming the flag") {
    auto r = run_command({RPROXY_BINARY, "split", "--to", "a=http://127.0.0.1:1", "--to",
                          "b=http://127.0.0.1:2", "--weights", "90,x"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("--weights 90,x") != std::string::npos);
    r = run_command({RPROXY_BINARY, "split", "--to", "a=http://127.0.0.1:1", "--to", "b=http://127.0.0.1:2",
                     "--weights", "90,5,5"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("3 weights for 2 variants") != std::string::npos);
    r = run_command({RPROXY_BINARY, "split", "--to", "a=http://127.0.0.1:1", "--to", "b=http://127.0.0.1:2",
                     "--sticky", "session"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("--sticky session: must be none, cookie, ip, header:NAME or query:NAME") !=
          std::string::npos);
    r = run_command({RPROXY_BINARY, "split", "--to", "http://127.0.0.1:1"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("at least two variants") != std::string::npos);
  }
}
