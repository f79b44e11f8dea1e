#include "stages/fault.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <set>

#include "core/access_log.hpp"
#include "rproxy/http_parser.hpp"

namespace rproxy::stages {

using json = nlohmann::json;

struct FaultExchangeState {
  struct Fired {
    std::shared_ptr<const Fault> fault;
    std::string rule;
    json applied;
  };
  std::vector<Fired> fired;
  bool holds_slot = false;
};

namespace {

constexpr const char* kClientAbort = "X-Rproxy-Fault-Abort";
constexpr const char* kClientDelay = "X-Rproxy-Fault-Delay";
constexpr const char* kClientBandwidth = "X-Rproxy-Fault-Bandwidth";

std::string unit_name(FaultUnit u) {
  return u == FaultUnit::Connection ? "connection" : "request";
}

// The journal's draw and threshold: rounded so the text is short and the same on every platform.
double rounded(double v) {
  return std::round(v * 1e9) / 1e9;
}

}  // namespace

FaultStage::FaultStage(FaultSettings settings, std::vector<FaultRule> rules, std::vector<std::string> routes)
    : settings_(std::move(settings)), start_(std::chrono::steady_clock::now()) {
  route_ordinals_.emplace("", std::make_unique<std::atomic<std::uint64_t>>(0));
  for (const auto& r : routes) route_ordinals_.emplace(r, std::make_unique<std::atomic<std::uint64_t>>(0));
  install(std::move(rules), 1);
}

std::unique_ptr<Stage> FaultStage::create(const json& params, const std::string& path,
                                          const StageContext& context, std::vector<std::string>& problems) {
  ParamReader r{problems};
  std::size_t before = problems.size();
  if (!params.is_object()) {
    r.fail(path, "expected an object, got " + json_describe(params));
    return nullptr;
  }
  r.known_keys(params, path,
               {"seed", "journal", "mark", "client_faults", "max_active", "key_header", "phases", "rules"});
  FaultSettings s;
  s.seed = context.scenario.seed;
  if (params.contains("seed"))
    s.seed = r.integer(params["seed"], json_path_key(path, "seed"), 0, ~0ULL).value_or(s.seed);
  if (params.contains("journal")) {
    s.journal = r.string(params["journal"], json_path_key(path, "journal")).value_or("");
    if (s.journal.empty()) r.fail(json_path_key(path, "journal"), "expected a file name");
  }
  if (params.contains("key_header")) {
    s.key_header = r.string(params["key_header"], json_path_key(path, "key_header")).value_or("");
    if (!is_token(s.key_header))
      r.fail(json_path_key(path, "key_header"), "expected a header name, e.g. X-Request-Id");
  }
  if (params.contains("mark"))
    s.mark = r.boolean(params["mark"], json_path_key(path, "mark")).value_or(false);
  if (params.contains("client_faults"))
    s.client_faults =
        r.boolean(params["client_faults"], json_path_key(path, "client_faults")).value_or(false);
  if (params.contains("max_active"))
    s.max_active =
        r.integer(params["max_active"], json_path_key(path, "max_active"), 0, 1u << 30).value_or(0);
  if (params.contains("phases"))
    s.phases = parse_fault_phases(params["phases"], json_path_key(path, "phases"), r);
  std::vector<FaultRule> rules;
  if (params.contains("rules")) {
    s.rules = params["rules"];
    if (auto parsed = parse_fault_rules(params["rules"], json_path_key(path, "rules"), s.phases, r))
      rules = std::move(*parsed);
  }
  std::vector<std::string> routes;
  for (const auto& route : context.scenario.routes) routes.push_back(route.name);
  for (std::size_t i = 0; i < rules.size(); ++i) {
    const auto& m = rules[i].match.route;
    if (m && std::find(routes.begin(), routes.end(), *m) == routes.end())
      r.fail(json_path_key(json_path_key(json_path_index(json_path_key(path, "rules"), i), "match"), "route"),
             "no route named \"" + *m + "\"");
  }
  if (problems.size() != before) return nullptr;
  return std::make_unique<FaultStage>(std::move(s), std::move(rules), std::move(routes));
}

void FaultStage::install(std::vector<FaultRule> rules, std::uint64_t version) {
  auto set = std::make_shared<RuleSet>();
  set->version = version;
  std::lock_guard lock(mutex_);
  for (auto& rule : rules) {
    auto& c = counters_[rule.name];
    if (!c) c = std::make_shared<FaultRuleCounters>();
    c->type = rule.fault->type();
    rule.counters = c;
  }
  set->rules = std::move(rules);
  rules_ = std::move(set);
}

std::shared_ptr<const FaultStage::RuleSet> FaultStage::snapshot() const {
  std::lock_guard lock(mutex_);
  return rules_;
}

Millis FaultStage::since_start() const {
  return std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - start_);
}

