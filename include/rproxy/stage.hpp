// Stage contract. A stage looks at an Exchange and returns a Decision; the engine carries the decision
// out. Stages never block, sleep or touch sockets, so every stage is unit-testable with a built Exchange
// and deterministic for a given seed.
//
//   client ─► listener ─► parser ─► router ─► stages.on_request (in order) ─► upstream
//   client ◄─ stages.on_response (reverse order) ◄──────────────────────────── upstream
//
// Adding a stage: one file pair in lib/stages/, one line in lib/stages/builtin.cpp, one unit test file,
// one example in scenarios/.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "rproxy/http.hpp"

namespace rproxy {

struct Scenario;  // scenario.hpp
struct Route;
class Stage;

// LocalResponse is a response a stage produces itself (abort, replay hit, CORS preflight, 404).
struct LocalResponse {
  int status = 200;
  Headers headers;  // Content-Length and Transfer-Encoding are set by the engine
  std::string body;
  // A large body is streamed from a file instead (bounded memory): body is then ignored.
  std::string body_file;
  std::uint64_t body_file_size = 0;    // bytes sent from the file ...
  std::uint64_t body_file_offset = 0;  // ... starting here (a byte range)
  // Send with Transfer-Encoding: chunked (HTTP/1.1 clients), split at these sizes (one chunk when empty).
  bool chunked = false;
  std::vector<std::uint64_t> chunk_sizes;
  // Pacing (recorded timing): chunk k is sent no earlier than chunk_at_ms[k] after the head.
  std::vector<std::uint64_t> chunk_at_ms;
};

// ExchangeTee receives copies of body bytes as they stream through the engine (recording). Called on the
// exchange's engine thread; must not block for long.
class ExchangeTee {
 public:
  virtual ~ExchangeTee() = default;
  virtual void request_body(std::string_view piece) = 0;
  // response_head is the upstream's head as received, before any header rule or stage touched it.
  virtual void response_head(const ResponseHead& head) = 0;
  virtual void response_body(std::string_view piece) = 0;
};

// Outcome is how an exchange ended; the engine fills it in just before on_complete.
struct Outcome {
  int status = 0;            // status sent to the client; 0 when none was (reset, client gone)
  std::string error;         // X-Rproxy-Error cause when rproxy produced the response or cut it short
  double duration_ms = 0;    // from the end of the request head to the end of the response
  std::uint64_t bytes_in = 0;   // request body bytes
  std::uint64_t bytes_out = 0;  // response body bytes
};

// Exchange is one request/response pair travelling through the pipeline.
struct Exchange {
  std::uint64_t id = 0;          // per-run ordinal, starting at 1
  std::string client_ip;          // peer address, no port
  std::string scheme = "http";    // of the listener
  RequestHead request;
  std::optional<ResponseHead> response;  // set once an upstream or a stage answered
  std::string route;              // name of the matched route
  std::string upstream;           // URL text of the chosen upstream, once chosen
  std::string upstream_name;      // its name (routes[].upstreams[].name), "" when unnamed
  std::string variant;            // set by a split stage; any stage may match on it
  std::uint64_t connection = 0;          // per-run ordinal of the client connection, starting at 1
  std::uint64_t connection_request = 0;  // ordinal of this request on its connection, starting at 1
  std::map<std::string, std::string> tags;  // free-form notes stages leave for others and for the log
  // A stage's private per-exchange state (from on_request to on_complete), keyed by the stage itself.
  std::map<const Stage*, std::shared_ptr<void>> stage_state;
  Outcome outcome;                // valid in on_complete only
  // The request body, read before the request stages when one of them needs it (Stage::needs_request_body):
  // all of it when it fits kBufferedBodyCap, else only its size and digest (request_body_complete false).
  bool request_body_buffered = false;
  std::string request_body;
  bool request_body_complete = true;
  std::uint64_t request_body_size = 0;
  std::string request_body_sha256;  // hex
  // Added by stages in on_request to receive body bytes as they stream (see ExchangeTee); every tee gets
  // every byte, so a recording and a cache can watch the same exchange. A stage that needs its tee back
  // in on_complete keeps it in stage_state too.
  std::vector<std::shared_ptr<ExchangeTee>> tees;
};

inline constexpr std::uint64_t kBufferedBodyCap = 8 * 1024 * 1024;

// CapturedResponse is a response as the engine saw it, kept for comparison (shadow mode): the head, the
// first bytes of the body and a hash of all of it, so bodies of any size compare in bounded memory.
struct CapturedResponse {
  int status = 0;                 // 0 when there was no response (see error)
  Headers headers;
  std::string body;               // the first bytes of the body, at most the capture cap
  std::uint64_t body_size = 0;    // total body bytes seen
  bool body_complete = true;      // false when body_size exceeded the cap (body then holds a prefix)
  std::uint64_t body_hash = 0;    // FNV-1a 64 of the whole body
  std::string error;              // non-empty when the exchange failed: "connect refused", "timeout", ...
  double duration_ms = 0;
};

// ShadowObserver receives the outcome of a shadowed exchange: the primary's response (which the client
// got) and the shadow's. Called on an engine thread after both finished; must not block.
class ShadowObserver {
 public:
  virtual ~ShadowObserver() = default;
  virtual void on_shadow(const Exchange& exchange, const CapturedResponse& primary,
                         const CapturedResponse& shadow) = 0;
  // on_shadow_skipped: the copy was not sent (queue full, request body over the cap, primary failed).
  virtual void on_shadow_skipped(const Exchange& exchange, const std::string& reason) = 0;
};

// ShadowRequest asks the engine to send a copy of the request to another upstream of the route once the
// primary exchange is done. The request body is teed into a buffer of at most max_body bytes; a larger
// body cancels the copy (reported as skipped) rather than buffering without bound.
struct ShadowRequest {
  std::string upstream;                       // name or URL of an upstream of the route
  ShadowObserver* observer = nullptr;         // owned by the stage, which outlives every exchange
  std::uint64_t max_body = 1024 * 1024;       // request body tee cap
  std::uint64_t capture = 1024 * 1024;        // response bytes kept for comparison (the rest is hashed)
  std::chrono::milliseconds timeout{10000};   // whole shadow exchange
  std::vector<Header> headers;                // set on the copy (e.g. which variant it is for)
};

// Decision is what a stage wants done. Continue is the default.
struct Decision {
  enum class Kind {
    Continue,  // go on with the next stage
    Respond,   // answer with `response` now; the upstream is not contacted; response stages still run
    Reset,     // abort the client connection with a TCP RST
    Close,     // close the client connection gracefully (FIN) without answering: an "empty reply"
    Hang,      // answer nothing; close (FIN) after hang_for, or when the client gives up (hang_for 0)
  } kind = Kind::Continue;
  std::chrono::milliseconds hang_for{0};           // Hang

