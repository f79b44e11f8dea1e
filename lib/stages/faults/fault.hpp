// Fault is one kind of breakage (in the spirit of toxiproxy's toxics): abort, delay, bandwidth, truncate,
// headers, reset, drop, blackhole, slow_close, slice, refuse. A fault only turns its parameters (and, for
// random parameters, deterministic draws) into engine decisions; when and to what it applies is the rule's
// business (fault_rules.hpp). One file per fault type; parse_fault (registry.cpp) maps "type" to a parser.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "rproxy/stage.hpp"
#include "stages/params.hpp"

namespace rproxy::stages {

// unit_draw is the reproducible random number behind every fault decision: uniform in [0, 1), a pure
// function of the seed, the rule, the request's stable key ("route#ordinal" or "conn#id") and the index of
// the draw for that request (0 = whether the rule fires, 1.. = the fault's own parameters). Never a shared
// stream consumed in arrival order, so concurrency cannot change who gets which fault.
double unit_draw(std::uint64_t seed, std::string_view rule, std::string_view key, std::uint64_t index);

// Draws gives a fault the draws of one (rule, request) pair.
struct Draws {
  std::uint64_t seed = 0;
  std::string_view rule;
  std::string_view key;
  double operator()(std::uint64_t index) const { return unit_draw(seed, rule, key, index); }
};

class Fault {
 public:
  virtual ~Fault() = default;
  virtual std::string type() const = 0;
  // to_json renders the fault as it was given (with defaults filled in): {"type": ..., params...}.
  virtual nlohmann::json to_json() const = 0;
  // terminal: the fault ends the exchange without an upstream answer (abort, reset, drop, blackhole, refuse);
  // once one fired, later rules are not evaluated for that request.
  virtual bool terminal() const { return false; }
  // at_connect: the fault can act on a connection before any request was read (refuse, reset, drop,
  // blackhole); it then applies through on_connect when its rule's unit is the connection.
  virtual bool at_connect() const { return false; }
  // only_at_connect: the fault means nothing for a single request (refuse).
  virtual bool only_at_connect() const { return false; }
  // on_request adds the fault to the request's decision and returns the parameters it actually applied
  // (the journal's "params", e.g. {"delay_ms": 213}); rule names the rule (abort bodies mention it).
  virtual nlohmann::json on_request(Exchange& exchange, Decision& decision, const Draws& draws,
                                    const std::string& rule) const = 0;
  // on_response applies the response-side part, with what on_request returned (response delays, header
  // rewrites). Most faults have none.
  virtual void on_response(Exchange&, Decision&, const nlohmann::json& /*applied*/) const {}
  // on_connect applies the fault to a new connection (at_connect faults only).
  virtual nlohmann::json on_connect(Decision&, const Draws&) const { return {}; }
};

// parse_fault reads {"type": "...", ...}; problems are prefixed with path. nullptr on any problem.
std::unique_ptr<Fault> parse_fault(const nlohmann::json& v, const std::string& path, ParamReader& reader);
// fault_types lists every type parse_fault knows, for messages and docs.
std::vector<std::string> fault_types();

// One parser per fault type (each in its own file). params is the fault object; the parser checks its
// own keys ("type" is always allowed).
std::unique_ptr<Fault> parse_abort_fault(const nlohmann::json& v, const std::string& path, ParamReader& r);
std::unique_ptr<Fault> parse_delay_fault(const nlohmann::json& v, const std::string& path, ParamReader& r);
std::unique_ptr<Fault> parse_bandwidth_fault(const nlohmann::json& v, const std::string& path,
                                             ParamReader& r);
std::unique_ptr<Fault> parse_truncate_fault(const nlohmann::json& v, const std::string& path, ParamReader& r);
std::unique_ptr<Fault> parse_headers_fault(const nlohmann::json& v, const std::string& path, ParamReader& r);
std::unique_ptr<Fault> parse_reset_fault(const nlohmann::json& v, const std::string& path, ParamReader& r);
std::unique_ptr<Fault> parse_drop_fault(const nlohmann::json& v, const std::string& path, ParamReader& r);
std::unique_ptr<Fault> parse_blackhole_fault(const nlohmann::json& v, const std::string& path,
                                             ParamReader& r);
std::unique_ptr<Fault> parse_slow_close_fault(const nlohmann::json& v, const std::string& path,
                                              ParamReader& r);
std::unique_ptr<Fault> parse_slice_fault(const nlohmann::json& v, const std::string& path, ParamReader& r);
std::unique_ptr<Fault> parse_refuse_fault(const nlohmann::json& v, const std::string& path, ParamReader& r);

// parse_rate reads a byte rate: "100KB/s", "1MiB/s", "2048" (bytes per second); message on error.
std::optional<std::string> parse_rate(const std::string& text, std::uint64_t& bytes_per_s);

}  // namespace rproxy::stages
