// ProxyServer runs a Scenario: it binds the listeners, runs one event loop per worker thread, and carries
// every exchange through router → stages → upstream → stages → client.
//
// Lifecycle: construct (validates, builds stages; throws ConfigError) → start() (binds; throws
// std::system_error naming the address on failure) → ports() → stop() / wait(). All methods are safe to
// call from any thread; stop() is idempotent and may be called from a signal-waiting thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rproxy/scenario.hpp"
#include "rproxy/stage.hpp"

namespace rproxy {

// ServerStats are monotonically increasing counters, readable while the server runs.
struct ServerStats {
  std::uint64_t connections_accepted = 0;
  std::uint64_t connections_refused = 0;  // over max_conns
  std::uint64_t connections_active = 0;
  std::uint64_t requests = 0;
  std::uint64_t upstream_errors = 0;
};

class ProxyServer {
 public:
  explicit ProxyServer(Scenario scenario);
  ~ProxyServer();
  ProxyServer(const ProxyServer&) = delete;
  ProxyServer& operator=(const ProxyServer&) = delete;

  void start();
  // ports returns the bound port of each listener, in scenario order (useful with port 0), then the
  // tls.redirect_http listener's if there is one.
  std::vector<std::uint16_t> ports() const;
  // stop stops accepting, lets in-flight exchanges finish (they get "Connection: close"), closes idle
  // connections, and forces everything closed after limits.drain_timeout.
  void stop();
  // wait blocks until the server has fully stopped.
  void wait();
  ServerStats stats() const;
  // scenario is the running scenario (a copy: a reload may replace it at any time).
  Scenario scenario() const;
  // notices: lines worth telling the user at start (local CA created, upstream verification off).
  std::vector<std::string> notices() const;
  // reload replaces the running scenario atomically: the new one is validated and its stages started
  // first, and on any problem nothing changes and the problems ("path: message") are returned. New
  // requests use it at once; exchanges in flight finish under the old one, whose stages stop when the last
  // of them is done. Listeners, workers, tls, admin, access_log and limits.max_conns cannot change this
  // way. Stage state (counters, caches, rate-limit buckets, health) starts afresh. Thread-safe.
  std::vector<std::string> reload(Scenario next);
  // report gathers every stage's report (Stage::report) with the server counters, as written to the
  // scenario's report file; summary is the human-readable form (Stage::summary of each stage). Both are
  // safe while the server runs.
  nlohmann::json report() const;
  std::string summary() const;
  // stage_names lists every stage instance (scenario-wide and per route) by name with its type, in pipeline
  // order; admin forwards a live-control call to the named stage (404 reply when there is none, 405 when it
  // has no admin API). Both are safe while the server runs.
  std::vector<std::pair<std::string, std::string>> stage_names() const;
  // metrics renders every counter in the Prometheus text format (per route, upstream, variant and status
  // class; the same exchanges the access log lists). summary_json is the exit summary's table as JSON (one
  // object per route and variant). upstreams describes every route's upstreams and their health. All are
  // safe while the server runs.
  std::string metrics() const;
  nlohmann::json summary_json() const;
  nlohmann::json upstreams() const;
  // recent_exchanges lists up to limit of the latest finished exchanges (newest first, at most 100 per
  // worker): id, time, client, method, target, status, duration, route, upstream, variant, fault, error.
  nlohmann::json recent_exchanges(std::size_t limit) const;
  AdminReply admin(const std::string& stage, const AdminRequest& request);
  // exit_code is the first non-zero Stage::exit_code (a strict replay with misses), else 0.
  int exit_code() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rproxy
