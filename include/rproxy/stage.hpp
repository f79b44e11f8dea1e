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
#include <vector>

#include <nlohmann/json.hpp>

#include "rproxy/http.hpp"

namespace rproxy {

// LocalResponse is a response a stage produces itself (abort, replay hit, CORS preflight, 404).
struct LocalResponse {
  int status = 200;
  Headers headers;
  std::string body;
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
  std::string variant;            // set by a split stage; any stage may match on it
  std::map<std::string, std::string> tags;  // free-form notes stages leave for others and for the log
};

// Decision is what a stage wants done. Continue is the default.
struct Decision {
  enum class Kind {
    Continue,  // go on with the next stage
    Respond,   // answer with `response` now; the upstream is not contacted; response stages still run
    Reset,     // abort the client connection with a TCP RST
  } kind = Kind::Continue;

  std::optional<LocalResponse> response;           // Respond
  std::chrono::milliseconds delay{0};             // wait this long before acting (any kind)
  std::optional<std::string> upstream;            // pick this upstream URL (must belong to the route)
  std::uint64_t throttle_bytes_per_s = 0;          // 0 = unthrottled (response body)
  std::optional<std::uint64_t> truncate_after;     // close after this many response body bytes

  static Decision proceed() { return {}; }
  static Decision respond(LocalResponse r) {
    Decision d;
    d.kind = Kind::Respond;
    d.response = std::move(r);
    return d;
  }
};

// Stage is implemented once per feature. Settings are parsed in the factory and immutable afterwards;
// the same Stage object serves every connection on every thread, so on_* must be thread-safe (keep
// per-request state in the Exchange).
class Stage {
 public:
  virtual ~Stage() = default;
  // on_request runs before the upstream is contacted.
  virtual Decision on_request(Exchange&) { return Decision::proceed(); }
  // on_response runs after the response head is known (from an upstream or a Respond decision).
  // It may edit exchange.response headers and status; Respond replaces the response.
  virtual Decision on_response(Exchange&) { return Decision::proceed(); }
  // on_complete runs once the exchange is finished (logged), for record-like stages.
  virtual void on_complete(const Exchange&) {}
};

// StageFactory builds a stage from its params, appending "path: message" problems for bad params.
using StageFactory = std::function<std::unique_ptr<Stage>(const nlohmann::json& params, const std::string& path,
                                                           std::vector<std::string>& problems)>;

struct StageInfo {
  std::string type;
  std::string summary;
  StageFactory factory;
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
