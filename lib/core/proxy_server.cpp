#include "rproxy/proxy_server.hpp"

#include <sys/resource.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ip/v6_only.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <condition_variable>
#include <mutex>
#include <system_error>

#include "core/client_connection.hpp"
#include "core/health_checker.hpp"
#include "core/worker.hpp"

namespace rproxy {

namespace {
using asio::ip::tcp;
constexpr auto use_nothrow = asio::experimental::as_tuple(asio::use_awaitable);

// A proxy holds two descriptors per connection; the default soft limit of 1024 would cap it near 500.
void raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

constexpr std::string_view kOverloaded =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nX-Rproxy-Error: max_conns\r\n"
    "Connection: close\r\nContent-Length: 50\r\n\r\n503 Service Unavailable: connection limit reached\n";
static_assert(kOverloaded.size() - kOverloaded.find("\r\n\r\n") - 4 == 50);
}  // namespace

namespace {
// Every stage with something to report, named as in logs: "name" for scenario-wide stages, "route/name"
// for a route's own.
template <typename Fn>
void each_stage(const Runtime& rt, Fn&& fn) {
  for (std::size_t i = 0; i < rt.stages.size(); ++i) fn(rt.scenario.stages[i].name, *rt.stages[i]);
  for (std::size_t r = 0; r < rt.routes.size(); ++r)
    for (std::size_t i = 0; i < rt.routes[r].stages.size(); ++i)
      fn(rt.scenario.routes[r].name + "/" + rt.scenario.routes[r].stages[i].name, *rt.routes[r].stages[i]);
}

// Stages are stopped once, after every exchange that used them is done: when the server stops, or when a
// reload replaced their runtime and its last user let go of it.
void stop_stages_once(const Runtime& rt) {
  if (rt.stages_stopped.exchange(true)) return;
  each_stage(rt, [](const std::string& name, Stage& stage) {
    try {
      stage.on_stop();
    } catch (const std::exception& e) {
      log_line("rproxy: stage " + name + " failed to stop cleanly: " + e.what());
    }
  });
}

std::shared_ptr<const Runtime> stop_stages_on_release(std::shared_ptr<const Runtime> rt) {
  const Runtime* raw = rt.get();
  return std::shared_ptr<const Runtime>(raw, [keep = std::move(rt)](const Runtime* r) mutable {
    if (r->stages_started.load()) stop_stages_once(*r);
    keep.reset();
  });
}
}  // namespace

struct ProxyServer::Impl {
  ServerShared shared;
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  std::vector<ListenerInfo> listener_info;  // parallel to acceptors
  std::vector<std::uint16_t> ports;
  std::size_t next_worker = 0;
  std::mutex mutex;
  std::condition_variable cv;
  bool started = false;
  bool stopping = false;
  bool stopped = false;
  std::thread drain_thread;
  std::mutex reload_mutex;

  Worker& pick_worker() {
    auto& w = *workers[next_worker];
    next_worker = (next_worker + 1) % workers.size();
    return w;
  }

  asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, const ListenerInfo& info) {
    const auto max_conns = shared.runtime()->scenario.limits.max_conns;
    while (acceptor.is_open()) {
      auto& w = pick_worker();
      auto [ec, sock] = co_await acceptor.async_accept(w.ctx, use_nothrow);
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
        // Out of descriptors or similar: back off briefly instead of spinning.
        asio::steady_timer t(acceptor.get_executor(), std::chrono::milliseconds(50));
        co_await t.async_wait(use_nothrow);
        continue;
      }
      auto conn_id = shared.accepted.fetch_add(1, std::memory_order_relaxed) + 1;
      if (shared.active.load(std::memory_order_relaxed) >= max_conns) {
        // Refuse cleanly: a short 503 (the socket buffer takes it without blocking), then close.
        shared.refused.fetch_add(1, std::memory_order_relaxed);
        std::error_code wec;
        sock.non_blocking(true, wec);
        // A TLS client could not read a plain answer; it sees the connection close.
        if (!info.tls) sock.write_some(asio::buffer(kOverloaded.data(), kOverloaded.size()), wec);
        sock.shutdown(tcp::socket::shutdown_send, wec);
        sock.close(wec);
        continue;
      }
      shared.active.fetch_add(1, std::memory_order_relaxed);
      asio::post(w.ctx, [&w, &info, conn_id, s = std::move(sock)]() mutable {
        auto conn = std::make_shared<ClientConnection>(w, std::move(s), info, conn_id);
        asio::co_spawn(w.ctx, conn->run(), asio::detached);
      });
    }
  }
};