bool FaultStage::take_active_slot() {
  if (settings_.max_active == 0) {
    active_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  auto cur = active_.load(std::memory_order_relaxed);
  while (cur < settings_.max_active)
    if (active_.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed)) return true;
  return false;
}

void FaultStage::on_start() {
  start_ = std::chrono::steady_clock::now();
  std::string where;
  if (!settings_.journal.empty()) {
    journal_.open(settings_.journal);
    journal_.write({{"rproxy_fault_journal", 1}, {"seed", settings_.seed}});
    where = ", journal " + settings_.journal;
  }
  log_line("rproxy: fault seed " + std::to_string(settings_.seed) + where);
}

Decision FaultStage::on_connect(const ConnectionInfo& connection) {
  auto set = snapshot();
  Decision d;
  const std::string key = "conn#" + std::to_string(connection.id);
  auto now = since_start();
  for (const auto& rule : set->rules) {
    if (!rule.at_connect() || !rule.in_window(now)) continue;
    // For the connection unit, n is the connection's id (its accept ordinal), as at request time.
    rule.counters->matched.fetch_add(1, std::memory_order_relaxed);
    auto n = connection.id;
    Draws draws{settings_.seed, rule.name, key};
    double u = draws(0);
    bool fire = u < rule.probability && rule.count_allows(n);
    json line = {{"request", key}, {"rule", rule.name},  {"unit", "connection"},
                 {"n", n},         {"draw", rounded(u)}, {"threshold", rule.probability},
                 {"fired", fire}};
    if (!rule.phase.empty()) line["phase"] = rule.phase;
    if (fire) {
      rule.counters->fired.fetch_add(1, std::memory_order_relaxed);
      connections_faulted_.fetch_add(1, std::memory_order_relaxed);
      line["fault"] = rule.fault->type();
      line["params"] = rule.fault->on_connect(d, draws);
    }
    journal_.write(line);
    if (fire && rule.fault->terminal()) break;
  }
  return d;
}

