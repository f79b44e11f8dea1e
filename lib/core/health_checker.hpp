// Active health checks: one probe loop per upstream of every route with a health_check, on one worker's
// event loop. A probe is a GET of the check path on a fresh connection (TLS verified like real traffic),
// passing when the status is in the expected range within the timeout. Verdicts go to the route's
// UpstreamHealth, which logs every change of state.
#pragma once

#include <asio/any_io_executor.hpp>
#include <atomic>
#include <memory>

namespace rproxy {

struct Runtime;

// start_health_checks spawns the probe loops on executor; they end when `stop` becomes true (checked after
// every probe) or when the event loop is destroyed. rt and stop must outlive the loop.
void start_health_checks(asio::any_io_executor executor, const std::shared_ptr<const Runtime>& rt,
                         const std::atomic<bool>& stop);

}  // namespace rproxy
