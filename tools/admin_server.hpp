// AdminServer: the live-control HTTP endpoint (`--admin`). It exposes the run's report and each stage's
// admin API as JSON, so a test or an operator can inspect and steer a running proxy.
//
// It only ever listens on loopback: the admin API can change what the proxy does to traffic and carries
// no authentication, so it must not be reachable from another machine. It has its own listener and
// threads, so a saturated or stalled proxy never delays an admin call.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "rproxy/scenario.hpp"
#include "rproxy/stage.hpp"

namespace rproxy {

// AdminTarget decouples the endpoint from the engine: the server only knows these three callbacks, so it
// can be tested with lambdas. They run on admin threads, concurrently with traffic and with each other,
// so they must be thread-safe and must not wait on traffic. An exception they throw becomes a 500 reply.
// An unset callback behaves as "nothing there" (null report, no stages).
struct AdminTarget {
  // report backs GET /report.
  std::function<nlohmann::json()> report;
  // stages lists (name, type) pairs; asked on every stage call, so stages may come and go.
  std::function<std::vector<std::pair<std::string, std::string>>()> stages;
  // call forwards /stages/<stage>[<path>]; the reply's status and body are passed through.
  std::function<AdminReply(const std::string& stage, const AdminRequest&)> call;
  // metrics backs GET /metrics (Prometheus text), upstreams GET /upstreams, summary GET /summary.
  std::function<std::string()> metrics;
  std::function<nlohmann::json()> upstreams;
  std::function<nlohmann::json()> summary;
  // scenario backs GET /scenario (the running scenario, every default filled in); replace_scenario backs
  // PUT /scenario (a whole scenario) and PATCH /scenario (a JSON merge patch, RFC 7386, applied to the
  // running scenario): it validates and applies atomically, returning the problems when it refused.
  std::function<nlohmann::json()> scenario;
  std::function<std::vector<std::string>(const nlohmann::json&)> replace_scenario;
  // exchanges backs GET /exchanges[?limit=N] (default 50, at most 1000): the latest exchanges, newest first.
  std::function<nlohmann::json(std::size_t limit)> exchanges;
  // token: when set, every call but GET /health needs "Authorization: Bearer <token>" (401 otherwise).
  std::string token;
};

// AdminServer serves, with every body JSON (application/json, 2-space indent, trailing newline):
//   GET /                 {"endpoints": [...]}
//   GET /health           {"ok": true}
//   GET /report           target.report()
//   GET /metrics          target.metrics(), Prometheus text format 0.0.4 (text/plain; version=0.0.4)
//   GET /upstreams        target.upstreams(): every route's upstreams and whether each is up
//   GET /summary          target.summary(): requests, status classes, p50/p99 per route and variant
//   GET /exchanges        target.exchanges(limit): the latest exchanges, newest first
//   GET /scenario         target.scenario()
//   PUT /scenario         replace the running scenario with the body; PATCH /scenario merges the body into
//                         it (RFC 7386). 200 {"ok": true, "scenario": ...}, or 400 {"error", "problems": [...]}
//                         with the same path-naming messages as `rproxy validate`: nothing changed then.
//   GET /stages           [{"name", "type"}, ...]
//   GET|PUT|POST|DELETE /stages/<name>[/<rest>]  target.call(name, {method, "/<rest>" or "", body})
// Stage names may contain '/' ("default/fault"), so <name> is the longest listed stage name that the path
// starts with, followed by the end of the path or '/'. Errors are {"error": "..."}: 403 for a peer that is
// not loopback (defense in depth), 404 for an unknown path or stage, 405 for a wrong method, 413 for a
// request body over 1 MiB, 500 when a target callback throws.
//
// Shutdown caveat (httplib 0.11.4): stop() closes the listener at once but waits for connection threads,
// which notice only between keep-alive rounds; the short keep-alive timeout bounds that wait to about
// two seconds for an idle keep-alive client.
class AdminServer {
 public:
  // Validates only; nothing is bound until start(), so a bad address fails before anything else starts.
  // address.host must be loopback (see is_loopback_host); port 0 picks a free port.
  // Throws std::invalid_argument naming the address when it is not loopback.
  AdminServer(const ListenAddress& address, AdminTarget target);
  ~AdminServer();  // calls stop()
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // start binds and returns once the server accepts connections. Throws std::runtime_error naming the
  // address when it cannot bind (port in use: the socket is SO_REUSEADDR only, so a second server on the
  // same port fails instead of silently sharing it), std::logic_error when called twice.
  void start();
  // port is the bound port (the chosen one when the address had port 0); 0 before start().
  std::uint16_t port() const;
  // url is "http://127.0.0.1:PORT" ("http://[::1]:PORT" for IPv6); "localhost" is bound as 127.0.0.1 so
  // the URL names the exact address that listens.
  std::string url() const;
  // stop closes the listener, then waits for in-flight calls to finish. Idempotent; safe before start().
  void stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// is_loopback_host is declared in rproxy/scenario.hpp (the scenario checks the admin address with it).

}  // namespace rproxy