Decision FaultStage::on_request(Exchange& ex) {
  auto set = snapshot();
  // Allocated only once something fires (or client faults may), and journal lines built only when there is
  // a journal: a rule that is evaluated but does not fire should cost a hash, not a dozen allocations.
  std::shared_ptr<FaultExchangeState> state;
  auto state_of = [&]() -> FaultExchangeState& {
    if (!state) state = std::make_shared<FaultExchangeState>();
    return *state;
  };
  const bool journaling = journal_.is_open();
  Decision d;
  requests_.fetch_add(1, std::memory_order_relaxed);
  auto it = route_ordinals_.find(ex.route);
  if (it == route_ordinals_.end()) it = route_ordinals_.find("");
  // The route ordinal and every rule's match count are taken under one lock, so the n-th request on a route
  // always sees the same counts (count triggers stay a function of the key under concurrency). Journal lines
  // are written after the lock is released.
  std::vector<json> lines;
  std::unique_lock decide(decide_mutex_);
  const auto ordinal = it->second->fetch_add(1, std::memory_order_relaxed) + 1;
  // With key_header, a request that carries it is keyed by its value: clients that tag their requests get
  // the same faults whatever order concurrent requests arrive in (ordinals only promise that when every
  // request on a route is alike).
  std::string key = (ex.route.empty() ? std::string("-") : ex.route) + "#";
  auto tagged = settings_.key_header.empty() ? std::nullopt : ex.request.headers.get(settings_.key_header);
  key += tagged ? std::string(*tagged) : std::to_string(ordinal);
  std::string conn_key;
  auto now = since_start();
  bool ended = false;
  for (const auto& rule : set->rules) {
    if (ended) break;
    if (rule.at_connect() || !rule.in_window(now) || !rule.match.matches(ex)) continue;
    bool per_conn = rule.per == FaultUnit::Connection;
    auto n = per_conn ? ex.connection : rule.counters->matched.fetch_add(1, std::memory_order_relaxed) + 1;
    if (per_conn) {
      rule.counters->matched.fetch_add(1, std::memory_order_relaxed);
      if (conn_key.empty()) conn_key = "conn#" + std::to_string(ex.connection);
    }
    Draws draws{settings_.seed, rule.name, per_conn ? std::string_view(conn_key) : std::string_view(key)};
    double u = draws(0);
    bool fire = u < rule.probability && rule.count_allows(n);
    json line;
    if (journaling) {
      line = {{"request", key}, {"rule", rule.name},  {"unit", unit_name(rule.per)},
              {"n", n},         {"draw", rounded(u)}, {"threshold", rule.probability},
              {"fired", fire}};
      if (per_conn) line["connection"] = ex.connection;
      if (!rule.phase.empty()) line["phase"] = rule.phase;
    }
    if (fire && !state_of().holds_slot) {
      if (take_active_slot()) {
        state->holds_slot = true;
        ex.stage_state[this] = state;  // from here on_complete releases the slot, whatever happens next
      } else {
        fire = false;
        if (journaling) {
          line["fired"] = false;
          line["capped"] = true;
        }
        rule.counters->capped.fetch_add(1, std::memory_order_relaxed);
      }
    }
    if (fire) {
      rule.counters->fired.fetch_add(1, std::memory_order_relaxed);
      // The draws are keyed on the request even for the connection unit: parameters (a delay) vary per
      // request while the choice holds for the whole connection.
      Draws param_draws{settings_.seed, rule.name, key};
      auto applied = rule.fault->on_request(ex, d, param_draws, rule.name);
      if (journaling) {
        line["fault"] = rule.fault->type();
        line["params"] = applied;
      }
      state->fired.push_back({rule.fault, rule.name, std::move(applied)});
      ended = rule.fault->terminal();
    }
    if (journaling) lines.push_back(std::move(line));
  }
  decide.unlock();
  for (const auto& line : lines) journal_.write(line);
  if (settings_.client_faults && !ended) {
    state_of();
    client_header_faults(ex, d, state, key);
  }
  if (!state) return d;
  if (!state->fired.empty()) {
    faulted_.fetch_add(1, std::memory_order_relaxed);
    std::string names;
    for (const auto& f : state->fired) names += (names.empty() ? "" : ",") + f.rule;
    ex.tags["fault"] = names;
  }
  if (!state->fired.empty() || state->holds_slot) ex.stage_state[this] = state;
  return d;
}

