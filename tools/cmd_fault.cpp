// rproxy fault: turns fault flags into rules of one fault stage on the --to route. Every flag is one rule,
// named after the flag, so its draws stay the same when other flags are added or removed.
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>

#include "cli.hpp"
#include "common_flags.hpp"
#include "run_scenario.hpp"
#include "stages/faults/fault.hpp"

namespace rproxy::cli {

namespace {

struct FaultFlags {
  std::optional<std::string> latency, abort, reset, drop, blackhole, bandwidth, truncate, slow_close, slice,
      refuse;
  std::optional<std::string> per;
  std::optional<std::string> match_path;
  std::vector<std::string> match_method;
  std::vector<std::string> match_header;
  std::optional<std::string> on_variant;
  std::optional<std::string> journal;
  std::optional<std::string> rules_file;
  std::optional<std::uint64_t> max_active;
  std::optional<std::string> key_header;
  bool mark = false;
  bool client_faults = false;
};

// Probability text: "10%" or a fraction "0.1"; appends a problem naming the flag otherwise.
std::optional<double> parse_probability(const std::string& flag, const std::string& text,
                                        std::vector<std::string>& problems) {
  const std::string expected = flag + " " + text + ": expected a probability like 10% or 0.1";
  if (text.empty()) {
    problems.push_back(expected);
    return std::nullopt;
  }
  bool percent = text.back() == '%';
  std::string number = percent ? text.substr(0, text.size() - 1) : text;
  // "1" alone is ambiguous (1% or 100%?): a fraction needs its decimal point.
  bool shaped = !number.empty() && number.size() <= 12 &&
                number.find_first_not_of("0123456789.") == std::string::npos &&
                std::count(number.begin(), number.end(), '.') <= (percent ? 1 : 1) &&
                (percent || number.find('.') != std::string::npos) && number != ".";
  if (!shaped) {
    problems.push_back(expected);
    return std::nullopt;
  }
  char* end = nullptr;
  double v = std::strtod(number.c_str(), &end) / (percent ? 100.0 : 1.0);
  if (end != number.c_str() + number.size()) {
    problems.push_back(expected);
    return std::nullopt;
  }
  if (v < 0 || v > 1) {
    problems.push_back(flag + " " + text + ": a probability is from 0% to 100%");
    return std::nullopt;
  }
  return v;
}

// Splits "VALUE@P%" into value and probability (1 when there is no '@').
bool split_at(const std::string& flag, const std::string& text, std::string& value, double& probability,
              std::vector<std::string>& problems) {
  auto at = text.rfind('@');
  value = text.substr(0, at);
  probability = 1;
  if (at == std::string::npos) return true;
  auto p = parse_probability(flag, text.substr(at + 1), problems);
  if (!p) return false;
  probability = *p;
  return true;
}

// "100ms±50ms" (or "100ms+-50ms") is a uniform delay from 50ms to 150ms; "200ms" is fixed.
std::optional<nlohmann::json> parse_latency(const std::string& text, std::vector<std::string>& problems) {
  std::string base = text, jitter;
  for (const std::string sep : {"±", "+-"}) {
    auto pos = text.find(sep);
    if (pos != std::string::npos) {
      base = text.substr(0, pos);
      jitter = text.substr(pos + sep.size());
      break;
    }
  }
  Millis b{0}, j{0};
  if (auto err = parse_duration(base, b)) {
    problems.push_back("--latency " + text + ": " + *err);
    return std::nullopt;
  }
  if (jitter.empty()) return nlohmann::json(format_duration(b));
  if (auto err = parse_duration(jitter, j)) {
    problems.push_back("--latency " + text + ": " + *err);
    return std::nullopt;
  }
  if (j > b) {
    problems.push_back("--latency " + text + ": the jitter is larger than the delay");
    return std::nullopt;
  }
  return nlohmann::json{
      {"distribution", "uniform"}, {"min", format_duration(b - j)}, {"max", format_duration(b + j)}};
}

nlohmann::json build_rules(const FaultFlags& f, std::vector<std::string>& problems) {
  nlohmann::json match = nlohmann::json::object();
  if (f.match_path) match["path"] = *f.match_path;
  if (!f.match_method.empty()) match["method"] = f.match_method;
  if (f.on_variant) match["variant"] = *f.on_variant;
  for (const auto& h : f.match_header) {
    auto eq = h.find('=');
    if (eq == std::string::npos || eq == 0)
      problems.push_back("--match-header " + h + ": expected NAME=VALUE (VALUE * = present)");
    else
      match["headers"][h.substr(0, eq)] = h.substr(eq + 1);
  }
  nlohmann::json rules = nlohmann::json::array();
  auto add = [&](const char* name, double probability, nlohmann::json fault, const char* per = nullptr) {
    nlohmann::json rule = {{"name", name}, {"fault", std::move(fault)}};
    if (probability < 1) rule["probability"] = probability;
    if (per)
      rule["per"] = per;
    else if (f.per)
      rule["per"] = *f.per;
    if (!match.empty() && !per) rule["match"] = match;
    rules.push_back(std::move(rule));
  };
  std::string value;
  double p = 1;
  if (f.latency && split_at("--latency", *f.latency, value, p, problems))
    if (auto d = parse_latency(value, problems)) add("latency", p, {{"type", "delay"}, {"delay", *d}});
  if (f.abort && split_at("--abort", *f.abort, value, p, problems)) {
    bool digits = value.size() == 3 && value.find_first_not_of("0123456789") == std::string::npos;
    if (!digits)
      problems.push_back("--abort " + *f.abort + ": expected STATUS[@PROBABILITY], e.g. 503@10%");
    else
      add("abort", p, {{"type", "abort"}, {"status", std::stoi(value)}});
  }
  auto probability_only = [&](const char* flag, const std::optional<std::string>& v, const char* name,
                              const char* type, const char* per = nullptr) {
    if (!v) return;
    if (auto q = parse_probability(flag, *v, problems)) add(name, *q, {{"type", type}}, per);
  };
  probability_only("--reset", f.reset, "reset", "reset");
  probability_only("--drop", f.drop, "drop", "drop");
  probability_only("--blackhole", f.blackhole, "blackhole", "blackhole");
  probability_only("--refuse", f.refuse, "refuse", "refuse", "connection");
  if (f.bandwidth && split_at("--bandwidth", *f.bandwidth, value, p, problems)) {
    std::uint64_t rate = 0;
    if (auto err = stages::parse_rate(value, rate))
      problems.push_back("--bandwidth " + *f.bandwidth + ": " + *err);
    else
      add("bandwidth", p, {{"type", "bandwidth"}, {"rate", value}});
  }
  if (f.truncate && split_at("--truncate", *f.truncate, value, p, problems)) {
    std::uint64_t n = 0;
    if (auto err = parse_size(value, n))
      problems.push_back("--truncate " + *f.truncate + ": " + *err);
    else
      add("truncate", p, {{"type", "truncate"}, {"after", n}});
  }
  if (f.slow_close && split_at("--slow-close", *f.slow_close, value, p, problems)) {
    Millis d{0};
    if (auto err = parse_duration(value, d))
      problems.push_back("--slow-close " + *f.slow_close + ": " + *err);
    else
      add("slow_close", p, {{"type", "slow_close"}, {"delay", value}});
  }
  if (f.slice && split_at("--slice", *f.slice, value, p, problems)) {
    auto slash = value.find('/');
    std::uint64_t size = 0;
    Millis d{0};
    if (slash == std::string::npos || parse_size(value.substr(0, slash), size) ||
        parse_duration(value.substr(slash + 1), d) || size == 0)
      problems.push_back("--slice " + *f.slice + ": expected SIZE/DELAY, e.g. 64/10ms");
    else
      add("slice", p, {{"type", "slice"}, {"size", size}, {"delay", value.substr(slash + 1)}});
  }
  if (f.rules_file) {
    std::ifstream in(*f.rules_file);
    if (!in) {
      problems.push_back("--rules " + *f.rules_file + ": cannot read the file");
    } else {
      try {
        auto doc = nlohmann::json::parse(in);
        if (doc.is_object() && doc.contains("rules")) doc = doc["rules"];
        if (!doc.is_array())
          problems.push_back("--rules " + *f.rules_file +
                             ": expected an array of rules (or {\"rules\": [...]})");
        else
          for (auto& r : doc) rules.push_back(r);
      } catch (const nlohmann::json::parse_error& e) {
        problems.push_back("--rules " + *f.rules_file + ": " + e.what());
      }
    }
  }
  return rules;
}

Scenario build_fault_scenario(const CommonFlags& common, const FaultFlags& f) {
  auto s = common.build();
  std::vector<std::string> problems;
  auto rules = build_rules(f, problems);
  bool any_flag = !rules.empty() || f.journal || f.mark || f.client_faults || f.max_active || f.key_header;
  if (!problems.empty()) throw ConfigError(problems);
  if (!any_flag) {
    for (const auto& st : s.stages)
      if (st.type == "fault") return s;
    for (const auto& r : s.routes)
      for (const auto& st : r.stages)
        if (st.type == "fault") return s;
    throw ConfigError(
        {"rproxy fault: no fault given (e.g. --latency 200ms, --abort 503@10%, --reset 5%, "
         "--rules FILE, or a --scenario with a fault stage)"});
  }
  nlohmann::json params = {{"rules", rules}};
  if (f.journal) params["journal"] = *f.journal;
  if (f.mark) params["mark"] = true;
  if (f.client_faults) params["client_faults"] = true;
  if (f.max_active) params["max_active"] = *f.max_active;
  if (f.key_header) params["key_header"] = *f.key_header;
  // On the --to route, or on the scenario's only route (after its stages, so after a split stage and rules
  // can match on the variant); with several routes, scenario-wide (before every route's stages).
  Route* target = !common.to.empty() || s.routes.size() == 1 ? &s.routes.back() : nullptr;
  if (f.on_variant) {
    bool split_before = false;
    if (target)
      for (const auto& st : target->stages) split_before = split_before || st.type == "split";
    if (!split_before)
      throw ConfigError(
          {"--on-variant " + *f.on_variant +
           ": no split stage runs before the fault stage; give a --scenario with one route that "
           "has a split stage (without --to), or put a fault stage after the split stage in the "
           "scenario file"});
  }
  if (target)
    target->stages.push_back(StageSpec{"fault", "", params});
  else
    s.stages.push_back(StageSpec{"fault", "", params});
  fill_default_names(s);
  auto more = validate_scenario(s);
  if (!more.empty()) throw ConfigError(more);
  return s;
}

}  // namespace

void setup_fault(CLI::App& app, CliState& state) {
  auto common = std::make_shared<CommonFlags>();
  auto flags = std::make_shared<FaultFlags>();
  auto* sub = app.add_subcommand(
      "fault",
      "Inject reproducible HTTP and connection faults (latency, errors, resets, throttling), journaled");
  common->add_to(*sub);
  auto opt = [&](const char* name, std::optional<std::string>& into, const char* help, const char* type) {
    sub->add_option(name, into, help)->type_name(type);
  };
  opt("--latency", flags->latency, "Delay before forwarding: 200ms, 100ms±50ms (uniform), optionally @P%",
      "DUR[±DUR][@P%]");
  opt("--abort", flags->abort, "Answer with this status without contacting the upstream, e.g. 503@10%",
      "STATUS[@P%]");
  opt("--reset", flags->reset, "Reset the connection (TCP RST) for this share of requests, e.g. 5%", "P%");
  opt("--drop", flags->drop, "Close without answering (empty reply) for this share of requests", "P%");
  opt("--blackhole", flags->blackhole, "Never answer this share of requests (hold until the client gives up)",
      "P%");
  opt("--refuse", flags->refuse, "Reset this share of new connections as they are accepted", "P%");
  opt("--bandwidth", flags->bandwidth, "Limit the response body rate, e.g. 100KB/s", "RATE[@P%]");
  opt("--truncate", flags->truncate, "Cut the response body after this many bytes", "BYTES[@P%]");
  opt("--slow-close", flags->slow_close, "Close after the response, sending the FIN this much later",
      "DUR[@P%]");
  opt("--slice", flags->slice, "Write the response body in pieces of SIZE bytes, DELAY apart, e.g. 64/10ms",
      "SIZE/DELAY[@P%]");
  sub->add_option("--per", flags->per, "Unit a probability applies to: request (default) or connection [per]")
      ->check(CLI::IsMember({"request", "connection"}))
      ->type_name("UNIT")
      ->default_str("request");
  opt("--match-path", flags->match_path, "Fault only paths matching this glob, e.g. '/api/*' [match.path]",
      "GLOB");
  sub->add_option("--match-method", flags->match_method, "Fault only this method (repeatable) [match.method]")
      ->type_name("METHOD")
      ->allow_extra_args(false);
  sub->add_option("--match-header", flags->match_header,
                  "Fault only requests with this header (repeatable; VALUE * = present) [match.headers]")
      ->type_name("NAME=VALUE")
      ->allow_extra_args(false);
  opt("--on-variant", flags->on_variant,
      "Fault only requests a split stage assigned to this variant [match.variant]", "NAME");
  opt("--journal", flags->journal, "Write one JSON line per fault decision to FILE [journal]", "FILE");
  opt("--rules", flags->rules_file,
      "Add the rules in this JSON file (an array, or {\"rules\": [...]}) [rules]", "FILE");
  sub->add_option("--max-active", flags->max_active,
                  "At most N exchanges with a fault in progress [max_active]")
      ->type_name("N");
  opt("--key-header", flags->key_header,
      "Key requests that carry this header by its value instead of their arrival ordinal [key_header]",
      "NAME");
  sub->add_flag("--mark", flags->mark, "Add X-Rproxy-Fault: <rule> to faulted responses [mark]");
  sub->add_flag("--client-faults", flags->client_faults,
                "Honour X-Rproxy-Fault-Abort/-Delay/-Bandwidth request headers [client_faults]");
  sub->footer(
      "Examples:\n"
      "  rproxy fault --listen 127.0.0.1:9000 --to http://127.0.0.1:3000 --latency 200ms\n"
      "  rproxy fault --listen 127.0.0.1:9000 --to http://127.0.0.1:3000 --abort 503@10% --seed 42 --journal "
      "faults.jsonl\n"
      "  rproxy fault --listen 127.0.0.1:9000 --to http://127.0.0.1:3000 --reset 5%\n"
      "  rproxy fault --to http://127.0.0.1:3000 --latency 100ms±50ms --bandwidth 100KB/s --admin "
      "127.0.0.1:9901\n"
      "Every random choice is a function of the seed, the rule and the request's key (route and ordinal),\n"
      "so the same seed and requests give the same faults. The seed is printed at start and journaled.\n");
  sub->callback([common, flags, &state] {
    state.exit_code = print_or_run([&] { return build_fault_scenario(*common, *flags); },
                                   common->print_scenario, common->run_options());
  });
}

}  // namespace rproxy::cli
