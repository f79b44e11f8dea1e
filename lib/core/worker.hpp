// Worker: one event loop on one thread, with what its connections share (deadline wheel, upstream pool).
// ServerShared: what every worker shares (runtime, access log, counters), all thread-safe.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_set>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>

#include "core/access_log.hpp"
#include "core/deadline.hpp"
#include "core/metrics.hpp"
#include "core/runtime.hpp"
#include "core/upstream_pool.hpp"

namespace rproxy {

class ClientConnection;

struct ServerShared {
  // The running configuration, replaced whole by a reload. A connection picks up a new one at its next
  // request (generation tells it cheaply), so an exchange always finishes under the one it started with.
  std::shared_ptr<const Runtime> runtime() const {
    std::lock_guard lock(runtime_mutex);
    return current_runtime;
  }
  void set_runtime(std::shared_ptr<const Runtime> rt) {
    {
      std::lock_guard lock(runtime_mutex);
      current_runtime = std::move(rt);
    }
    generation.fetch_add(1, std::memory_order_release);
  }
  std::atomic<std::uint64_t> generation{0};
  mutable std::mutex runtime_mutex;
  std::shared_ptr<const Runtime> current_runtime;
  std::unique_ptr<AccessLogWriter> access_log;
  std::atomic<bool> draining{false};
  std::atomic<std::uint64_t> next_exchange_id{1};
  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> refused{0};
  std::atomic<std::uint64_t> active{0};
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> upstream_errors{0};
};

struct Worker {
  explicit Worker(ServerShared& s)
      : ctx_owner(std::make_unique<asio::io_context>(1)), ctx(*ctx_owner), shared(s), wheel(ctx.get_executor()) {}
  // The loop is destroyed first: destroying it destroys suspended connection coroutines, whose
  // destructors still use the members below.
  // Sockets and timers must be destroyed while their io_context still exists.
  ~Worker() {
    pool.clear();
    wheel.release();
    ctx_owner.reset();
  }
  std::unique_ptr<asio::io_context> ctx_owner;
  asio::io_context& ctx;
  ServerShared& shared;
  DeadlineWheel wheel;
  UpstreamPool pool;
  MetricsShard metrics;  // this worker's exchanges (readers lock it briefly)
  // Scratch read space shared by the worker's connections (one thread, so one read at a time).
  static constexpr std::size_t kScratchSize = 64 * 1024;
  std::unique_ptr<char[]> scratch{new char[kScratchSize]};
  // Live connections, touched only on this worker's thread; used to close idle ones when draining.
  std::unordered_set<ClientConnection*> connections;
  // Shadow copies in flight on this loop (see ShadowClient); bounded so a slow shadow cannot pile up.
  // Atomic because the drain thread waits for it to reach 0.
  std::atomic<int> shadows_in_flight{0};
  std::thread thread;
};

}  // namespace rproxy