// Envoy-style faults asked for by the client itself (off unless client_faults is set): abort, delay and
// bandwidth from request headers, parsed by the same fault parsers as the rules.
void FaultStage::client_header_faults(Exchange& ex, Decision& d,
                                      const std::shared_ptr<FaultExchangeState>& state_ptr,
                                      const std::string& key) {
  auto& st = *state_ptr;
  struct Ask {
    const char* header;
    const char* type;
    const char* param;
  };
  // Delay and bandwidth first: an abort ends the list, and Envoy also delays an aborted request.
  static constexpr Ask kAsks[] = {{kClientDelay, "delay", "delay"},
                                  {kClientBandwidth, "bandwidth", "rate"},
                                  {kClientAbort, "abort", "status"}};
  for (const auto& ask : kAsks) {
    auto v = ex.request.headers.get(ask.header);
    if (!v) continue;
    std::string text(*v);
    ex.request.headers.remove(ask.header);
    json spec = {{"type", ask.type}};
    if (std::string(ask.type) == "abort") {
      int status = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), status);
      spec[ask.param] = ec == std::errc() && end == text.data() + text.size() ? status : 0;
    } else if (std::string(ask.type) == "delay" && !text.empty() &&
               text.find_first_not_of("0123456789") == std::string::npos) {
      spec[ask.param] = text + "ms";  // Envoy sends plain milliseconds
    } else {
      spec[ask.param] = text;
    }
    std::vector<std::string> problems;
    ParamReader r{problems};
    auto fault = std::shared_ptr<const Fault>(parse_fault(spec, ask.header, r));
    json line = {{"request", key},
                 {"rule", "client-header"},
                 {"unit", "request"},
                 {"header", ask.header},
                 {"value", text}};
    if (!fault) {
      client_counters_->matched.fetch_add(1, std::memory_order_relaxed);
      line["fired"] = false;
      line["error"] = problems.empty() ? "invalid" : problems.front();
      journal_.write(line);
      continue;
    }
    if (!st.holds_slot && !take_active_slot()) {
      client_counters_->matched.fetch_add(1, std::memory_order_relaxed);
      client_counters_->capped.fetch_add(1, std::memory_order_relaxed);
      line["fired"] = false;
      line["capped"] = true;
      journal_.write(line);
      continue;
    }
    st.holds_slot = true;
    ex.stage_state[this] = state_ptr;
    client_counters_->matched.fetch_add(1, std::memory_order_relaxed);
    client_counters_->fired.fetch_add(1, std::memory_order_relaxed);
    Draws draws{settings_.seed, "client-header", key};
    auto applied = fault->on_request(ex, d, draws, "client-header");
    line["fired"] = true;
    line["fault"] = fault->type();
    line["params"] = applied;
    journal_.write(line);
    st.fired.push_back({fault, "client-header", std::move(applied)});
    if (fault->terminal()) break;
  }
}

Decision FaultStage::on_response(Exchange& ex) {
  auto it = ex.stage_state.find(this);
  if (it == ex.stage_state.end()) return Decision::proceed();
  auto& st = *static_cast<FaultExchangeState*>(it->second.get());
  Decision d;
  for (const auto& f : st.fired) f.fault->on_response(ex, d, f.applied);
  if (settings_.mark && ex.response && !st.fired.empty()) {
    std::string names;
    for (const auto& f : st.fired) names += (names.empty() ? "" : ", ") + f.rule;
    ex.response->headers.set(kFaultMarkHeader, names);
  }
  return d;
}

void FaultStage::on_complete(const Exchange& ex) {
  auto it = ex.stage_state.find(this);
  if (it == ex.stage_state.end()) return;
  if (static_cast<FaultExchangeState*>(it->second.get())->holds_slot)
    active_.fetch_sub(1, std::memory_order_relaxed);
}

json FaultStage::rules_json(const RuleSet& set) const {
  json rules = json::array();
  for (const auto& rule : set.rules) {
    json g = rule.given;
    g["name"] = rule.name;
    rules.push_back(std::move(g));
  }
  return rules;
}

