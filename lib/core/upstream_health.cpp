#include "core/upstream_health.hpp"

namespace rproxy {

namespace {
std::int64_t ticks(SteadyClock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
}  // namespace

UpstreamHealth::UpstreamHealth(const Route& route)
    : route_(route), specs_(route.upstreams), state_(new State[route.upstreams.size()]) {}

bool UpstreamHealth::up(std::size_t i, SteadyClock::time_point now) const {
  const auto& s = state_[i];
  return s.checks_pass.load(std::memory_order_relaxed) &&
         s.ejected_until.load(std::memory_order_relaxed) <= ticks(now);
}

bool UpstreamHealth::any_up(SteadyClock::time_point now) const {
  for (std::size_t i = 0; i < specs_.size(); ++i)
    if (up(i, now)) return true;
  return false;
}

std::vector<bool> UpstreamHealth::avoid_mask(const std::vector<bool>& tried, const std::vector<bool>& outside,
                                             SteadyClock::time_point now) const {
  const std::size_t n = specs_.size();
  auto is_outside = [&](std::size_t k) { return !outside.empty() && outside[k]; };
  // From most to least preferred: up upstreams (primaries, then backups) inside a stage's pick, then up ones
  // in the rest of the route; only when none is up anywhere, any untried upstream (the pick's first).
  static constexpr std::pair<int, int> kOrder[] = {{0, 0}, {0, 1}, {1, 0}, {1, 1}, {0, 2}, {1, 2}};
  for (auto [scope, tier] : kOrder) {
    if (scope == 0 && outside.empty()) continue;
    std::vector<bool> avoid(n, true);
    bool any = false;
    for (std::size_t k = 0; k < n; ++k) {
      if (tried[k] || (scope == 0 && is_outside(k))) continue;
      bool ok = tier == 0   ? !specs_[k].backup && up(k, now)
                : tier == 1 ? specs_[k].backup && up(k, now)
                            : true;
      if (ok) {
        avoid[k] = false;
        any = true;
      }
    }
    if (any) return avoid;
  }
  return {};
}

std::string UpstreamHealth::record_failure(std::size_t i, SteadyClock::time_point now) {
  const auto& passive = route_.passive_health;
  auto& s = state_[i];
  auto n = s.failures.fetch_add(1, std::memory_order_relaxed) + 1;
  if (passive.max_fails == 0 || n < passive.max_fails) return {};
  auto until = ticks(now + passive.eject_for);
  auto before = s.ejected_until.exchange(until, std::memory_order_relaxed);
  if (before > ticks(now)) return {};  // already ejected: extend quietly
  return "rproxy: upstream " + specs_[i].url.text + " of route " + route_.name + " ejected for " +
         format_duration(passive.eject_for) + " after " + std::to_string(n) + " failed exchange" +
         (n == 1 ? "" : "s") + " in a row";
}

void UpstreamHealth::record_success(std::size_t i) {
  // An ejection runs its course: this success may come from an exchange that began before it (a long
  // response, a pooled connection) and says little about new connections.
  auto& s = state_[i];
  if (s.failures.load(std::memory_order_relaxed) != 0) s.failures.store(0, std::memory_order_relaxed);
}

std::string UpstreamHealth::record_probe(std::size_t i, bool passed, const std::string& detail) {
  const auto& hc = *route_.health_check;
  auto& s = state_[i];
  bool current = s.checks_pass.load(std::memory_order_relaxed);
  if (passed == current) {
    s.probe_streak.store(0, std::memory_order_relaxed);
    return {};
  }
  auto streak = s.probe_streak.fetch_add(1, std::memory_order_relaxed) + 1;
  if (streak < (passed ? hc.healthy_threshold : hc.unhealthy_threshold)) return {};
  s.probe_streak.store(0, std::memory_order_relaxed);
  s.checks_pass.store(passed, std::memory_order_relaxed);
  if (passed) {
    s.failures.store(0, std::memory_order_relaxed);
    s.ejected_until.store(0, std::memory_order_relaxed);
  }
  return "rproxy: upstream " + specs_[i].url.text + " of route " + route_.name + " is " +
         (passed ? "up" : "down") + ": health check GET " + hc.path + " " + detail;
}

nlohmann::json UpstreamHealth::snapshot(SteadyClock::time_point now) const {
  auto out = nlohmann::json::array();
  for (std::size_t i = 0; i < specs_.size(); ++i) {
    const auto& s = state_[i];
    auto ejected = s.ejected_until.load(std::memory_order_relaxed) - ticks(now);
    out.push_back({{"url", specs_[i].url.text},
                   {"name", specs_[i].name},
                   {"backup", specs_[i].backup},
                   {"up", up(i, now)},
                   {"checks", route_.health_check ? (s.checks_pass.load() ? "passing" : "failing") : "off"},
                   {"ejected_for_ms", ejected > 0 ? ejected / 1000000 : 0},
                   {"consecutive_failures", s.failures.load(std::memory_order_relaxed)}});
  }
  return out;
}

}  // namespace rproxy
