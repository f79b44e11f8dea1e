// Balancer chooses one of a route's upstreams per request. Shared by every worker thread, so its state is
// atomic (or, for smooth weighted round robin, behind a short lock). Random choices come from the scenario
// seed and a counter, never from the wall clock, so a run is reproducible.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "rproxy/scenario.hpp"

namespace rproxy {

class Balancer {
 public:
  Balancer(Balance policy, std::vector<unsigned> weights, std::uint64_t seed);
  // pick returns an index into the route's upstreams. `skip` (may be empty) marks upstreams to avoid
  // (for example one that just refused a connection); when all are skipped, skip is ignored.
  std::size_t pick(const std::vector<bool>& skip = {});
  // Active request counts, maintained by the engine, drive least_conn.
  void begin(std::size_t i) { active_[i].fetch_add(1, std::memory_order_relaxed); }
  void end(std::size_t i) { active_[i].fetch_sub(1, std::memory_order_relaxed); }
  std::size_t size() const { return weights_.size(); }

 private:
  std::size_t pick_weighted(const std::vector<bool>& skip);
  Balance policy_;
  std::vector<unsigned> weights_;
  std::uint64_t seed_;
  std::atomic<std::uint64_t> counter_{0};
  std::unique_ptr<std::atomic<int>[]> active_;
  std::mutex wrr_mutex_;
  std::vector<long> wrr_current_;
};

// splitmix64 is the mixing function behind every seeded choice in rproxy.
std::uint64_t splitmix64(std::uint64_t x);

}  // namespace rproxy
