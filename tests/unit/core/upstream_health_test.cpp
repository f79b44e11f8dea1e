// Tests for UpstreamHealth: which upstreams the balancer may use (primaries, backups, a stage's pick),
// passive ejection and its expiry, and active check thresholds.
#include "core/upstream_health.hpp"

#include <doctest/doctest.h>

#include "support/proxy_fixture.hpp"

using rproxy::Route;
using rproxy::SteadyClock;
using rproxy::UpstreamHealth;
using namespace std::chrono_literals;

namespace {

Route route_of(int primaries, int backups) {
  std::vector<std::string> urls;
  for (int i = 0; i < primaries + backups; ++i)
    urls.push_back("http://127.0.0.1:" + std::to_string(3000 + i));
  auto r = rproxy::test::make_route(urls, "r");
  for (int i = primaries; i < primaries + backups; ++i)
    r.upstreams[static_cast<std::size_t>(i)].backup = true;
  return r;
}

std::vector<bool> usable(const std::vector<bool>& avoid) {
  std::vector<bool> out;
  for (bool a : avoid) out.push_back(!a);
  return out;
}

}  // namespace

TEST_CASE(
    "upstream health: primaries first, backups only while no primary is up, anything when all are down") {
  auto route = route_of(2, 1);
  route.passive_health.max_fails = 1;
  UpstreamHealth h(route);
  auto now = SteadyClock::now();
  const std::vector<bool> none(3, false);
  CHECK(usable(h.avoid_mask(none, {}, now)) == std::vector<bool>{true, true, false});
  CHECK(!h.record_failure(0, now).empty());  // ejected: logged once
  CHECK(h.record_failure(0, now).empty());   // already ejected: quiet
  CHECK(usable(h.avoid_mask(none, {}, now)) == std::vector<bool>{false, true, false});
  h.record_failure(1, now);
  CHECK(usable(h.avoid_mask(none, {}, now)) == std::vector<bool>{false, false, true});
  h.record_failure(2, now);
  CHECK_FALSE(h.any_up(now));
  CHECK(usable(h.avoid_mask(none, {}, now)) == std::vector<bool>{true, true, true});
  CHECK(h.avoid_mask({true, true, true}, {}, now).empty());
  // Ejections expire after eject_for (10s by default).
  CHECK(h.up(0, now + 11s));
}

TEST_CASE("upstream health: a stage's pick that is down yields to an up upstream outside it") {
  auto route = route_of(2, 0);
  route.passive_health.max_fails = 1;
  UpstreamHealth h(route);
  auto now = SteadyClock::now();
  const std::vector<bool> outside{false, true};  // the pick is upstream 0
  CHECK(usable(h.avoid_mask({false, false}, outside, now)) == std::vector<bool>{true, false});
  h.record_failure(0, now);
  CHECK(usable(h.avoid_mask({false, false}, outside, now)) == std::vector<bool>{false, true});
  h.record_failure(1, now);
  // Nothing is up: the pick's own upstream is tried first.
  CHECK(usable(h.avoid_mask({false, false}, outside, now)) == std::vector<bool>{true, false});
}

TEST_CASE("upstream health: a success does not cut an ejection short, it resets the failure count") {
  auto route = route_of(1, 0);
  route.passive_health.max_fails = 2;
  UpstreamHealth h(route);
  auto now = SteadyClock::now();
  h.record_failure(0, now);
  h.record_success(0);
  CHECK(h.record_failure(0, now).empty());  // the count restarted: 1 of 2
  CHECK(!h.record_failure(0, now).empty());
  h.record_success(0);  // an exchange that began before the ejection
  CHECK_FALSE(h.up(0, now + 1s));
  CHECK(h.up(0, now + 11s));
}

TEST_CASE("upstream health: active checks mark down and up at their thresholds, logging each change") {
  auto route = route_of(1, 0);
  route.health_check.emplace();
  route.health_check->unhealthy_threshold = 2;
  route.health_check->healthy_threshold = 3;
  UpstreamHealth h(route);
  auto now = SteadyClock::now();
  CHECK(h.record_probe(0, false, "failed: connect refused").empty());
  CHECK(h.up(0, now));
  auto line = h.record_probe(0, false, "failed: connect refused");
  CHECK(line.find("is down: health check GET / failed: connect refused") != std::string::npos);
  CHECK_FALSE(h.up(0, now));
  CHECK(h.record_probe(0, true, "answered 200").empty());
  CHECK(h.record_probe(0, false, "answered 503").empty());  // the streak restarts
  CHECK(h.record_probe(0, true, "answered 200").empty());
  CHECK(h.record_probe(0, true, "answered 200").empty());
  CHECK(h.record_probe(0, true, "answered 200").find("is up") != std::string::npos);
  CHECK(h.up(0, now));
  auto snap = h.snapshot(now);
  CHECK(snap[0]["checks"] == "passing");
  CHECK(snap[0]["up"] == true);
}
