#include "core/metrics.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <sstream>

namespace rproxy {

namespace {

int status_class(int status) {
  return status >= 100 && status <= 599 ? status / 100 : 0;
}

const char* class_label(int c) {
  static const char* names[] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
  return names[c];
}

// Prometheus label values escape backslash, double quote and newline.
std::string escape(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string number(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.9g", v);
  return b;
}

template <typename Map>
void bump(Map& m, std::string_view route, std::string_view value) {
  if (!value.empty()) ++m[{std::string(route), std::string(value)}];
}

}  // namespace

void MetricsShard::record(const ExchangeSample& s) {
  std::lock_guard lock(mutex_);
  const int cls = status_class(s.status);
  auto it = series_.find(std::make_tuple(s.route, s.upstream, s.variant, cls));
  if (it == series_.end())
    it = series_
             .emplace(SeriesKey{std::string(s.route), std::string(s.upstream), std::string(s.variant), cls},
                      Series{})
             .first;
  auto& series = it->second;
  ++series.requests;
  series.bytes_in += s.bytes_in;
  series.bytes_out += s.bytes_out;
  const double seconds = s.duration_ms / 1000.0;
  series.duration_sum_s += seconds;
  auto bucket = std::lower_bound(kDurationBuckets.begin(), kDurationBuckets.end(), seconds);
  if (bucket != kDurationBuckets.end())
    ++series.buckets[static_cast<std::size_t>(bucket - kDurationBuckets.begin())];
  auto h = latency_.find(std::make_pair(s.route, s.variant));
  if (h == latency_.end())
    h = latency_
            .emplace(std::make_pair(std::string(s.route), std::string(s.variant)),
                     std::make_unique<LatencyHistogram>())
            .first;
  h->second->record_ms(s.duration_ms);
  bump(errors_, s.route, s.error);
  if (!s.fault.empty()) {
    std::string_view rest = s.fault;
    while (!rest.empty()) {
      auto comma = rest.find(',');
      auto rule = rest.substr(0, comma);
      while (!rule.empty() && rule.front() == ' ') rule.remove_prefix(1);
      bump(faults_, s.route, rule);
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
  }
  bump(replay_, s.route, s.replay);
  bump(cache_, s.route, s.cache);
  // The ring's entries are overwritten in place: once it is full their strings' capacity is reused.
  if (recent_.size() < kRecent) recent_.emplace_back();
  auto& r = recent_[recent_next_];
  r.id = s.id;
  r.start_ms = s.start_ms;
  r.client_ip.assign(s.client_ip);
  r.method.assign(s.method);
  r.target.assign(s.target);
  r.route.assign(s.route);
  r.upstream.assign(s.upstream);
  r.variant.assign(s.variant);
  r.error.assign(s.error);
  r.fault.assign(s.fault);
  r.status = s.status;
  r.duration_ms = s.duration_ms;
  r.bytes_out = s.bytes_out;
  recent_next_ = (recent_next_ + 1) % kRecent;
}

std::vector<RecentExchange> MetricsView::recent(std::size_t limit) const {
  std::vector<RecentExchange> all;
  for (auto* shard : shards_) {
    std::lock_guard lock(shard->mutex_);
    all.insert(all.end(), shard->recent_.begin(), shard->recent_.end());
  }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.id > b.id; });
  if (all.size() > limit) all.resize(limit);
  return all;
}

std::string MetricsView::prometheus(const ServerGauges& g) const {
  // Merge first, so each family is written once with all its series together, as the format requires.
  std::map<MetricsShard::SeriesKey, MetricsShard::Series> series;
  std::map<MetricsShard::LabelKey, std::uint64_t> errors, faults, replay, cache;
  for (auto* shard : shards_) {
    std::lock_guard lock(shard->mutex_);
    for (const auto& [k, v] : shard->series_) {
      auto& m = series[k];
      m.requests += v.requests;
      m.bytes_in += v.bytes_in;
      m.bytes_out += v.bytes_out;
      m.duration_sum_s += v.duration_sum_s;
      for (std::size_t i = 0; i < v.buckets.size(); ++i) m.buckets[i] += v.buckets[i];
    }
    for (const auto& [k, v] : shard->errors_) errors[k] += v;
    for (const auto& [k, v] : shard->faults_) faults[k] += v;
    for (const auto& [k, v] : shard->replay_) replay[k] += v;
    for (const auto& [k, v] : shard->cache_) cache[k] += v;
  }
  std::string out;
  auto family = [&](const char* name, const char* type, const char* help) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  auto labels = [](const MetricsShard::SeriesKey& k, bool with_class) {
    std::string l = "route=\"" + escape(std::get<0>(k)) + "\",upstream=\"" + escape(std::get<1>(k)) +
                    "\",variant=\"" + escape(std::get<2>(k)) + "\"";
    if (with_class) l += std::string(",code=\"") + class_label(std::get<3>(k)) + "\"";
    return l;
  };
  family("rproxy_requests_total", "counter",
         "Exchanges finished, by route, upstream, variant and status class (none: no response was sent).");
  for (const auto& [k, v] : series)
    out += "rproxy_requests_total{" + labels(k, true) + "} " + std::to_string(v.requests) + "\n";
  family("rproxy_request_bytes_total", "counter", "Request body bytes received from clients.");
  for (const auto& [k, v] : series)
    out += "rproxy_request_bytes_total{" + labels(k, true) + "} " + std::to_string(v.bytes_in) + "\n";
  family("rproxy_response_bytes_total", "counter", "Response body bytes sent to clients.");
  for (const auto& [k, v] : series)
    out += "rproxy_response_bytes_total{" + labels(k, true) + "} " + std::to_string(v.bytes_out) + "\n";
  // The histogram is per route, upstream and variant (status class folded in).
  std::map<std::tuple<std::string, std::string, std::string>, MetricsShard::Series> by_target;
  for (const auto& [k, v] : series) {
    auto& m = by_target[{std::get<0>(k), std::get<1>(k), std::get<2>(k)}];
    m.requests += v.requests;
    m.duration_sum_s += v.duration_sum_s;
    for (std::size_t i = 0; i < v.buckets.size(); ++i) m.buckets[i] += v.buckets[i];
  }
  family("rproxy_request_duration_seconds", "histogram",
         "Time from the end of the request head to the end of the response.");
  for (const auto& [k, v] : by_target) {
    auto l = labels({std::get<0>(k), std::get<1>(k), std::get<2>(k), 0}, false);
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < kDurationBuckets.size(); ++i) {
      cumulative += v.buckets[i];
      out += "rproxy_request_duration_seconds_bucket{" + l + ",le=\"" + number(kDurationBuckets[i]) + "\"} " +
             std::to_string(cumulative) + "\n";
    }
    out +=
        "rproxy_request_duration_seconds_bucket{" + l + ",le=\"+Inf\"} " + std::to_string(v.requests) + "\n";
    out += "rproxy_request_duration_seconds_sum{" + l + "} " + number(v.duration_sum_s) + "\n";
    out += "rproxy_request_duration_seconds_count{" + l + "} " + std::to_string(v.requests) + "\n";
  }
  auto labelled = [&](const char* name, const char* help, const char* label,
                      const std::map<MetricsShard::LabelKey, std::uint64_t>& m) {
    family(name, "counter", help);
    for (const auto& [k, v] : m)
      out += std::string(name) + "{route=\"" + escape(k.first) + "\"," + label + "=\"" + escape(k.second) +
             "\"} " + std::to_string(v) + "\n";
  };
  labelled("rproxy_errors_total", "Responses rproxy produced itself or cut short, by X-Rproxy-Error cause.",
           "cause", errors);
  labelled("rproxy_faults_total", "Fault rules that fired, by rule.", "rule", faults);
  labelled("rproxy_replay_total", "Replay lookups, by result.", "result", replay);
  labelled("rproxy_cache_total", "Cache lookups, by result.", "result", cache);
  family("rproxy_connections_active", "gauge", "Client connections open now.");
  out += "rproxy_connections_active " + std::to_string(g.connections_active) + "\n";
  family("rproxy_connections_accepted_total", "counter", "Client connections accepted.");
  out += "rproxy_connections_accepted_total " + std::to_string(g.connections_accepted) + "\n";
  family("rproxy_connections_refused_total", "counter", "Client connections refused over limits.max_conns.");
  out += "rproxy_connections_refused_total " + std::to_string(g.connections_refused) + "\n";
  family("rproxy_upstream_errors_total", "counter",
         "Exchanges that failed because of an upstream (refused, timed out, closed, bad response).");
  out += "rproxy_upstream_errors_total " + std::to_string(g.upstream_errors) + "\n";
  family("rproxy_upstream_up", "gauge", "1 while an upstream is up (health checks passing, not ejected).");
  for (const auto& u : g.upstreams)
    out += "rproxy_upstream_up{route=\"" + escape(u.route) + "\",upstream=\"" + escape(u.url) +
           "\",backup=\"" + (u.backup ? "true" : "false") + "\"} " + (u.up ? "1" : "0") + "\n";
  return out;
}

