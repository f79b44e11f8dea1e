// Metrics: what every finished exchange did, per route, upstream, variant and status class: counts, bytes,
// latency histograms, rproxy's own errors by cause, faults, replay and cache results. Fed once per
// exchange from the place that writes the access log, so the counts always equal the log's lines.
//
// Each worker records into its own MetricsShard (its lock is only ever contended by a reader), and readers
// merge the shards: the hot path never shares a cache line with another worker.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

#include "core/latency_histogram.hpp"

namespace rproxy {

// ExchangeSample is one finished exchange as the access log sees it.
struct ExchangeSample {
  std::string_view route;
  std::string_view upstream;  // URL text, "" when none was contacted
  std::string_view variant;
  int status = 0;  // 0: no response was sent (reset, client gone)
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  double duration_ms = 0;
  std::string_view error;   // X-Rproxy-Error cause, "" when none
  std::string_view fault;   // fault rules that fired, comma-separated
  std::string_view replay;  // "hit", "miss" or ""
  std::string_view cache;   // "hit", "miss", "revalidated", "bypass" or ""
  // For the list of recent exchanges.
  std::uint64_t id = 0;
  std::int64_t start_ms = 0;  // Unix time
  std::string_view client_ip;
  std::string_view method;
  std::string_view target;
};

// RecentExchange is one entry of the recent-exchanges list (GET /exchanges on the admin listener).
struct RecentExchange {
  std::uint64_t id = 0;
  std::int64_t start_ms = 0;
  std::string client_ip, method, target, route, upstream, variant, error, fault;
  int status = 0;
  double duration_ms = 0;
  std::uint64_t bytes_out = 0;
};

// Prometheus histogram bucket bounds, in seconds (request duration).
inline constexpr std::array<double, 14> kDurationBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                            0.1,    0.25,  0.5,    1,     2.5,  5,     10};

// ViewLess orders tuples and pairs of strings by their characters, so map keys of std::string can be found
// with keys of std::string_view (no allocation per lookup on the hot path).
struct ViewLess {
  using is_transparent = void;
  template <typename T>
  static auto view_of(const T& v) {
    if constexpr (std::is_convertible_v<const T&, std::string_view>)
      return std::string_view(v);
    else
      return v;
  }
  template <typename... T>
  static auto views(const std::tuple<T...>& t) {
    return std::apply([](const auto&... x) { return std::make_tuple(view_of(x)...); }, t);
  }
  template <typename A, typename B>
  static auto views(const std::pair<A, B>& p) {
    return std::make_pair(view_of(p.first), view_of(p.second));
  }
  template <typename L, typename R>
  bool operator()(const L& l, const R& r) const {
    return views(l) < views(r);
  }
};

class MetricsShard {
 public:
  void record(const ExchangeSample& s);

 private:
  friend class MetricsView;
  // route, upstream, variant, status class (0 = none, 1..5)
  using SeriesKey = std::tuple<std::string, std::string, std::string, int>;
  struct Series {
    std::uint64_t requests = 0;
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
    double duration_sum_s = 0;
    std::array<std::uint64_t, kDurationBuckets.size()> buckets{};  // non-cumulative
  };
  using LabelKey = std::pair<std::string, std::string>;  // route, label value
  std::mutex mutex_;
  std::map<SeriesKey, Series, ViewLess> series_;  // std::less<>: found by string_views, no allocation
  // Quantiles per route and variant for the summary table.
  std::map<std::pair<std::string, std::string>, std::unique_ptr<LatencyHistogram>, ViewLess> latency_;
  std::map<LabelKey, std::uint64_t> errors_;  // cause
  std::map<LabelKey, std::uint64_t> faults_;  // rule
  std::map<LabelKey, std::uint64_t> replay_;  // hit/miss
  std::map<LabelKey, std::uint64_t> cache_;   // hit/miss/...
  static constexpr std::size_t kRecent = 100;
  std::vector<RecentExchange> recent_;  // ring of the last kRecent exchanges
  std::size_t recent_next_ = 0;
};

// ServerGauges are the server-wide figures that are not per exchange.
struct ServerGauges {
  std::uint64_t connections_active = 0;
  std::uint64_t connections_accepted = 0;
  std::uint64_t connections_refused = 0;
  std::uint64_t upstream_errors = 0;
  // route, upstream URL, backup, up
  struct Upstream {
    std::string route;
    std::string url;
    bool backup = false;
    bool up = true;
  };
  std::vector<Upstream> upstreams;
};

// SummaryRow is one line of the summary table: a route and variant over every upstream.
struct SummaryRow {
  std::string route;
  std::string variant;
  std::uint64_t requests = 0;
  std::array<std::uint64_t, 6> by_class{};  // [0] no response, [1..5] 1xx..5xx
  std::uint64_t errors = 0;                 // responses rproxy produced itself (X-Rproxy-Error)
  std::uint64_t faults = 0;
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  double p50_ms = 0;
  double p99_ms = 0;
};

// MetricsView merges shards under their locks, one at a time.
class MetricsView {
 public:
  explicit MetricsView(const std::vector<MetricsShard*>& shards) : shards_(shards) {}
  // prometheus renders the text exposition format 0.0.4.
  std::string prometheus(const ServerGauges& gauges) const;
  std::vector<SummaryRow> summary_rows() const;
  // recent returns up to limit of the latest exchanges, newest first.
  std::vector<RecentExchange> recent(std::size_t limit) const;

 private:
  std::vector<MetricsShard*> shards_;
};

// summary_table renders rows as an aligned text table ("" when there were no requests); with
// previous_requests and seconds > 0 a req/s column shows the rate since then (the live view).
std::string summary_table(const std::vector<SummaryRow>& rows,
                          const std::vector<SummaryRow>* previous = nullptr, double seconds = 0);
nlohmann::json summary_json(const std::vector<SummaryRow>& rows);

}  // namespace rproxy
