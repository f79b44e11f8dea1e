// RateLimitStage admits requests at a steady rate per key and answers the rest with 429, before anything
// reaches the upstream.
//
//   {"type": "rate_limit", "params": {"rate": "10/s", "burst": 5, "key": "ip", "max_keys": 100000}}
//
// rate is N/s, N/m or N/h. The algorithm is GCRA (the token bucket as a single timestamp per key): a key
// may send one request every 1/rate, plus `burst` requests ahead of that schedule. With the default burst
// 0 a "10/s" limit admits 10 per second, evenly, and never more than 11 in any one-second window; a burst
// of B lets an idle client send B+1 at once and then continue at the rate. Keys: "ip" (the client address,
// default), "header:NAME" (one bucket per value; requests without the header share one), "route" or
// "global". At most max_keys buckets are kept; the least recently used one goes first (it restarts full).
//
// Admitted responses carry RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset (IETF httpapi draft);
// a 429 adds Retry-After (whole seconds, at least 1) and X-Rproxy-Error: rate_limited.
//
// Hooks: on_request (decide), on_response (headers). One mutex guards the buckets; a decision is a map
// lookup and a few integer operations.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>

#include "rproxy/stage.hpp"

namespace rproxy::stages {

struct RateLimitSettings {
  std::uint64_t count = 1;      // requests ...
  std::chrono::seconds per{1};  // ... per this window (1 s, 1 min, 1 h)
  std::uint64_t burst = 0;
  enum class Key { Ip, Header, Route, Global } key = Key::Ip;
  std::string header;  // Key::Header
  std::size_t max_keys = 100000;
  std::string rate_text() const;  // "10/s"
  std::string key_text() const;   // "ip", "header:X-Api-Key", ...
};

class RateLimitStage : public Stage {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  explicit RateLimitStage(RateLimitSettings settings, Clock clock = std::chrono::steady_clock::now);

  static std::unique_ptr<Stage> create(const nlohmann::json& params, const std::string& path,
                                       const StageContext& context, std::vector<std::string>& problems);

  Decision on_request(Exchange& exchange) override;
  Decision on_response(Exchange& exchange) override;
  nlohmann::json report() const override;
  std::string summary() const override;

  const RateLimitSettings& settings() const { return settings_; }

 private:
  struct Verdict {
    bool allowed = false;
    std::uint64_t remaining = 0;
    std::uint64_t reset_s = 0;        // seconds until the bucket is full again
    std::uint64_t retry_after_s = 0;  // when refused: seconds until a request would be admitted
  };
  Verdict admit(const std::string& key);
  std::string key_of(const Exchange& exchange) const;
  void add_headers(Headers& headers, const Verdict& v) const;

  RateLimitSettings settings_;
  Clock clock_;
  std::int64_t interval_ns_;   // one request's worth of time
  std::int64_t tolerance_ns_;  // burst * interval

  struct Bucket {
    std::string key;
    std::int64_t tat_ns = 0;  // theoretical arrival time of the next conforming request
  };
  mutable std::mutex mutex_;
  std::list<Bucket> lru_;  // most recently used first
  std::unordered_map<std::string, std::list<Bucket>::iterator> buckets_;
  std::uint64_t evicted_ = 0;
  std::atomic<std::uint64_t> allowed_{0};
  std::atomic<std::uint64_t> limited_{0};
};

// parse_rate reads "10/s", "600/m", "1000/h" (also "10/second", "/minute", "/hour"); returns an error.
std::optional<std::string> parse_rate(const std::string& text, std::uint64_t& count,
                                      std::chrono::seconds& per);

}  // namespace rproxy::stages
