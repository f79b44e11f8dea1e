// Unit tests for lib/core/latency_histogram: bucket geometry, quantile accuracy, concurrency, merge and the
// Wilson interval.
#include "core/latency_histogram.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <thread>
#include <vector>

using rproxy::LatencyHistogram;
using rproxy::wilson_interval;
using namespace std::chrono_literals;

namespace {
// within_bound checks a reported value against the true one using the documented error bound.
bool within_bound(double reported, double truth) {
  return std::abs(reported - truth) <= truth * LatencyHistogram::kMaxRelativeError + 1e-9;
}
}  // namespace

TEST_CASE("LatencyHistogram: buckets tile the range without gaps and stay narrow") {
  CHECK(LatencyHistogram::bucket_index(0) == 0);
  CHECK(LatencyHistogram::bucket_index(63) == 63);
  CHECK(LatencyHistogram::bucket_index(LatencyHistogram::kMaxTrackableNs) ==
        LatencyHistogram::kBucketCount - 1);
  CHECK(LatencyHistogram::bucket_index(~0ULL) == LatencyHistogram::kBucketCount - 1);
  // At least one hour fits.
  CHECK(LatencyHistogram::kMaxTrackableNs >= 3600ULL * 1000 * 1000 * 1000);
  std::uint64_t expected_lower = 0;
  for (std::size_t i = 0; i < LatencyHistogram::kBucketCount; ++i) {
    auto lower = LatencyHistogram::bucket_lower(i);
    auto width = LatencyHistogram::bucket_width(i);
    REQUIRE(lower == expected_lower);
    CHECK(LatencyHistogram::bucket_index(lower) == i);
    CHECK(LatencyHistogram::bucket_index(lower + width - 1) == i);
    if (i >= 2 * LatencyHistogram::kSubBuckets) CHECK(width * LatencyHistogram::kSubBuckets <= lower);
    expected_lower = lower + width;
  }
  CHECK(expected_lower - 1 == LatencyHistogram::kMaxTrackableNs);
}

TEST_CASE("LatencyHistogram: empty histogram reports zeros") {
  LatencyHistogram h;
  CHECK(h.count() == 0);
  CHECK(h.quantile_ms(0.5) == 0);
  CHECK(h.quantile_ms(1) == 0);
  CHECK(h.max_ms() == 0);
  CHECK(h.mean_ms() == 0);
}

TEST_CASE("LatencyHistogram: quantiles of 1..1000 ms uniform are within the bound") {
  LatencyHistogram h;
  for (int ms = 1; ms <= 1000; ++ms) h.record_ms(ms);
  CHECK(h.count() == 1000);
  CHECK(within_bound(h.quantile_ms(0.5), 500));
  CHECK(within_bound(h.quantile_ms(0.9), 900));
  CHECK(within_bound(h.quantile_ms(0.99), 990));
  CHECK(within_bound(h.quantile_ms(0.999), 999));
  CHECK(within_bound(h.quantile_ms(0), 1));          // the first sample, not below it
  CHECK(h.quantile_ms(1) == doctest::Approx(1000));  // capped by the exact max
  CHECK(h.max_ms() == doctest::Approx(1000));
  CHECK(h.mean_ms() == doctest::Approx(500.5));
  // Out-of-range q clamps.
  CHECK(h.quantile_ms(-1) == h.quantile_ms(0));
  CHECK(h.quantile_ms(7) == h.quantile_ms(1));
  CHECK(h.quantile_ms(std::nan("")) == h.quantile_ms(0));
}

TEST_CASE("LatencyHistogram: every quantile of a wide distribution is within the bound") {
  // 1 us to ~1 h, geometric steps, so every octave is exercised.
  LatencyHistogram h;
  std::vector<double> samples;
  for (double ms = 0.001; ms < 3.6e6; ms *= 1.07) samples.push_back(ms);
  for (double ms : samples) h.record_ms(ms);
  REQUIRE(h.count() == samples.size());
  for (double q : {0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0}) {
    auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(samples.size())));
    double truth = samples[rank - 1];
    CAPTURE(q);
    CHECK(within_bound(h.quantile_ms(q), truth));
  }
}

TEST_CASE("LatencyHistogram: the answer is never below its bucket's lower bound") {
  LatencyHistogram h;
  h.record(1'000'000ns);
  auto index = LatencyHistogram::bucket_index(1'000'000);
  double lower_ms = static_cast<double>(LatencyHistogram::bucket_lower(index)) / 1e6;
  CHECK(h.quantile_ms(0.5) >= lower_ms);
  CHECK(h.quantile_ms(0.5) <= 1.0);  // and capped by the max, here the only sample
}

