// CacheStage is a shared HTTP cache (RFC 9111) in front of the upstreams: what nginx proxy_cache, Varnish
// or Caddy's cache do, in memory, so a slow dev backend answers repeated GETs at once.
//
//   {"type": "cache", "params": {"max_size": "64MiB", "max_entry": "8MiB", "default_ttl": "0",
//                                "heuristic": true, "methods": ["GET", "HEAD"], "private": false}}
//
// max_size bounds the stored bodies and headers together (least recently used entries go first);
// max_entry is the largest body stored (a bigger one streams through untouched). default_ttl "0" (the
// default) caches only what the upstream allows: explicit freshness (s-maxage, max-age, Expires) or, with
// heuristic on, 10% of the time since Last-Modified, at most a day; a default_ttl above 0 replaces the
// heuristic for cacheable responses without explicit freshness. methods: GET and/or HEAD (HEAD is answered
// from a stored GET, never stored itself). private: act as a private (browser-like) cache, which also
// stores Cache-Control: private responses and answers requests with Authorization (for one user: entries
// are not kept apart by credentials); s-maxage and proxy-revalidate then do not apply.
//
// Every response gets X-Rproxy-Cache: HIT (answered from the store, with Age), MISS (from the upstream),
// REVALIDATED (a stale entry the upstream confirmed with 304; the stored body is sent) or BYPASS (not
// looked up: other methods, request no-store, Authorization, If-Match / If-Unmodified-Since).
//
// Lookup: the key is route, scheme, Host (lowercase) and the request target; one key keeps a variant per
// combination of the request headers the response's Vary names ("Vary: *" is never stored). A variant is
// used when fresh by RFC 9111 §4.2 and acceptable to the request's max-age, min-fresh, max-stale and
// no-cache (also Pragma: no-cache); a fresh hit answers If-None-Match / If-Modified-Since itself with 304.
// A stale variant with ETag or Last-Modified is revalidated: the request goes on with If-None-Match /
// If-Modified-Since (unless the client sent its own conditional, in which case a fitting 304 passes through
// and freshens the entry). only-if-cached without a usable variant gets 504.
//
// Storing (GET only, in on_complete, from the upstream's head as received and the body as teed): the
// exchange must have ended cleanly with every byte sent to the client, the body must not exceed max_entry
// (nor differ from Content-Length), and why_not_storable (cache_policy.hpp) must agree: not 206, no
// no-store, not private (shared), not Authorization unless public/s-maxage/must-revalidate (RFC 9111 §3.5),
// no Set-Cookie unless public or the cookie is named in private="..." or no-cache="..." (the stored copy
// then has no cookie: one user's cookie never reaches another), statuses other than RFC 9110's
// heuristically cacheable ones only with explicit freshness, and fresh or validatable. Unsafe methods
// (POST, PUT, PATCH, DELETE, ...) answered with 2xx/3xx invalidate the target and its same-host Location /
// Content-Location (RFC 9111 §4.4).
//
// Hooks: on_request (lookup, hit, conditional), on_response (label, 304 handling), on_complete (store,
// invalidate, count). Response stages run again on hits, so CORS and header stages still apply. Shared by
// every thread: the store has one mutex, counters are atomic.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "rproxy/stage.hpp"
#include "stages/cache_store.hpp"

namespace rproxy::stages {

struct CacheSettings {
  std::uint64_t max_size = 64ull << 20;
  std::uint64_t max_entry = 8ull << 20;
  std::chrono::milliseconds default_ttl{0};
  bool heuristic = true;
  bool get = true;   // GET responses are looked up and stored
  bool head = true;  // HEAD is answered from stored GET responses
  bool private_cache = false;
};

class CacheStage : public Stage {
 public:
  using Clock = std::function<std::chrono::system_clock::time_point()>;
  explicit CacheStage(CacheSettings settings, Clock clock = std::chrono::system_clock::now);

  static std::unique_ptr<Stage> create(const nlohmann::json& params, const std::string& path,
                                       const StageContext& context, std::vector<std::string>& problems);

  Decision on_request(Exchange& exchange) override;
  Decision on_response(Exchange& exchange) override;
  void on_complete(const Exchange& exchange) override;
  nlohmann::json report() const override;
  std::string summary() const override;

  const CacheSettings& settings() const { return settings_; }

  struct State;  // per exchange, in Exchange::stage_state (cache.cpp)

 private:
  FreshnessRules rules() const;
  // from_store is the stored response as sent: Age and the X-Rproxy-Cache label added, no-cache="..."
  // fields left out unless the upstream just validated it.
  LocalResponse from_store(const CachedResponse& entry, const char* label, bool validated) const;
  Decision answer_hit(Exchange& exchange, State& state, const CachedResponse& entry);
  Decision revalidated(Exchange& exchange, State& state, const Headers& not_modified);
  void store(const Exchange& exchange, State& state);
  void invalidate(const Exchange& exchange, const State& state);

  CacheSettings settings_;
  Clock clock_;
  CacheStore store_;
  std::atomic<std::uint64_t> hits_{0};
  std::atomic<std::uint64_t> misses_{0};
  std::atomic<std::uint64_t> revalidated_{0};
  std::atomic<std::uint64_t> bypass_{0};
  std::atomic<std::uint64_t> stored_{0};
};

}  // namespace rproxy::stages
