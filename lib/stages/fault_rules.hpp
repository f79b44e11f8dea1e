// FaultRule is one line of the fault language: which requests (or connections) it applies to, how often
// it fires, when, and which fault it injects.
//
//   {"name": "pay-503", "match": {"method": "POST", "path": "/pay*", "headers": {"X-Test": "1"},
//                                 "route": "api", "variant": "b"},
//    "per": "request",                      // or "connection": decided once per client connection
//    "probability": 0.1,                    // per unit; 1 when absent
//    "first": 5, "every": 3, "after": 100,  // count triggers over the units the rule matched
//    "window": {"from": "10s", "until": "40s"}, "phase": "faults",   // time limits (from start)
//    "fault": {"type": "abort", "status": 503}}
//
// Each random choice comes from unit_draw(seed, rule name, stable key, index), so editing or adding one
// rule never re-rolls another rule's decisions.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "rproxy/stage.hpp"
#include "stages/faults/fault.hpp"
#include "stages/glob.hpp"
#include "stages/params.hpp"

namespace rproxy::stages {

struct FaultMatch {
  std::vector<std::string> methods;  // empty = any
  std::optional<std::string> path;   // glob on the path (query ignored): '*' is any run of bytes
  std::vector<std::pair<std::string, std::string>> headers;  // name → exact value, "*" = present
  std::optional<std::string> route;
  std::optional<std::string> variant;  // set by a split stage that ran earlier
  bool empty() const { return methods.empty() && !path && headers.empty() && !route && !variant; }
  bool matches(const Exchange& ex) const;
};


// Phase is a named stretch of time from the start: baseline → faults → recovery.
struct FaultPhase {
  std::string name;
  Millis start{0};
  std::optional<Millis> end;  // none for an open-ended last phase
};

// Counters survive a rule being replaced by one of the same name (live edits keep count triggers going).
struct FaultRuleCounters {
  std::atomic<std::uint64_t> matched{0};  // units that matched and were in the window: the count-trigger n
  std::atomic<std::uint64_t> fired{0};
  std::atomic<std::uint64_t> capped{0};  // would have fired but max_active was reached
  std::string type;                      // fault type of the latest rule with the name (FaultStage::mutex_)
};

enum class FaultUnit { Request, Connection };

struct FaultRule {
  std::string name;
  FaultMatch match;
  FaultUnit per = FaultUnit::Request;
  double probability = 1.0;
  std::optional<std::uint64_t> first, every, after;
  std::optional<Millis> from, until;
  std::string phase;  // the phase the window came from, "" when none
  std::shared_ptr<const Fault> fault;
  nlohmann::json given;  // the rule as written, for GET /rules
  std::shared_ptr<FaultRuleCounters> counters;

  bool in_window(Millis since_start) const {
    return (!from || since_start >= *from) && (!until || since_start < *until);
  }
  // count_allows: the count triggers let the n-th matched unit through.
  bool count_allows(std::uint64_t n) const {
    return (!first || n <= *first) && (!every || n % *every == 0) && (!after || n > *after);
  }
  // at_connect: decided and applied when a connection is accepted.
  bool at_connect() const { return per == FaultUnit::Connection && fault->at_connect() && match.empty(); }
};

// parse_fault_phases reads [{"name": ..., "duration": "10s"}, ...] (the last may omit duration).
std::vector<FaultPhase> parse_fault_phases(const nlohmann::json& v, const std::string& path, ParamReader& r);
// parse_fault_rule reads one rule; counters are attached later. nullopt on any problem.
std::optional<FaultRule> parse_fault_rule(const nlohmann::json& v, const std::string& path,
                                          const std::vector<FaultPhase>& phases, ParamReader& r);
// parse_fault_rules reads an array of rules and checks that names are unique (a rule without a name gets
// "rule-<index+1>").
std::optional<std::vector<FaultRule>> parse_fault_rules(const nlohmann::json& v, const std::string& path,
                                                        const std::vector<FaultPhase>& phases,
                                                        ParamReader& r);

}  // namespace rproxy::stages
