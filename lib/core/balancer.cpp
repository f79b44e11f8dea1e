#include "core/balancer.hpp"

namespace rproxy {

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

Balancer::Balancer(Balance policy, std::vector<unsigned> weights, std::uint64_t seed)
    : policy_(policy),
      weights_(std::move(weights)),
      seed_(seed),
      active_(new std::atomic<int>[weights_.size()]),
      wrr_current_(weights_.size(), 0) {
  for (std::size_t i = 0; i < weights_.size(); ++i) active_[i] = 0;
}

std::size_t Balancer::pick(const std::vector<bool>& skip_in) {
  const std::size_t n = weights_.size();
  if (n == 1) return 0;
  static const std::vector<bool> none;
  bool all_skipped = !skip_in.empty();
  for (std::size_t i = 0; i < skip_in.size() && all_skipped; ++i) all_skipped = skip_in[i];
  const auto& skip = all_skipped ? none : skip_in;
  auto skipped = [&](std::size_t i) { return i < skip.size() && skip[i]; };

  switch (policy_) {
    case Balance::RoundRobin: {
      auto start = counter_.fetch_add(1, std::memory_order_relaxed);
      for (std::size_t k = 0; k < n; ++k) {
        auto i = static_cast<std::size_t>((start + k) % n);
        if (!skipped(i)) return i;
      }
      return 0;
    }
    case Balance::Random: {
      auto r = splitmix64(seed_ ^ splitmix64(counter_.fetch_add(1, std::memory_order_relaxed)));
      for (std::size_t k = 0; k < n; ++k) {
        auto i = static_cast<std::size_t>((r + k) % n);
        if (!skipped(i)) return i;
      }
      return 0;
    }
    case Balance::LeastConn: {
      // Ties rotate so equal upstreams share the load instead of the first one taking everything.
      auto start = counter_.fetch_add(1, std::memory_order_relaxed);
      std::size_t best = n;
      int best_active = 0;
      for (std::size_t k = 0; k < n; ++k) {
        auto i = static_cast<std::size_t>((start + k) % n);
        if (skipped(i)) continue;
        int a = active_[i].load(std::memory_order_relaxed);
        if (best == n || a < best_active) {
          best = i;
          best_active = a;
        }
      }
      return best == n ? 0 : best;
    }
    case Balance::Weighted:
      return pick_weighted(skip);
  }
  return 0;
}

// Smooth weighted round robin (as nginx): weights 3,1 give a,a,b,a rather than a,a,a,b.
std::size_t Balancer::pick_weighted(const std::vector<bool>& skip) {
  std::lock_guard lock(wrr_mutex_);
  long total = 0;
  std::size_t best = weights_.size();
  for (std::size_t i = 0; i < weights_.size(); ++i) {
    if (i < skip.size() && skip[i]) continue;
    wrr_current_[i] += weights_[i];
    total += weights_[i];
    if (best == weights_.size() || wrr_current_[i] > wrr_current_[best]) best = i;
  }
  if (best == weights_.size()) return 0;
  wrr_current_[best] -= total;
  return best;
}

}  // namespace rproxy
