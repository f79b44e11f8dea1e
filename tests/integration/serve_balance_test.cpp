// Integration tests: load balancing policies across in-process echo upstreams.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "support/proxy_fixture.hpp"
#include "support/raw_client.hpp"
#include "support/scripted_upstream.hpp"

using namespace rproxy;
using namespace rproxy::test;

namespace {

// names sends n sequential requests on one keep-alive connection and returns the answering echo names.
std::vector<std::string> names(std::uint16_t port, int n, const std::string& target = "/") {
  std::vector<std::string> out;
  RawClient c(port);
  for (int i = 0; i < n; ++i) {
    c.send(get_request(target));
    auto r = c.read_response();
    REQUIRE(r.status == 200);
    out.push_back(r.json()["name"].get<std::string>());
  }
  return out;
}

}  // namespace

TEST_SUITE("serve") {
  TEST_CASE("serve: round robin alternates between two upstreams") {
    auto a = start_echo("a");
    auto b = start_echo("b");
    auto route = make_route({echo_url(*a), echo_url(*b)});
    route.balance = Balance::RoundRobin;
    ProxyFixture proxy(make_scenario({route}));
    auto seq = names(proxy.port(), 10);
    for (std::size_t i = 1; i < seq.size(); ++i) {
      CAPTURE(i);
      CHECK(seq[i] != seq[i - 1]);
    }
    CHECK(std::count(seq.begin(), seq.end(), "a") == 5);
    // Separate client connections share the same rotation.
    std::vector<std::string> fresh;
    for (int i = 0; i < 4; ++i) fresh.push_back(names(proxy.port(), 1)[0]);
    CHECK(fresh[0] != fresh[1]);
    CHECK(fresh[1] != fresh[2]);
    CHECK(fresh[2] != fresh[3]);
  }

  TEST_CASE("serve: least_conn avoids the upstream with a request in flight") {
    auto a = start_echo("a");
    auto b = start_echo("b");
    auto route = make_route({echo_url(*a), echo_url(*b)});
    route.balance = Balance::LeastConn;
    ProxyFixture proxy(make_scenario({route}));
    // An event stream keeps its upstream busy; its first event (which arrives at once) names that upstream,
    // so the test knows the exchange is in flight without guessing at timing.
    RawClient busy_client(proxy.port());
    busy_client.send(get_request("/?sse=2&interval=1500ms"));
    REQUIRE(busy_client.read_head().status == 200);
    std::string first_event;
    while (first_event.find("\n\n") == std::string::npos) {
      auto chunk = busy_client.read_chunk();
      REQUIRE(chunk.has_value());
      REQUIRE_FALSE(chunk->empty());
      first_event += *chunk;
    }
    auto data_at = first_event.find("data: ");
    REQUIRE(data_at != std::string::npos);
    auto busy = nlohmann::json::parse(first_event.substr(data_at + 6, first_event.find("\n\n") - data_at - 6))["name"]
                    .get<std::string>();
    auto quick = names(proxy.port(), 6);
    for (const auto& n : quick) CHECK(n != busy);
    // Let the stream finish; with nothing in flight both are used again.
    for (;;) {
      auto chunk = busy_client.read_chunk();
      REQUIRE(chunk.has_value());
      if (chunk->empty()) break;
    }
    auto after = names(proxy.port(), 4);
    CHECK(std::count(after.begin(), after.end(), "a") == 2);
  }

  TEST_CASE("serve: weighted 3 to 1 splits 400 requests 300 and 100") {
    auto a = start_echo("heavy");
    auto b = start_echo("light");
    auto route = make_route({});
    route.upstreams = {upstream_spec(echo_url(*a), 3), upstream_spec(echo_url(*b), 1)};
    route.balance = Balance::Weighted;
    ProxyFixture proxy(make_scenario({route}));
    auto seq = names(proxy.port(), 400);
    CHECK(std::count(seq.begin(), seq.end(), "heavy") == 300);
    CHECK(std::count(seq.begin(), seq.end(), "light") == 100);
    // Smooth: every window of 4 consecutive picks holds exactly one "light".
    for (std::size_t i = 0; i + 4 <= seq.size(); i += 4) {
      CAPTURE(i);
      CHECK(std::count(seq.begin() + static_cast<long>(i), seq.begin() + static_cast<long>(i) + 4, "light") == 1);
    }
  }

  TEST_CASE("serve: random balancing with the same seed repeats its sequence") {
    auto a = start_echo("a");
    auto b = start_echo("b");
    auto c = start_echo("c");
    auto run = [&](std::uint64_t seed) {
      auto route = make_route({echo_url(*a), echo_url(*b), echo_url(*c)});
      route.balance = Balance::Random;
      auto s = make_scenario({route});
      s.seed = seed;
      ProxyFixture proxy(s);
      return names(proxy.port(), 40);
    };
    auto first = run(7);
    auto second = run(7);
    CHECK(first == second);
    std::map<std::string, int> counts;
    for (const auto& n : first) ++counts[n];
    CHECK(counts.size() == 3);  // 40 random picks over 3 upstreams use all of them
    auto other = run(8);
    CHECK(other != first);
  }

  TEST_CASE("serve: a refused upstream in a pair is skipped") {
    auto a = start_echo("alive");
    ClosedPort dead;
    for (auto policy : {Balance::RoundRobin, Balance::LeastConn, Balance::Random, Balance::Weighted}) {
      CAPTURE(to_string(policy));
      auto route = make_route({dead.url(), echo_url(*a)});
      route.balance = policy;
      ProxyFixture proxy(make_scenario({route}));
      for (int i = 0; i < 6; ++i) {
        auto r = fetch(proxy.port(), get_request("/x"));
        CHECK(r.status == 200);
        if (r.status == 200) CHECK(r.json()["name"] == "alive");
      }
    }
  }
}
