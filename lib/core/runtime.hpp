// Runtime is a Scenario compiled for serving: router, stage objects and balancers, built once and shared
// read-only by every worker (balancers carry their own thread-safe state).
#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include "core/balancer.hpp"
#include "core/router.hpp"
#include "core/upstream_health.hpp"
#include "rproxy/http_parser.hpp"
#include "rproxy/scenario.hpp"
#include "rproxy/stage.hpp"
#include "tls/tls_context.hpp"

namespace rproxy {

struct RouteRuntime {
  const Route* spec = nullptr;
  std::vector<std::unique_ptr<Stage>> stages;
  std::unique_ptr<Balancer> balancer;
  tls::Context upstream_tls;  // set when the route has an https:// upstream
  std::unique_ptr<UpstreamHealth> health;  // mutable shared state (atomics) behind a const Runtime
};

struct Runtime {
  Scenario scenario;
  std::vector<std::unique_ptr<Stage>> stages;  // scenario-wide, run before the route's
  std::vector<RouteRuntime> routes;
  std::unique_ptr<Router> router;
  // pipelines[i + 1] is the stage list an exchange on route i runs (scenario-wide then route stages);
  // pipelines[0] is for requests that matched no route. Built once so the hot path allocates nothing.
  std::vector<std::vector<Stage*>> pipelines;
  const std::vector<Stage*>& pipeline(int route_index) const {
    return pipelines[static_cast<std::size_t>(route_index + 1)];
  }
  // all_stages: every stage instance once, scenario-wide first (Stage::on_connect runs on each).
  std::vector<Stage*> all_stages;
  ParseLimits limits;
  tls::Context server_tls;  // set when a listener is https://
  // Things the user should know at start (the local CA was created, verification is off), one line each.
  std::vector<std::string> notices;
  // Lifecycle across reloads (the runtime itself is otherwise immutable): retired ends its health checks;
  // the stages' on_start ran / on_stop ran.
  mutable std::atomic<bool> retired{false};
  mutable std::atomic<bool> stages_started{false};
  mutable std::atomic<bool> stages_stopped{false};
};

// build_runtime validates the scenario and instantiates its stages; throws ConfigError with every problem.
std::shared_ptr<const Runtime> build_runtime(Scenario scenario);

}  // namespace rproxy