  std::optional<LocalResponse> response;           // Respond
  std::chrono::milliseconds delay{0};             // wait this long before acting (any kind)
  // Pick this upstream of the route, by name (every upstream with that name is a candidate, balanced by
  // the route's policy) or by URL text. When every candidate refuses the connection, the engine fails over
  // to the route's other upstreams and Exchange::upstream_name tells which one answered.
  std::optional<std::string> upstream;
  std::uint64_t throttle_bytes_per_s = 0;          // 0 = unthrottled (response body)
  std::optional<std::uint64_t> truncate_after;     // close after this many response body bytes
  bool reset_after_truncate = false;               // ... with a TCP RST instead of a FIN
  std::uint64_t throttle_request_bytes_per_s = 0;  // 0 = unthrottled (request body towards the upstream)
  // Write the response body in pieces of slice_bytes with slice_delay between them (0 = no slicing).
  std::uint64_t slice_bytes = 0;
  std::chrono::milliseconds slice_delay{0};
  // Slow close: the connection closes after the response, and its FIN is sent this much later.
  std::chrono::milliseconds close_delay{0};
  std::optional<ShadowRequest> shadow;             // send a copy of the request elsewhere (on_request only)
  // Compress the response body with this Content-Encoding ("gzip" or "br") at this level (-1 = default) as
  // it streams (on_response only). The stage sets the headers (Content-Encoding, Vary); the engine drops
  // Content-Length and frames the body as chunked.
  std::string content_coding;
  int coding_level = -1;