ProxyServer::ProxyServer(Scenario scenario) : impl_(std::make_unique<Impl>()) {
  impl_->shared.set_runtime(stop_stages_on_release(build_runtime(std::move(scenario))));
  const auto& s = impl_->shared.runtime()->scenario;
  impl_->shared.access_log = std::make_unique<AccessLogWriter>(s.access_log.path, s.access_log.format);
  unsigned n = s.workers ? s.workers : std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < n; ++i) impl_->workers.push_back(std::make_unique<Worker>(impl_->shared));
}

ProxyServer::~ProxyServer() {
  stop();
  wait();
}


void ProxyServer::start() {
  raise_fd_limit();
  const auto& s = impl_->shared.runtime()->scenario;
  auto& w0 = *impl_->workers[0];
  auto listeners = s.listeners;
  if (s.tls.redirect_http) listeners.push_back(*s.tls.redirect_http);  // last, as ports() documents
  for (const auto& l : listeners) {
    std::error_code ec;
    auto addr = asio::ip::make_address(l.host == "localhost" ? "127.0.0.1" : l.host, ec);
    if (ec) throw std::system_error(ec, "listen address " + l.to_string());
    tcp::endpoint ep(addr, l.port);
    auto acc = std::make_unique<tcp::acceptor>(w0.ctx);
    acc->open(ep.protocol());
    // SO_REUSEADDR lets a restarted rproxy bind past TIME_WAIT; SO_REUSEPORT is never set, so a second
    // process on the same port fails loudly instead of silently sharing it.
    acc->set_option(tcp::acceptor::reuse_address(true));
    if (addr.is_v6()) acc->set_option(asio::ip::v6_only(true));
    acc->bind(ep, ec);
    if (ec) throw std::system_error(ec, "cannot listen on " + l.to_string());
    acc->listen(asio::socket_base::max_listen_connections);  // SOMAXCONN (4096), well over 511
    impl_->ports.push_back(acc->local_endpoint().port());
    impl_->acceptors.push_back(std::move(acc));
    impl_->listener_info.push_back(ListenerInfo{l.tls, l.host, impl_->ports.back(), 0});
  }
  if (s.tls.redirect_http) {
    for (const auto& info : impl_->listener_info)
      if (info.tls) {
        impl_->listener_info.back().redirect_to_port = info.port;
        break;
      }
  }
  // Before any connection is accepted: a stage that cannot start (an unwritable recording) stops the start.
  {
    auto rt = impl_->shared.runtime();
    each_stage(*rt, [](const std::string&, Stage& stage) { stage.on_start(); });
    rt->stages_started = true;
  }
  start_health_checks(w0.ctx.get_executor(), impl_->shared.runtime(), impl_->shared.draining);
  for (std::size_t i = 0; i < impl_->acceptors.size(); ++i)
    asio::co_spawn(w0.ctx, impl_->accept_loop(*impl_->acceptors[i], impl_->listener_info[i]), asio::detached);
  for (auto& w : impl_->workers) {
    w->wheel.start();
    w->thread = std::thread([wp = w.get()] {
      auto guard = asio::make_work_guard(wp->ctx);
      wp->ctx.run();
    });
  }
  std::lock_guard lock(impl_->mutex);
  impl_->started = true;
}

std::vector<std::uint16_t> ProxyServer::ports() const { return impl_->ports; }

