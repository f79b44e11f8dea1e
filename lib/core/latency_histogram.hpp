// LatencyHistogram collects request latencies from every worker thread without locks, so statistics
// stages (A/B splits, shadow mode) can report quantiles in bounded memory however many requests run;
// wilson_interval puts a confidence interval on a share (error rate, mismatch rate) for the same reports.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace rproxy {

// LatencyHistogram uses log-linear buckets in the style of HdrHistogram: values are nanoseconds, every
// power of two [2^k, 2^(k+1)) is split into 32 equal sub-buckets, and values below 64 ns get one bucket
// each. A bucket is therefore never wider than 1/32 of its lower bound, and quantile_ms, which answers with
// the bucket's midpoint, is within kMaxRelativeError (1/64, about 1.6%) of the true sample value.
// Values above kMaxTrackableNs (about 73 minutes) are clamped to it.
//
// record, merge_from and the readers may run concurrently on any threads. Counters are relaxed atomics, so
// a reader racing with writers sees some consistent-enough recent state (counts never go backwards), not
// an instant snapshot. Not copyable; to snapshot, merge_from into a fresh histogram.
class LatencyHistogram {
 public:
  static constexpr int kSubBucketBits = 5;
  static constexpr std::uint64_t kSubBuckets = 1ULL << kSubBucketBits;
  static constexpr int kMaxValueBits = 42;
  static constexpr std::uint64_t kMaxTrackableNs = (1ULL << kMaxValueBits) - 1;
  static constexpr std::size_t kBucketCount = (kMaxValueBits - kSubBucketBits + 1) * kSubBuckets;
  static constexpr double kMaxRelativeError = 1.0 / 64;

  LatencyHistogram() = default;
  LatencyHistogram(const LatencyHistogram&) = delete;
  LatencyHistogram& operator=(const LatencyHistogram&) = delete;

  // Negative durations (and NaN for record_ms) record as 0; huge ones as kMaxTrackableNs.
  void record(std::chrono::nanoseconds d);
  void record_ms(double ms);

  std::uint64_t count() const;
  // quantile_ms returns a value representing the ceil(q*count)-th smallest sample (at least the first):
  // its bucket's midpoint capped by max_ms (exactly max_ms for the last sample), never below the bucket's
  // lower bound. q is clamped to [0, 1]; 0 when empty.
  double quantile_ms(double q) const;
  double max_ms() const;
  double mean_ms() const;  // 0 when empty

  // merge_from adds other's samples to this histogram.
  void merge_from(const LatencyHistogram& other);

  // Bucket geometry, exposed for tests: a value's (ns) bucket, and the bucket's [lower, lower + width).
  static std::size_t bucket_index(std::uint64_t ns);
  static std::uint64_t bucket_lower(std::size_t index);
  static std::uint64_t bucket_width(std::size_t index);

 private:
  void record_ns(std::uint64_t ns);
  void raise_max(std::uint64_t ns);

  std::array<std::atomic<std::uint64_t>, kBucketCount> buckets_{};
  // Wraps only after ~584 years of summed latency, far beyond any run.
  std::atomic<std::uint64_t> sum_ns_{0};
  std::atomic<std::uint64_t> max_ns_{0};
};

// ShareInterval is a confidence interval for a proportion, both ends in [0, 1].
struct ShareInterval {
  double low = 0;
  double high = 1;
};

// wilson_interval returns the Wilson score interval for successes out of n at normal quantile z (1.96 for
// 95%). Unlike the normal approximation it stays inside [0, 1] and is sensible for 0 or n successes and
// small n, which is what short A/B runs produce. {0, 1} when n == 0 or z is not finite; successes above n
// count as n.
ShareInterval wilson_interval(std::uint64_t successes, std::uint64_t n, double z = 1.96);

}  // namespace rproxy