  static Decision proceed() { return {}; }
  static Decision respond(LocalResponse r) {
    Decision d;
    d.kind = Kind::Respond;
    d.response = std::move(r);
    return d;
  }
};

// AdminRequest is a call on a stage's live-control API, made from the loopback-only admin endpoint
// (`/stages/<stage name><path>`). AdminReply is the stage's answer (a JSON body with a status).
struct AdminRequest {
  std::string method;  // GET, PUT, POST, DELETE
  std::string path;    // the rest after the stage name: "", "/rules", "/rules/slow-pay"
  std::string body;    // request body (JSON text for PUT and POST)
};
struct AdminReply {
  int status = 200;
  nlohmann::json body = nlohmann::json::object();
};

// ConnectionInfo describes a client connection as it is accepted, before anything was read from it.
struct ConnectionInfo {
  std::uint64_t id = 0;  // per-run ordinal, starting at 1 (Exchange::connection)
  std::string client_ip;
};

// Stage is implemented once per feature. Settings are parsed in the factory and immutable afterwards;
// the same Stage object serves every connection on every thread, so on_* must be thread-safe (keep
// per-request state in the Exchange).
class Stage {
 public:
  virtual ~Stage() = default;
  // on_request runs before the upstream is contacted.
  virtual Decision on_request(Exchange&) { return Decision::proceed(); }
  // on_connect runs when a client connection is accepted, before its first byte is read, for every stage
  // of the scenario (route stages too: no route is known yet). Reset refuses the connection with an RST,
  // Close closes it, Hang holds it; delay delays reading from it (slow open). Other fields are ignored.
  virtual Decision on_connect(const ConnectionInfo&) { return Decision::proceed(); }
  // on_response runs after the response head is known (from an upstream or a Respond decision).
  // It may edit exchange.response headers and status; Respond replaces the response.
  virtual Decision on_response(Exchange&) { return Decision::proceed(); }
  // on_complete runs once the exchange is finished (logged), for stages whose on_request ran; the
  // Exchange's outcome is filled in. For statistics and record-like stages.
  virtual void on_complete(const Exchange&) {}
  // needs_request_body: read the whole request body before on_request (into Exchange::request_body), for
  // stages that decide on it (replay matching). Costs buffering, so only those stages say yes.
  virtual bool needs_request_body() const { return false; }
  // exit_code: non-zero asks the process to exit with it after a stop (a strict replay with misses).
  virtual int exit_code() const { return 0; }
  // on_start runs once when the server starts serving, on_stop once after it stopped (every exchange
  // done). Side effects (creating files, threads) belong here, not in the factory: validation builds
  // stages too. Both may throw std::runtime_error (on_start: the server does not start).
  virtual void on_start() {}
  virtual void on_stop() {}
  // report returns what the stage observed so far as JSON (null when it keeps nothing): written to the
  // scenario's report file on exit. Must be thread-safe (called while exchanges run).
  virtual nlohmann::json report() const { return nullptr; }
  // summary returns the same as a few human-readable lines (empty when nothing to say), for the exit
  // summary and the live view on a terminal.
  virtual std::string summary() const { return {}; }
  // admin handles a live-control call (see AdminRequest); nullopt when the stage has no admin API. Runs on
  // an admin thread while exchanges run: must be thread-safe and must never wait on traffic.
  virtual std::optional<AdminReply> admin(const AdminRequest&) { return std::nullopt; }
};

// StageContext is where a stage sits: the scenario (its seed, its routes) and the route for a route stage.
// Factories use it for checks that need more than the params (for example that the upstream names a split
// stage refers to exist on its route) and for the seed.
struct StageContext {
  const Scenario& scenario;
  const Route* route = nullptr;  // nullptr for a scenario-wide stage
};

// StageFactory builds a stage from its params, appending "path: message" problems for bad params; returns
// nullptr when there were any.
using StageFactory = std::function<std::unique_ptr<Stage>(const nlohmann::json& params, const std::string& path,
                                                           const StageContext& context,
                                                           std::vector<std::string>& problems)>;

struct StageInfo {
  std::string type;
  std::string summary;
  StageFactory factory;
  // answers_locally: the stage can answer every request itself (replay), so a route using it may have
  // no upstreams.
  bool answers_locally = false;
};

// StageRegistry maps stage type names to factories. Built explicitly (register_builtin_stages), no globals.
class StageRegistry {
 public:
  void add(StageInfo info);
  const StageInfo* find(const std::string& type) const;
  const std::vector<StageInfo>& all() const { return stages_; }

 private:
  std::vector<StageInfo> stages_;
};

void register_builtin_stages(StageRegistry& registry);
// builtin_stage_registry returns a registry with every built-in stage (a fresh immutable object).
const StageRegistry& builtin_stage_registry();

}  // namespace rproxy