json FaultStage::report() const {
  std::shared_ptr<const RuleSet> set;
  std::map<std::string, std::shared_ptr<FaultRuleCounters>> counters;
  std::map<std::string, std::string> types;
  {
    // One lock for the rules and the counters, so a rule added meanwhile is not taken for a removed one.
    std::lock_guard lock(mutex_);
    set = rules_;
    counters = counters_;
    for (const auto& [name, c] : counters_) types[name] = c->type;
  }
  json rules = json::array();
  json by_fault = json::object();
  std::uint64_t fired_total = 0;
  std::set<std::string> current;
  for (const auto& rule : set->rules) {
    current.insert(rule.name);
    auto fired = rule.counters->fired.load();
    fired_total += fired;
    by_fault[rule.fault->type()] = by_fault.value(rule.fault->type(), std::uint64_t{0}) + fired;
    rules.push_back({{"name", rule.name},
                     {"fault", rule.fault->type()},
                     {"per", unit_name(rule.per)},
                     {"probability", rule.probability},
                     {"matched", rule.counters->matched.load()},
                     {"fired", fired},
                     {"capped", rule.counters->capped.load()}});
  }
  // Rules removed at runtime keep their counts, so the totals still add up to what the journal holds.
  for (const auto& [name, c] : counters) {
    if (current.count(name) || c->matched.load() == 0) continue;
    auto fired = c->fired.load();
    fired_total += fired;
    by_fault[types[name]] = by_fault.value(types[name], std::uint64_t{0}) + fired;
    rules.push_back({{"name", name},
                     {"fault", types[name]},
                     {"removed", true},
                     {"matched", c->matched.load()},
                     {"fired", fired},
                     {"capped", c->capped.load()}});
  }
  if (client_counters_->matched.load() > 0) {
    auto fired = client_counters_->fired.load();
    fired_total += fired;
    by_fault["client-header"] = fired;
    rules.push_back({{"name", "client-header"},
                     {"fault", "client-header"},
                     {"per", "request"},
                     {"matched", client_counters_->matched.load()},
                     {"fired", fired},
                     {"capped", client_counters_->capped.load()}});
  }
  json out = {{"seed", settings_.seed},
              {"rules_version", set->version},
              {"requests", requests_.load()},
              {"faulted_requests", faulted_.load()},
              {"faulted_connections", connections_faulted_.load()},
              {"faults_fired", fired_total},
              {"by_fault", by_fault},
              {"active", active_.load()},
              {"max_active", settings_.max_active},
              {"rules", rules}};
  if (!settings_.journal.empty()) {
    out["journal"] = settings_.journal;
    out["journal_lines"] = journal_.lines();
  }
  return out;
}

std::string FaultStage::summary() const {
  auto r = report();
  std::string out = "fault: seed " + std::to_string(r["seed"].get<std::uint64_t>()) + ", " +
                    std::to_string(r["requests"].get<std::uint64_t>()) + " requests, " +
                    std::to_string(r["faulted_requests"].get<std::uint64_t>()) + " faulted";
  if (r["faulted_connections"].get<std::uint64_t>() > 0)
    out += ", " + std::to_string(r["faulted_connections"].get<std::uint64_t>()) + " connections faulted";
  if (r.contains("journal")) out += " (journal " + r["journal"].get<std::string>() + ")";
  out += "\n";
  for (const auto& rule : r["rules"]) {
    std::string how = rule.contains("per") ? ", per " + rule["per"].get<std::string>() : ", removed";
    out += "  " + rule["name"].get<std::string>() + " (" + rule["fault"].get<std::string>() + how +
           "): " + std::to_string(rule["matched"].get<std::uint64_t>()) + " matched, " +
           std::to_string(rule["fired"].get<std::uint64_t>()) + " fired";
    if (rule["capped"].get<std::uint64_t>() > 0)
      out += ", " + std::to_string(rule["capped"].get<std::uint64_t>()) + " capped by max_active";
    out += "\n";
  }
  return out;
}

std::vector<std::string> FaultStage::replace_rules(const json& rules) {
  std::lock_guard lock(admin_mutex_);
  return replace_rules_locked(rules);
}

std::vector<std::string> FaultStage::replace_rules_locked(const json& rules) {
  std::vector<std::string> problems;
  ParamReader r{problems};
  auto parsed = parse_fault_rules(rules, "rules", settings_.phases, r);
  if (!parsed) return problems;
  std::uint64_t version = snapshot()->version + 1;
  // Journaled before the swap, so every decision under the new rules comes after this line.
  journal_.write({{"admin", "rules"}, {"version", version}, {"rules", rules}});
  install(std::move(*parsed), version);
  log_line("rproxy: fault rules replaced (version " + std::to_string(version) + ", " +
           std::to_string(rules.size()) + " rules)");
  return {};
}

