// SplitStage assigns every exchange a variant (A/B split) and sends it to the upstreams named after that
// variant; later stages (fault, record) can match on Exchange::variant.
//
//   {"type": "split", "params": {
//      "variants": [{"name": "a", "weight": 90}, {"name": "b", "weight": 10}],
//      "sticky": "cookie",             // none | cookie | ip | header:NAME | query:NAME
//      "cookie": "rproxy_split",       // sticky cookie name
//      "cookie_max_age": "720h",
//      "override": true,               // X-Rproxy-Variant header, ?rproxy_variant= and the rproxy_variant
//      cookie "shadow": {"variant": "b", "percent": 100, "compare_headers": ["Content-Type"],
//                 "ignore": ["updated_at", "$.meta.request_id"], "max_body": "1MiB", "timeout": "10s"}}}
//
// Assignment is VariantPicker's (weighted rendezvous hashing of the sticky key with the scenario seed);
// without stickiness the key is the request's ordinal on this stage. In cookie mode a new client gets a
// key derived from the seed and its ordinal, in a cookie, so reruns give the same cookies and variants.
// Overrides force a variant for testers; in cookie mode a header or query override also pins the client
// with the rproxy_variant cookie (an empty ?rproxy_variant= unpins). Every response says which variant
// served it in X-Rproxy-Variant; when a variant's upstreams refuse connections the engine fails over to
// another variant, which then serves (and is counted) instead.
//
// Shadow mode: the shadow variant gets no assigned traffic; a copy of (a percentage of) the requests goes
// to it after the primary answered, and the two responses are compared (see shadow_diff.hpp).
//
// Hooks: on_request (assign, override, shadow), on_response (headers, cookies), on_complete (statistics).
// Shared state is atomic counters, lock-free histograms and a mutex around the shadow tallies only.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/latency_histogram.hpp"
#include "rproxy/stage.hpp"
#include "stages/shadow_diff.hpp"
#include "stages/split_picker.hpp"

namespace rproxy::stages {

struct StickySpec {
  enum class Mode { None, Cookie, Ip, Header, Query } mode = Mode::None;
  std::string name;  // header or query parameter name
  std::string to_string() const;
};
// parse_sticky reads "none", "cookie", "ip", "header:NAME", "query:NAME"; nullopt (and a message) otherwise.
std::optional<StickySpec> parse_sticky(const std::string& text, std::string& error);

struct ShadowSpec {
  std::string variant;
  double percent = 100;
  DiffOptions diff;
  std::uint64_t max_body = 1024 * 1024;
  std::chrono::milliseconds timeout{10000};
};

struct SplitSettings {
  std::vector<Variant> variants;
  StickySpec sticky;
  std::string cookie = "rproxy_split";
  std::chrono::milliseconds cookie_max_age{720LL * 3600 * 1000};
  bool override_enabled = true;
  std::optional<ShadowSpec> shadow;
};

inline constexpr const char* kVariantHeader = "X-Rproxy-Variant";
inline constexpr const char* kOverrideParam = "rproxy_variant";  // query parameter and pin cookie

class SplitStage : public Stage, public ShadowObserver {
 public:
  SplitStage(SplitSettings settings, std::uint64_t seed);

  static std::unique_ptr<Stage> create(const nlohmann::json& params, const std::string& path,
                                       const StageContext& context, std::vector<std::string>& problems);
  // parse_settings is create without building the stage (also used by `rproxy split --explain`).
  static std::optional<SplitSettings> parse_settings(const nlohmann::json& params, const std::string& path,
                                                     const StageContext& context,
                                                     std::vector<std::string>& problems);

  Decision on_request(Exchange& exchange) override;
  Decision on_response(Exchange& exchange) override;
  void on_complete(const Exchange& exchange) override;
  nlohmann::json report() const override;
  std::string summary() const override;

  void on_shadow(const Exchange& exchange, const CapturedResponse& primary,
                 const CapturedResponse& shadow) override;
  void on_shadow_skipped(const Exchange& exchange, const std::string& reason) override;

  // explain says which variant a sticky key gets, with each variant's score, in one line.
  std::string explain(const std::string& key) const;
  // variant_for_key is the bare assignment of a sticky key (what explain reports).
  const std::string& variant_for_key(const std::string& key) const;
  const SplitSettings& settings() const { return settings_; }

 private:
  struct VariantStats {
    std::atomic<std::uint64_t> requests{0};
    std::atomic<std::uint64_t> assigned{0};
    std::atomic<std::uint64_t> overrides{0};
    std::atomic<std::uint64_t> failovers_in{0};
    std::atomic<std::uint64_t> failovers_out{0};
    std::atomic<std::uint64_t> errors{0};
    std::array<std::atomic<std::uint64_t>, 5> status_class{};  // 1xx..5xx
    LatencyHistogram latency;
  };
  struct ShadowRouteTally {
    std::uint64_t compared = 0;
    std::uint64_t different = 0;
    std::map<std::string, std::uint64_t> where;  // difference location -> count
    std::vector<nlohmann::json> examples;
  };
  struct ShadowTally {
    std::uint64_t requested = 0;
    std::uint64_t compared = 0;
    std::uint64_t identical = 0;
    std::uint64_t different = 0;
    std::uint64_t shadow_errors = 0;
    std::map<std::string, std::uint64_t> skipped;
    std::map<std::string, ShadowRouteTally> routes;
  };

  std::optional<std::size_t> find_variant(std::string_view name) const;
  std::string served_variant(const Exchange& exchange) const;
  std::string new_cookie_key(std::uint64_t ordinal) const;
  LocalResponse unknown_variant(const std::string& given, const std::string& where) const;

  SplitSettings settings_;
  std::uint64_t seed_;
  VariantPicker picker_;
  std::atomic<std::uint64_t> ordinal_{0};
  std::atomic<std::uint64_t> unkeyed_{0};  // sticky requests without the key (header/query absent)
  std::unique_ptr<VariantStats[]> stats_;
  LatencyHistogram shadow_primary_latency_;
  LatencyHistogram shadow_latency_;
  mutable std::mutex shadow_mutex_;
  ShadowTally shadow_;
};

}  // namespace rproxy::stages
