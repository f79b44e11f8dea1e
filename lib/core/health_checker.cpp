#include "core/health_checker.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include "core/access_log.hpp"
#include "core/runtime.hpp"
#include "core/shadow_client.hpp"
#include "core/upstream_health.hpp"

namespace rproxy {

namespace {

struct ProbeJob {
  std::shared_ptr<const Runtime> runtime;  // keeps the route and its UpstreamHealth alive
  const RouteRuntime* route = nullptr;
  std::size_t index = 0;
  const std::atomic<bool>* stop = nullptr;
  TlsTarget tls;
  std::string head;
};

// Owns job (a raw pointer: g++ 12 miscompiles non-trivial coroutine arguments passed by value).
asio::awaitable<void> probe_loop(ProbeJob* job) {
  std::unique_ptr<ProbeJob> owner(job);
  const auto& hc = *job->route->spec->health_check;
  const auto& url = job->route->spec->upstreams[job->index].url;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  const std::string no_body;
  const std::string method = "GET";
  auto stopped = [job] { return job->stop->load(std::memory_order_relaxed) || job->runtime->retired.load(); };
  while (!stopped()) {
    CapturedResponse out;
    co_await exchange_once(url, job->tls, job->head, no_body, method, 0, hc.timeout, out);
    bool passed = out.error.empty() && out.status >= hc.expect_min && out.status <= hc.expect_max;
    std::string detail = !out.error.empty() ? "failed: " + out.error
                                            : "answered " + std::to_string(out.status) +
                                                  (passed ? ""
                                                          : " (expected " + std::to_string(hc.expect_min) +
                                                                "-" + std::to_string(hc.expect_max) + ")");
    auto line = job->route->health->record_probe(job->index, passed, detail);
    if (!line.empty()) log_line(line);
    if (stopped()) break;
    timer.expires_after(hc.interval);
    co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }
}

}  // namespace

void start_health_checks(asio::any_io_executor executor, const std::shared_ptr<const Runtime>& rt,
                         const std::atomic<bool>& stop) {
  for (const auto& route : rt->routes) {
    const auto& spec = *route.spec;
    if (!spec.health_check) continue;
    for (std::size_t i = 0; i < spec.upstreams.size(); ++i) {
      const auto& url = spec.upstreams[i].url;
      auto job = std::make_unique<ProbeJob>();
      job->runtime = rt;
      job->route = &route;
      job->index = i;
      job->stop = &stop;
      if (url.scheme == "https") {
        job->tls.context = route.upstream_tls;
        job->tls.server_name = spec.upstream_tls.server_name;
        job->tls.verify = !spec.upstream_tls.insecure;
      }
      job->head = "GET " + spec.health_check->path + " HTTP/1.1\r\nHost: " + url.authority() +
                  "\r\nUser-Agent: rproxy-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n";
      asio::co_spawn(executor, probe_loop(job.release()), asio::detached);
    }
  }
}

}  // namespace rproxy
