#include "core/latency_histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

namespace rproxy {

namespace {
constexpr double kNsPerMs = 1e6;
}  // namespace

std::size_t LatencyHistogram::bucket_index(std::uint64_t ns) {
  ns = std::min(ns, kMaxTrackableNs);
  // Values below 2 * kSubBuckets are their own index; above, the top kSubBucketBits + 1 bits pick the bucket.
  if (ns < 2 * kSubBuckets) return static_cast<std::size_t>(ns);
  int shift = std::bit_width(ns) - 1 - kSubBucketBits;
  std::uint64_t sub = (ns >> shift) - kSubBuckets;
  return static_cast<std::size_t>((static_cast<std::uint64_t>(shift) + 1) * kSubBuckets + sub);
}

std::uint64_t LatencyHistogram::bucket_lower(std::size_t index) {
  if (index < 2 * kSubBuckets) return index;
  std::uint64_t shift = index / kSubBuckets - 1;
  std::uint64_t sub = index % kSubBuckets;
  return (kSubBuckets + sub) << shift;
}

std::uint64_t LatencyHistogram::bucket_width(std::size_t index) {
  if (index < 2 * kSubBuckets) return 1;
  return 1ULL << (index / kSubBuckets - 1);
}

void LatencyHistogram::record(std::chrono::nanoseconds d) {
  record_ns(d.count() <= 0 ? 0 : static_cast<std::uint64_t>(d.count()));
}

void LatencyHistogram::record_ms(double ms) {
  // !(ms > 0) also catches NaN, which would otherwise turn into an arbitrary integer.
  if (!(ms > 0)) return record_ns(0);
  double ns = ms * kNsPerMs;
  if (ns >= static_cast<double>(kMaxTrackableNs)) return record_ns(kMaxTrackableNs);
  record_ns(static_cast<std::uint64_t>(std::llround(ns)));
}

void LatencyHistogram::record_ns(std::uint64_t ns) {
  ns = std::min(ns, kMaxTrackableNs);
  buckets_[bucket_index(ns)].fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(ns, std::memory_order_relaxed);
  raise_max(ns);
}

void LatencyHistogram::raise_max(std::uint64_t ns) {
  std::uint64_t current = max_ns_.load(std::memory_order_relaxed);
  while (ns > current && !max_ns_.compare_exchange_weak(current, ns, std::memory_order_relaxed)) {
  }
}

std::uint64_t LatencyHistogram::count() const {
  // Summing the buckets rather than keeping a separate counter saves an atomic add per record; counts are
  // read far less often than written.
  std::uint64_t total = 0;
  for (const auto& b : buckets_) total += b.load(std::memory_order_relaxed);
  return total;
}

double LatencyHistogram::quantile_ms(double q) const {
  std::uint64_t total = count();
  if (total == 0) return 0;
  if (!(q > 0)) q = 0;
  if (q > 1) q = 1;
  auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total)));
  rank = std::clamp<std::uint64_t>(rank, 1, total);
  // Buckets only grow, so this second pass reaches rank even while writers race with it.
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kBucketCount; ++i) {
    seen += buckets_[i].load(std::memory_order_relaxed);
    if (seen < rank) continue;
    double lower = static_cast<double>(bucket_lower(i));
    double mid = lower + static_cast<double>(bucket_width(i) - 1) / 2;
    double max = static_cast<double>(max_ns_.load(std::memory_order_relaxed));
    // The last sample is the max, known exactly. The max also lies in the highest non-empty bucket, so
    // capping by it only moves an answer towards the true sample; the lower bound guards against a max not
    // yet raised by a racing writer.
    double value = rank == total ? max : std::min(mid, max);
    return std::max(lower, value) / kNsPerMs;
  }
  return max_ms();
}

double LatencyHistogram::max_ms() const {
  return static_cast<double>(max_ns_.load(std::memory_order_relaxed)) / kNsPerMs;
}

double LatencyHistogram::mean_ms() const {
  std::uint64_t n = count();
  if (n == 0) return 0;
  return static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / static_cast<double>(n) / kNsPerMs;
}

void LatencyHistogram::merge_from(const LatencyHistogram& other) {
  for (std::size_t i = 0; i < kBucketCount; ++i) {
    std::uint64_t n = other.buckets_[i].load(std::memory_order_relaxed);
    if (n != 0) buckets_[i].fetch_add(n, std::memory_order_relaxed);
  }
  sum_ns_.fetch_add(other.sum_ns_.load(std::memory_order_relaxed), std::memory_order_relaxed);
  raise_max(other.max_ns_.load(std::memory_order_relaxed));
}

ShareInterval wilson_interval(std::uint64_t successes, std::uint64_t n, double z) {
  if (n == 0 || !std::isfinite(z)) return {0, 1};
  successes = std::min(successes, n);
  double nn = static_cast<double>(n);
  double p = static_cast<double>(successes) / nn;
  double z2 = z * z;
  double denom = 1 + z2 / nn;
  double center = (p + z2 / (2 * nn)) / denom;
  double half = std::abs(z) / denom * std::sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn));
  // Rounding can push an end a hair past 0 or 1 when p is exactly 0 or 1.
  return {std::clamp(center - half, 0.0, 1.0), std::clamp(center + half, 0.0, 1.0)};
}

}  // namespace rproxy
