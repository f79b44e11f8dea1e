// FaultStage injects reproducible HTTP and connection faults chosen per request (or per connection) by
// rules (fault_rules.hpp), and journals every decision.
//
//   {"type": "fault", "params": {
//      "seed": 42,                      // default: the scenario's seed
//      "journal": "faults.jsonl",       // one JSON line per decision, written as it is made
//      "mark": false,                   // X-Rproxy-Fault: <rules> on faulted responses
//      "client_faults": false,          // honour X-Rproxy-Fault-Abort/-Delay/-Bandwidth request headers
//      "max_active": 0,                 // cap on exchanges with a fault in progress (0 = none)
//      "key_header": "X-Request-Id",    // key tagged requests by this header instead of their ordinal
//      "phases": [{"name": "baseline", "duration": "10s"}, {"name": "faults", "duration": "30s"},
//                 {"name": "recovery"}],
//      "rules": [ ... ]}}
//
// Reproducible: a request's key is "<route>#<ordinal of the request on its route>" (or "<route>#<value of
// key_header>" when the request carries it; "conn#<id>" for the connection unit) and every draw is
// unit_draw(seed, rule, key, index). With ordinals, the journal sorted by key is the same on every run with
// the same seed whenever the requests on a route are alike (any concurrency); when concurrent clients send
// different requests, which request gets which ordinal depends on arrival, and key_header restores it.
//
// Live control (admin endpoint, /stages/<name>/rules): GET lists, PUT replaces all, POST adds one, DELETE
// /rules/<name> removes one. A change swaps an immutable rule snapshot: new requests see it at once,
// requests in flight finish under the rules they started with, and nothing waits on traffic.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "rproxy/stage.hpp"
#include "stages/fault_rules.hpp"
#include "store/journal.hpp"

namespace rproxy::stages {

inline constexpr const char* kFaultMarkHeader = "X-Rproxy-Fault";

struct FaultExchangeState;  // what one exchange fired (fault.cpp)

struct FaultSettings {
  std::uint64_t seed = 1;
  std::string journal;
  bool mark = false;
  bool client_faults = false;
  std::uint64_t max_active = 0;
  std::string key_header;  // "" = key requests by their ordinal on the route
  std::vector<FaultPhase> phases;
  nlohmann::json rules = nlohmann::json::array();
};

class FaultStage : public Stage {
 public:
  FaultStage(FaultSettings settings, std::vector<FaultRule> rules, std::vector<std::string> routes);

  static std::unique_ptr<Stage> create(const nlohmann::json& params, const std::string& path,
                                       const StageContext& context, std::vector<std::string>& problems);

  Decision on_connect(const ConnectionInfo& connection) override;
  Decision on_request(Exchange& exchange) override;
  Decision on_response(Exchange& exchange) override;
  void on_complete(const Exchange& exchange) override;
  void on_start() override;
  nlohmann::json report() const override;
  std::string summary() const override;
  std::optional<AdminReply> admin(const AdminRequest& request) override;

  // replace_rules parses and swaps in a new rule list (the admin PUT); problems on failure, nothing
  // changed then.
  std::vector<std::string> replace_rules(const nlohmann::json& rules);
  // started_at lets tests move the stage's clock (phases and windows) without sleeping.
  void set_start(std::chrono::steady_clock::time_point t) { start_ = t; }

 private:
  struct RuleSet {
    std::uint64_t version = 1;
    std::vector<FaultRule> rules;
  };
  std::shared_ptr<const RuleSet> snapshot() const;
  std::vector<std::string> replace_rules_locked(const nlohmann::json& rules);
  void install(std::vector<FaultRule> rules, std::uint64_t version);
  Millis since_start() const;
  bool take_active_slot();
  void client_header_faults(Exchange& ex, Decision& d, const std::shared_ptr<FaultExchangeState>& state,
                            const std::string& key);
  nlohmann::json rules_json(const RuleSet& set) const;

  FaultSettings settings_;
  std::chrono::steady_clock::time_point start_;
  mutable std::mutex mutex_;  // guards rules_ and counters_ (held only to copy or swap pointers)
  std::shared_ptr<const RuleSet> rules_;
  std::map<std::string, std::shared_ptr<FaultRuleCounters>> counters_;
  std::shared_ptr<FaultRuleCounters> client_counters_ = std::make_shared<FaultRuleCounters>();
  // Serializes admin edits: each is a read-modify-install of the whole rule list.
  std::mutex admin_mutex_;
  // Ordinals per route ("" for requests that matched none); the map is fixed at construction.
  std::map<std::string, std::unique_ptr<std::atomic<std::uint64_t>>> route_ordinals_;
  std::mutex decide_mutex_;  // one request's ordinal and rule counts are taken together
  std::atomic<std::uint64_t> active_{0};
  std::atomic<std::uint64_t> requests_{0};
  std::atomic<std::uint64_t> faulted_{0};
  std::atomic<std::uint64_t> connections_faulted_{0};
  Journal journal_;
};

}  // namespace rproxy::stages