std::vector<SummaryRow> MetricsView::summary_rows() const {
  std::map<std::pair<std::string, std::string>, SummaryRow> rows;
  std::map<std::pair<std::string, std::string>, LatencyHistogram> latency;
  std::map<std::string, std::uint64_t> faults_by_route;
  std::map<std::string, std::uint64_t> errors_by_route;
  for (auto* shard : shards_) {
    std::lock_guard lock(shard->mutex_);
    for (const auto& [k, v] : shard->series_) {
      auto& row = rows[{std::get<0>(k), std::get<2>(k)}];
      row.route = std::get<0>(k);
      row.variant = std::get<2>(k);
      row.requests += v.requests;
      row.by_class[static_cast<std::size_t>(std::get<3>(k))] += v.requests;
      row.bytes_in += v.bytes_in;
      row.bytes_out += v.bytes_out;
    }
    for (const auto& [k, h] : shard->latency_) latency[k].merge_from(*h);
  }
  std::vector<SummaryRow> out;
  for (auto& [k, row] : rows) {
    auto it = latency.find(k);
    if (it != latency.end()) {
      row.p50_ms = it->second.quantile_ms(0.5);
      row.p99_ms = it->second.quantile_ms(0.99);
    }
    out.push_back(row);
  }
  // Errors and faults are per route; shown on the route's first row.
  std::map<std::string, std::uint64_t> errors, faults;
  for (auto* shard : shards_) {
    std::lock_guard lock(shard->mutex_);
    for (const auto& [k, v] : shard->errors_) errors[k.first] += v;
    for (const auto& [k, v] : shard->faults_) faults[k.first] += v;
  }
  std::string last;
  for (auto& row : out) {
    if (row.route == last) continue;
    last = row.route;
    row.errors = errors[row.route];
    row.faults = faults[row.route];
  }
  return out;
}