std::optional<AdminReply> FaultStage::admin(const AdminRequest& req) {
  std::lock_guard admin_lock(admin_mutex_);
  auto set = snapshot();
  auto listing = [&](const RuleSet& s) { return json{{"version", s.version}, {"rules", rules_json(s)}}; };
  auto parse_body = [&](json& out) -> std::optional<AdminReply> {
    try {
      out = json::parse(req.body);
      return std::nullopt;
    } catch (const json::parse_error& e) {
      return AdminReply{400, {{"error", std::string("the body is not JSON: ") + e.what()}}};
    }
  };
  auto apply = [&](const json& rules) -> AdminReply {
    auto problems = replace_rules_locked(rules);
    if (!problems.empty()) return AdminReply{400, {{"error", "invalid rules"}, {"problems", problems}}};
    return AdminReply{200, listing(*snapshot())};
  };
  if (req.path == "/report" && req.method == "GET") return AdminReply{200, report()};
  if (req.path.empty() || req.path == "/" || req.path == "/rules") {
    if (req.method == "GET") return AdminReply{200, listing(*set)};
    if (req.path == "/rules" && req.method == "PUT") {
      json body;
      if (auto bad = parse_body(body)) return *bad;
      if (body.is_object() && body.contains("rules")) body = body["rules"];
      return apply(body);
    }
    if (req.path == "/rules" && req.method == "POST") {
      json body;
      if (auto bad = parse_body(body)) return *bad;
      {
        std::vector<std::string> problems;
        ParamReader r{problems};
        if (!parse_fault_rule(body, "rule", settings_.phases, r))
          return AdminReply{400, {{"error", "invalid rule"}, {"problems", problems}}};
      }
      auto rules = rules_json(*set);
      if (body.is_object() && body.contains("name"))
        for (const auto& existing : rules)
          if (existing["name"] == body["name"])
            return AdminReply{
                409, {{"error", "a rule named " + body["name"].dump() + " exists; PUT replaces all"}}};
      if (body.is_object() && !body.contains("name")) {
        auto taken = [&](const std::string& n) {
          for (const auto& existing : rules)
            if (existing["name"] == n) return true;
          return false;
        };
        std::size_t k = rules.size() + 1;
        while (taken("rule-" + std::to_string(k))) ++k;
        body["name"] = "rule-" + std::to_string(k);
      }
      rules.push_back(body);
      return apply(rules);
    }
    return AdminReply{405, {{"error", "use GET, PUT or POST on /rules"}}};
  }
  if (req.path.rfind("/rules/", 0) == 0) {
    auto name = req.path.substr(7);
    auto rules = rules_json(*set);
    json kept = json::array();
    json found;
    for (const auto& r : rules) (r["name"] == name ? found : kept.emplace_back()) = r;
    if (req.method == "PUT") {  // replaces the rule, or adds it when there is none of that name
      json body;
      if (auto bad = parse_body(body)) return *bad;
      if (body.is_object()) body["name"] = name;
      {
        std::vector<std::string> problems;
        ParamReader r{problems};
        if (!parse_fault_rule(body, "rule", settings_.phases, r))
          return AdminReply{400, {{"error", "invalid rule"}, {"problems", problems}}};
      }
      bool replaced = false;
      for (auto& r : rules)
        if (r["name"] == name) {
          r = body;
          replaced = true;
        }
      if (!replaced) rules.push_back(body);
      return apply(rules);
    }
    if (found.is_null()) return AdminReply{404, {{"error", "no rule named " + name}}};
    if (req.method == "GET") return AdminReply{200, found};
    if (req.method == "DELETE") return apply(kept);
    return AdminReply{405, {{"error", "use GET, PUT or DELETE on /rules/<name>"}}};
  }
  return AdminReply{404, {{"error", "unknown path " + req.path + " (try /rules or /report)"}}};
}

}  // namespace rproxy::stages
