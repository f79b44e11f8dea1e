// UpstreamHealth is what rproxy knows about the upstreams of one route: the verdict of active health
// checks and passive ejection after consecutive failed exchanges. Shared by every worker (atomics, no lock
// on the request path). It only advises: the balancer avoids upstreams that are down, prefers primaries to
// backups, and when nothing is up still tries them all, because the connection attempt is the final word.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/deadline.hpp"
#include "rproxy/scenario.hpp"

namespace rproxy {

class UpstreamHealth {
 public:
  explicit UpstreamHealth(const Route& route);

  // up: passing active checks (or none configured) and not ejected.
  bool up(std::size_t i, SteadyClock::time_point now) const;
  bool any_up(SteadyClock::time_point now) const;
  // avoid_mask: upstreams the balancer should skip now, given those already tried for this request and
  // those outside a stage's pick (`outside`, may be empty). Preference: untried primaries that are up, then
  // untried backups that are up, then any untried upstream (nothing is up: let the connection decide).
  // Returns an empty vector when every upstream was tried.
  std::vector<bool> avoid_mask(const std::vector<bool>& tried, const std::vector<bool>& outside,
                               SteadyClock::time_point now) const;

  // Passive results of real exchanges; failure returns a log line when it ejected the upstream.
  std::string record_failure(std::size_t i, SteadyClock::time_point now);
  void record_success(std::size_t i);
  // Active probe result; returns a log line when the upstream changed state.
  std::string record_probe(std::size_t i, bool passed, const std::string& detail);

  // snapshot: per upstream {url, name, backup, up, checks, ejected_for_ms, consecutive_failures}.
  nlohmann::json snapshot(SteadyClock::time_point now) const;
  std::size_t size() const { return specs_.size(); }

 private:
  struct State {
    std::atomic<bool> checks_pass{true};
    std::atomic<unsigned> probe_streak{0};       // consecutive probes disagreeing with checks_pass
    std::atomic<unsigned> failures{0};           // consecutive failed exchanges
    std::atomic<std::int64_t> ejected_until{0};  // steady clock, ns since epoch; 0 = not ejected
  };
  const Route& route_;
  std::vector<UpstreamSpec> specs_;
  std::unique_ptr<State[]> state_;
};

}  // namespace rproxy