namespace {
std::string bytes_text(std::uint64_t n) {
  char b[32];
  if (n < 10 * 1024) return std::to_string(n) + "B";
  if (n < 10ull * 1024 * 1024) {
    std::snprintf(b, sizeof b, "%.0fKiB", static_cast<double>(n) / 1024);
  } else if (n < 10ull * 1024 * 1024 * 1024) {
    std::snprintf(b, sizeof b, "%.0fMiB", static_cast<double>(n) / (1024.0 * 1024));
  } else {
    std::snprintf(b, sizeof b, "%.1fGiB", static_cast<double>(n) / (1024.0 * 1024 * 1024));
  }
  return b;
}
std::string ms_text(double ms) {
  char b[32];
  std::snprintf(b, sizeof b, ms < 10 ? "%.2f" : ms < 100 ? "%.1f" : "%.0f", ms);
  return b;
}
}  // namespace

std::string summary_table(const std::vector<SummaryRow>& rows, const std::vector<SummaryRow>* previous,
                          double seconds) {
  if (rows.empty()) return {};
  const bool rate = previous && seconds > 0;
  std::vector<std::vector<std::string>> cells;
  std::vector<std::string> head{"route", "variant", "requests"};
  if (rate) head.push_back("req/s");
  for (auto h : {"2xx", "3xx", "4xx", "5xx", "none", "errors", "faults", "p50 ms", "p99 ms", "in", "out"})
    head.push_back(h);
  cells.push_back(head);
  for (const auto& r : rows) {
    std::vector<std::string> c{r.route.empty() ? "(none)" : r.route, r.variant.empty() ? "-" : r.variant,
                               std::to_string(r.requests)};
    if (rate) {
      std::uint64_t before = 0;
      for (const auto& p : *previous)
        if (p.route == r.route && p.variant == r.variant) before = p.requests;
      char b[32];
      std::snprintf(b, sizeof b, "%.0f",
                    static_cast<double>(r.requests - std::min(before, r.requests)) / seconds);
      c.push_back(b);
    }
    for (std::size_t k : {2, 3, 4, 5, 0}) c.push_back(std::to_string(r.by_class[k]));
    c.push_back(std::to_string(r.errors));
    c.push_back(std::to_string(r.faults));
    c.push_back(ms_text(r.p50_ms));
    c.push_back(ms_text(r.p99_ms));
    c.push_back(bytes_text(r.bytes_in));
    c.push_back(bytes_text(r.bytes_out));
    cells.push_back(std::move(c));
  }
  std::vector<std::size_t> width(cells[0].size(), 0);
  for (const auto& row : cells)
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  std::string out;
  for (const auto& row : cells) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      // Names left-aligned, numbers right-aligned.
      std::string pad(width[i] - row[i].size(), ' ');
      line += i < 2 ? row[i] + pad : pad + row[i];
      if (i + 1 < row.size()) line += "  ";
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

nlohmann::json summary_json(const std::vector<SummaryRow>& rows) {
  auto out = nlohmann::json::array();
  for (const auto& r : rows)
    out.push_back({{"route", r.route},
                   {"variant", r.variant},
                   {"requests", r.requests},
                   {"status",
                    {{"1xx", r.by_class[1]},
                     {"2xx", r.by_class[2]},
                     {"3xx", r.by_class[3]},
                     {"4xx", r.by_class[4]},
                     {"5xx", r.by_class[5]},
                     {"none", r.by_class[0]}}},
                   {"errors", r.errors},
                   {"faults", r.faults},
                   {"p50_ms", r.p50_ms},
                   {"p99_ms", r.p99_ms},
                   {"bytes_in", r.bytes_in},
                   {"bytes_out", r.bytes_out}});
  return out;
}

}  // namespace rproxy
