// ShadowClient sends the copy of a request that a stage asked for (Decision::shadow) to the shadow upstream
// once the primary exchange is done, captures the answer in bounded memory and hands both responses to the
// stage's observer. It runs detached on the worker's event loop: the client already has its response, so a
// slow or dead shadow never delays it; a per-worker cap on copies in flight drops the excess instead of
// queueing without bound.
#pragma once

#include <asio/awaitable.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "core/hash.hpp"
#include "rproxy/scenario.hpp"
#include "rproxy/stage.hpp"
#include "tls/tls_context.hpp"

namespace rproxy {

struct Runtime;

// TlsTarget says how to reach an https:// URL: the client context (verification settings) and the name
// sent as SNI and verified. An empty context means plain TCP.
struct TlsTarget {
  tls::Context context;
  std::string server_name;
  bool verify = true;
};

// ShadowJob is everything one shadow exchange needs; it owns copies, never references into a connection.
struct ShadowJob {
  std::shared_ptr<const Runtime> runtime;  // keeps the observing stage alive
  Exchange exchange;                       // as the primary saw it (request after stages, its response)
  CapturedResponse primary;
  Url url;           // the shadow upstream
  TlsTarget tls;     // for an https:// shadow upstream
  std::string head;  // serialized request head for the shadow upstream
  std::string body;  // the whole request body (teed, at most the cap)
  std::uint64_t capture_cap = 0;
  std::chrono::milliseconds timeout{10000};
  ShadowObserver* observer = nullptr;
  std::atomic<int>* in_flight = nullptr;  // the worker's counter, decremented when the job ends
};

// exchange_once sends one serialized request (head + body) to url on a fresh connection and captures the
// response into out (bounded by capture_cap, hashed whole); failures land in out.error. Used for shadow
// copies and for `rproxy replay --against`. All arguments are references the caller keeps alive.
asio::awaitable<void> exchange_once(const Url& url, const TlsTarget& tls, const std::string& head,
                                    const std::string& body, const std::string& method,
                                    std::uint64_t capture_cap, std::chrono::milliseconds timeout,
                                    CapturedResponse& out);

// run_shadow takes ownership of job (a raw pointer so nothing non-trivial is passed by value into the
// coroutine, which g++ 12 miscompiles).
asio::awaitable<void> run_shadow(ShadowJob* job);

// BodyCapture tees body bytes into a CapturedResponse: the first `cap` bytes kept, all of them hashed.
struct BodyCapture {
  CapturedResponse* out = nullptr;
  std::uint64_t cap = 0;
  Fnv1a64 hash;
  void add(std::string_view piece) {
    if (!out) return;
    hash.update(piece);
    out->body_size += piece.size();
    if (out->body.size() < cap)
      out->body.append(piece.substr(
          0, static_cast<std::size_t>(std::min<std::uint64_t>(piece.size(), cap - out->body.size()))));
    out->body_complete = out->body_size <= cap;
    out->body_hash = hash.value();
  }
};

}  // namespace rproxy