TEST_CASE("LatencyHistogram: negative, NaN and huge values clamp") {
  LatencyHistogram h;
  h.record(-5ms);
  h.record_ms(-3.0);
  h.record_ms(std::nan(""));
  CHECK(h.count() == 3);
  CHECK(h.max_ms() == 0);
  CHECK(h.quantile_ms(1) == 0);
  h.record(std::chrono::hours(24 * 365));
  h.record_ms(1e300);
  h.record_ms(INFINITY);
  CHECK(h.count() == 6);
  double top_ms = static_cast<double>(LatencyHistogram::kMaxTrackableNs) / 1e6;
  CHECK(h.max_ms() == doctest::Approx(top_ms));
  CHECK(h.quantile_ms(1) == doctest::Approx(top_ms));
  CHECK(h.quantile_ms(0.5) == 0);
}

TEST_CASE("LatencyHistogram: sub-microsecond values are exact") {
  LatencyHistogram h;
  h.record(40ns);
  CHECK(h.quantile_ms(0.5) == doctest::Approx(40e-6));
}

TEST_CASE("LatencyHistogram: concurrent recording from 4 threads loses no sample") {
  LatencyHistogram h;
  constexpr int kPerThread = 100000;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&h, t] {
      for (int i = 0; i < kPerThread; ++i) h.record(std::chrono::microseconds(1 + (i + t) % 5000));
    });
  for (auto& th : threads) th.join();
  CHECK(h.count() == 4 * kPerThread);
  CHECK(h.max_ms() == doctest::Approx(5.0));
  CHECK(within_bound(h.quantile_ms(0.5), 2.5));
}

TEST_CASE("LatencyHistogram: merge adds counts, sums and max") {
  LatencyHistogram a;
  LatencyHistogram b;
  for (int i = 0; i < 100; ++i) a.record_ms(10);
  for (int i = 0; i < 300; ++i) b.record_ms(30);
  b.record_ms(500);
  a.merge_from(b);
  CHECK(a.count() == 401);
  CHECK(b.count() == 301);  // the source is untouched
  CHECK(a.max_ms() == doctest::Approx(500));
  CHECK(a.mean_ms() == doctest::Approx((100 * 10 + 300 * 30 + 500) / 401.0));
  CHECK(within_bound(a.quantile_ms(0.2), 10));
  CHECK(within_bound(a.quantile_ms(0.5), 30));

  LatencyHistogram snapshot;  // merging into a fresh histogram is how to take a snapshot
  snapshot.merge_from(a);
  a.record_ms(1);
  CHECK(snapshot.count() == 401);
  CHECK(snapshot.quantile_ms(0.5) == doctest::Approx(a.quantile_ms(0.5)));
}

TEST_CASE("wilson_interval: matches hand-computed values") {
  auto i = wilson_interval(90, 100);
  CHECK(i.low == doctest::Approx(0.8256).epsilon(0.0005));
  CHECK(i.high == doctest::Approx(0.9448).epsilon(0.0005));

  i = wilson_interval(0, 10);
  CHECK(i.low == 0);
  CHECK(i.high == doctest::Approx(0.2775).epsilon(0.0005));

  i = wilson_interval(10, 10);
  CHECK(i.low == doctest::Approx(0.7225).epsilon(0.0005));
  CHECK(i.high == 1);

  i = wilson_interval(50, 100, 2.576);  // 99%
  CHECK(i.low == doctest::Approx(0.3753).epsilon(0.0005));
  CHECK(i.high == doctest::Approx(0.6247).epsilon(0.0005));
}

TEST_CASE("wilson_interval: degenerate inputs stay in (0, 1)") {
  auto i = wilson_interval(0, 0);
  CHECK(i.low == 0);
  CHECK(i.high == 1);
  i = wilson_interval(20, 10);  // successes above n count as n
  CHECK(i.high == 1);
  CHECK(i.low == doctest::Approx(wilson_interval(10, 10).low));
  i = wilson_interval(5, 10, std::nan(""));
  CHECK(i.low == 0);
  CHECK(i.high == 1);
  i = wilson_interval(5, 10, 0);  // no uncertainty allowed: the point estimate
  CHECK(i.low == doctest::Approx(0.5));
  CHECK(i.high == doctest::Approx(0.5));
}
