#include "core/shadow_client.hpp"

#include <asio/connect.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include "core/access_log.hpp"
#include "core/runtime.hpp"
#include "core/stream.hpp"
#include "rproxy/http_parser.hpp"

namespace rproxy {

namespace {

using asio::ip::tcp;
constexpr auto use_nothrow = asio::experimental::as_tuple(asio::use_awaitable);

// Timer state outlives the coroutine frame if the timer fires late, so it is shared.
struct Watchdog {
  explicit Watchdog(const asio::any_io_executor& ex) : stream(tcp::socket(ex)), timer(ex) {}
  Stream stream;
  asio::steady_timer timer;
  bool expired = false;
};

// Reads the response into `out`; returns "" or what went wrong.
asio::awaitable<std::string> read_response(Watchdog& w, const std::string& method, std::uint64_t cap,
                                           CapturedResponse& out) {
  std::string buf;
  std::array<char, 16 * 1024> chunk;
  auto read_some = [&]() -> asio::awaitable<std::size_t> {
    auto [ec, n] = co_await w.stream.read_some(chunk.data(), chunk.size());
    if (ec) co_return 0;
    buf.append(chunk.data(), n);
    co_return n;
  };
  ResponseParseResult rp;
  while (true) {
    rp = parse_response_head(buf);
    if (rp.status == ParseStatus::Error) co_return "bad response: " + rp.error;
    if (rp.status == ParseStatus::Complete) {
      buf.erase(0, rp.consumed);
      if (rp.head.status >= 200) break;
      continue;  // interim response
    }
    auto n = co_await read_some();
    if (n == 0) co_return w.expired ? "timeout" : "closed before a response";
  }
  out.status = rp.head.status;
  out.headers = rp.head.headers;
  std::string error;
  auto framing = response_framing(rp.head, method, &error);
  if (!error.empty()) co_return "bad response: " + error;
  BodyCapture capture{&out, cap, {}};
  out.body_complete = true;
  switch (framing.kind) {
    case BodyFraming::Kind::None:
      co_return "";
    case BodyFraming::Kind::Length: {
      std::uint64_t left = framing.length;
      while (true) {
        auto n = static_cast<std::size_t>(std::min<std::uint64_t>(left, buf.size()));
        capture.add(std::string_view(buf).substr(0, n));
        buf.erase(0, n);
        left -= n;
        if (left == 0) co_return "";
        auto got = co_await read_some();
        if (got == 0) co_return w.expired ? "timeout" : "body cut short";
      }
    }
    case BodyFraming::Kind::UntilClose:
      while (true) {
        capture.add(buf);
        buf.clear();
        auto n = co_await read_some();
        if (n == 0) co_return w.expired ? "timeout" : "";
      }
    case BodyFraming::Kind::Chunked: {
      ChunkedDecoder decoder;
      while (true) {
        std::size_t off = 0;
        while (off < buf.size()) {
          std::size_t used = 0;
          std::string_view piece;
          auto res = decoder.decode(std::string_view(buf).substr(off), used, piece);
          off += used;
          if (res == ChunkedDecoder::Result::Data) {
            capture.add(piece);
            continue;
          }
          if (res == ChunkedDecoder::Result::Done) co_return "";
          if (res == ChunkedDecoder::Result::Error) co_return "bad chunked body: " + decoder.error();
          break;
        }
        buf.erase(0, off);
        auto n = co_await read_some();
        if (n == 0) co_return w.expired ? "timeout" : "body cut short";
      }
    }
  }
  co_return "";
}

}  // namespace

asio::awaitable<void> exchange_once(const Url& url, const TlsTarget& tls, const std::string& head,
                                    const std::string& body, const std::string& method,
                                    std::uint64_t capture_cap, std::chrono::milliseconds timeout,
                                    CapturedResponse& out) {
  auto executor = co_await asio::this_coro::executor;
  auto w = std::make_shared<Watchdog>(executor);
  w->timer.expires_after(timeout);
  w->timer.async_wait([w](std::error_code ec) {
    if (ec) return;
    w->expired = true;
    std::error_code ignore;
    w->stream.socket().close(ignore);
  });
  auto t0 = std::chrono::steady_clock::now();
  std::string error;
  {
    tcp::resolver resolver(executor);
    const std::string port = std::to_string(url.port);
    auto [rec, endpoints] = co_await resolver.async_resolve(url.host, port, use_nothrow);
    if (rec) {
      error = "cannot resolve " + url.host;
    } else {
      auto [cec, ep] = co_await asio::async_connect(w->stream.socket(), endpoints, use_nothrow);
      if (cec)
        error = w->expired                               ? "timeout"
                : cec == asio::error::connection_refused ? "connect refused"
                                                         : "connect failed";
    }
  }
  if (error.empty() && tls.context) {
    w->stream.start_tls_client(tls.context.get(), tls.server_name.empty() ? url.host : tls.server_name,
                               tls.verify);
    if (!co_await w->stream.handshake()) error = w->expired ? "timeout" : w->stream.error_text();
  }
  if (error.empty()) {
    std::array<asio::const_buffer, 2> bufs{asio::buffer(head), asio::buffer(body)};
    auto wec = co_await w->stream.write(bufs.data(), body.empty() ? 1 : 2);
    if (wec) error = w->expired ? "timeout" : "request not sent";
  }
  if (error.empty()) {
    auto read_error = co_await read_response(*w, method, capture_cap, out);
    error = read_error;
  }
  w->timer.cancel();
  std::error_code ignore;
  w->stream.socket().close(ignore);
  out.error = error;
  out.duration_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

asio::awaitable<void> run_shadow(ShadowJob* raw) {
  std::unique_ptr<ShadowJob> job(raw);
  // Runs however the coroutine ends, including its frame being destroyed by a stop before the shadow
  // answered: the copy is then reported as skipped so the report's totals still add up.
  struct Release {
    ShadowJob& job;
    bool reported = false;
    ~Release() {
      if (!reported) {
        try {
          job.observer->on_shadow_skipped(job.exchange, "stopped before the shadow answered");
        } catch (...) {
        }
      }
      if (job.in_flight) job.in_flight->fetch_sub(1, std::memory_order_relaxed);
    }
  } release{*job};
  CapturedResponse shadow;
  co_await exchange_once(job->url, job->tls, job->head, job->body, job->exchange.request.method,
                         job->capture_cap, job->timeout, shadow);
  release.reported = true;
  try {
    job->observer->on_shadow(job->exchange, job->primary, shadow);
  } catch (const std::exception& e) {
    log_line(std::string("rproxy: shadow comparison failed: ") + e.what());
  } catch (...) {
    log_line("rproxy: shadow comparison failed");
  }
}

}  // namespace rproxy