void ProxyServer::stop() {
  std::lock_guard lock(impl_->mutex);
  if (!impl_->started || impl_->stopping) return;
  auto* impl = impl_.get();
  impl->shared.draining = true;
  asio::post(impl->workers[0]->ctx, [impl] {
    for (auto& a : impl->acceptors) {
      std::error_code ec;
      a->close(ec);
    }
  });
  auto drain = impl->shared.runtime()->scenario.limits.drain_timeout;
  // Created under the lock and announced through `stopping`, so wait() on another thread never sees a
  // half-assigned std::thread.
  impl->drain_thread = std::thread([impl, drain] {
    auto until = SteadyClock::now() + drain;
    // Close idle keep-alive connections now and again (a connection may go idle while draining).
    auto shadows = [impl] {
      int n = 0;
      for (auto& w : impl->workers) n += w->shadows_in_flight.load();
      return n;
    };
    // Shadow copies in flight finish too (each is bounded by its own timeout), so their comparisons
    // reach the report.
    while (SteadyClock::now() < until && (impl->shared.active.load() > 0 || shadows() > 0)) {
      for (auto& w : impl->workers)
        asio::post(w->ctx, [wp = w.get()] {
          for (auto* c : wp->connections) c->close_if_idle();
        });
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    for (auto& w : impl->workers)
      asio::post(w->ctx, [wp = w.get()] {
        for (auto* c : wp->connections) c->force_close();
        wp->pool.clear();
        wp->wheel.stop();
      });
    // Give the coroutines a moment to unwind after their sockets closed, then stop the loops.
    auto hard = SteadyClock::now() + std::chrono::seconds(2);
    while (impl->shared.active.load() > 0 && SteadyClock::now() < hard)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    // Let the posted acceptor close and pool clear run before the loops stop.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    for (auto& w : impl->workers) w->ctx.stop();
  });
  impl->stopping = true;
  impl->cv.notify_all();
}

void ProxyServer::wait() {
  {
    std::unique_lock lock(impl_->mutex);
    if (!impl_->started || impl_->stopped) return;
    impl_->cv.wait(lock, [&] { return impl_->stopping; });
  }
  if (impl_->drain_thread.joinable()) impl_->drain_thread.join();
  for (auto& w : impl_->workers)
    if (w->thread.joinable()) w->thread.join();
  std::lock_guard lock(impl_->mutex);
  if (!impl_->stopped) stop_stages_once(*impl_->shared.runtime());
  impl_->stopped = true;
}

int ProxyServer::exit_code() const {
  int code = 0;
  each_stage(*impl_->shared.runtime(), [&](const std::string&, const Stage& stage) {
    if (code == 0) code = stage.exit_code();
  });
  return code;
}

ServerStats ProxyServer::stats() const {
  const auto& s = impl_->shared;
  return {s.accepted.load(), s.refused.load(), s.active.load(), s.requests.load(), s.upstream_errors.load()};
}

Scenario ProxyServer::scenario() const { return impl_->shared.runtime()->scenario; }

std::vector<std::string> ProxyServer::notices() const { return impl_->shared.runtime()->notices; }

std::vector<std::string> ProxyServer::reload(Scenario next) {
  std::lock_guard lock(impl_->reload_mutex);
  auto current = impl_->shared.runtime();
  const auto& cur = current->scenario;
  std::vector<std::string> problems;
  // What the listeners, threads and log were built from cannot change under them.
  auto fixed = [&](bool same, const char* key) {
    if (!same) problems.push_back(std::string(key) + ": cannot change while rproxy runs (restart it for that)");
  };
  fixed(next.listeners == cur.listeners, "listeners");
  fixed(next.workers == cur.workers, "workers");
  fixed(next.tls == cur.tls, "tls");
  fixed(next.admin == cur.admin, "admin");
  fixed(next.access_log == cur.access_log, "access_log");
  fixed(next.limits.max_conns == cur.limits.max_conns, "limits.max_conns");
  if (!problems.empty()) return problems;
  std::shared_ptr<const Runtime> built;
  try {
    built = build_runtime(std::move(next));
  } catch (const ConfigError& e) {
    return e.problems();
  }
  try {
    each_stage(*built, [](const std::string&, Stage& stage) { stage.on_start(); });
  } catch (const std::exception& e) {
    built->stages_stopped = true;  // some started: let on_stop run for them on release
    built->stages_started = true;
    return {std::string("stages: ") + e.what()};
  }
  built->stages_started = true;
  auto rt = stop_stages_on_release(std::move(built));
  if (impl_->started && !impl_->workers.empty())
    start_health_checks(impl_->workers[0]->ctx.get_executor(), rt, impl_->shared.draining);
  impl_->shared.set_runtime(std::move(rt));
  current->retired = true;  // its health checks end; its stages stop when its last exchange is done
  return {};
}


nlohmann::json ProxyServer::report() const {
  auto st = stats();
  nlohmann::json stages = nlohmann::json::object();
  each_stage(*impl_->shared.runtime(), [&](const std::string& name, const Stage& stage) {
    auto r = stage.report();
    if (!r.is_null()) stages[name] = std::move(r);
  });
  return {{"rproxy_report", 1},
          {"version", RPROXY_VERSION},
          {"seed", scenario().seed},
          {"requests", st.requests},
          {"connections", st.connections_accepted},
          {"upstream_errors", st.upstream_errors},
          {"stages", stages}};
}

std::vector<std::pair<std::string, std::string>> ProxyServer::stage_names() const {
  std::vector<std::pair<std::string, std::string>> out;
  auto current = impl_->shared.runtime();
  const auto& rt = *current;
  for (const auto& st : rt.scenario.stages) out.emplace_back(st.name, st.type);
  for (const auto& r : rt.scenario.routes)
    for (const auto& st : r.stages) out.emplace_back(r.name + "/" + st.name, st.type);
  return out;
}

AdminReply ProxyServer::admin(const std::string& stage_name, const AdminRequest& request) {
  std::optional<AdminReply> reply;
  bool found = false;
  each_stage(*impl_->shared.runtime(), [&](const std::string& name, Stage& stage) {
    if (found || name != stage_name) return;
    found = true;
    reply = stage.admin(request);
    if (!reply) reply = AdminReply{405, {{"error", "stage " + name + " has no live-control API"}}};
  });
  if (!found) return AdminReply{404, {{"error", "no stage named " + stage_name}}};
  return *reply;
}

namespace {
std::vector<MetricsShard*> shards_of(const std::vector<std::unique_ptr<Worker>>& workers) {
  std::vector<MetricsShard*> out;
  for (const auto& w : workers) out.push_back(&w->metrics);
  return out;
}
}  // namespace

std::string ProxyServer::metrics() const {
  auto st = stats();
  ServerGauges g;
  g.connections_active = st.connections_active;
  g.connections_accepted = st.connections_accepted;
  g.connections_refused = st.connections_refused;
  g.upstream_errors = st.upstream_errors;
  const auto now = SteadyClock::now();
  for (const auto& r : impl_->shared.runtime()->routes)
    for (std::size_t i = 0; i < r.spec->upstreams.size(); ++i)
      g.upstreams.push_back({r.spec->name, r.spec->upstreams[i].url.text, r.spec->upstreams[i].backup, r.health->up(i, now)});
  return MetricsView(shards_of(impl_->workers)).prometheus(g);
}

nlohmann::json ProxyServer::summary_json() const {
  return rproxy::summary_json(MetricsView(shards_of(impl_->workers)).summary_rows());
}

nlohmann::json ProxyServer::recent_exchanges(std::size_t limit) const {
  auto out = nlohmann::json::array();
  for (const auto& r : MetricsView(shards_of(impl_->workers)).recent(limit)) {
    nlohmann::json j = {{"id", r.id},         {"start_ms", r.start_ms}, {"client", r.client_ip},
                        {"method", r.method}, {"target", r.target},     {"status", r.status},
                        {"duration_ms", r.duration_ms}, {"bytes_out", r.bytes_out}, {"route", r.route},
                        {"upstream", r.upstream}};
    if (!r.variant.empty()) j["variant"] = r.variant;
    if (!r.fault.empty()) j["fault"] = r.fault;
    if (!r.error.empty()) j["error"] = r.error;
    out.push_back(std::move(j));
  }
  return out;
}

nlohmann::json ProxyServer::upstreams() const {
  auto out = nlohmann::json::object();
  const auto now = SteadyClock::now();
  for (const auto& r : impl_->shared.runtime()->routes) out[r.spec->name] = r.health->snapshot(now);
  return out;
}

std::string ProxyServer::summary() const {
  std::string out = summary_table(MetricsView(shards_of(impl_->workers)).summary_rows());
  each_stage(*impl_->shared.runtime(), [&](const std::string&, const Stage& stage) { out += stage.summary(); });
  return out;
}

}  // namespace rproxy
