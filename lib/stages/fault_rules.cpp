#include "stages/fault_rules.hpp"

#include <set>

#include "rproxy/http_parser.hpp"

namespace rproxy::stages {

bool FaultMatch::matches(const Exchange& ex) const {
  if (route && ex.route != *route) return false;
  if (variant && ex.variant != *variant) return false;
  if (!methods.empty()) {
    bool any = false;
    for (const auto& m : methods) any = any || m == ex.request.method;
    if (!any) return false;
  }
  if (path) {
    std::string_view target = ex.request.target;
    auto q = target.find('?');
    if (!glob_match(*path, target.substr(0, q))) return false;
  }
  for (const auto& [name, value] : headers) {
    auto got = ex.request.headers.get(name);
    if (!got) return false;
    if (value != "*" && *got != value) return false;
  }
  return true;
}

std::vector<FaultPhase> parse_fault_phases(const nlohmann::json& v, const std::string& path, ParamReader& r) {
  std::vector<FaultPhase> out;
  if (!v.is_array()) {
    r.fail(path, "expected an array of {\"name\": ..., \"duration\": ...}, got " + json_describe(v));
    return out;
  }
  Millis at{0};
  std::set<std::string> names;
  for (std::size_t i = 0; i < v.size(); ++i) {
    auto ip = json_path_index(path, i);
    const auto& ph = v[i];
    if (!ph.is_object()) {
      r.fail(ip, "expected an object, got " + json_describe(ph));
      continue;
    }
    r.known_keys(ph, ip, {"name", "duration"});
    FaultPhase p;
    if (auto n = ph.contains("name") ? r.string(ph["name"], json_path_key(ip, "name")) : std::nullopt)
      p.name = *n;
    if (p.name.empty()) r.fail(json_path_key(ip, "name"), "every phase needs a name");
    if (!names.insert(p.name).second) r.fail(json_path_key(ip, "name"), "\"" + p.name + "\" is listed twice");
    p.start = at;
    if (ph.contains("duration")) {
      auto d = r.duration(ph["duration"], json_path_key(ip, "duration"));
      if (d && d->count() <= 0) r.fail(json_path_key(ip, "duration"), "must be above 0");
      if (d) at += *d;
      p.end = at;
    } else if (i + 1 != v.size()) {
      r.fail(ip, "only the last phase may leave out \"duration\"");
    }
    out.push_back(p);
  }
  return out;
}

std::optional<FaultRule> parse_fault_rule(const nlohmann::json& v, const std::string& path,
                                          const std::vector<FaultPhase>& phases, ParamReader& r) {
  if (!v.is_object()) {
    r.fail(path, "expected a rule object with a \"fault\", got " + json_describe(v));
    return std::nullopt;
  }
  std::size_t before = r.problems.size();
  r.known_keys(
      v, path,
      {"name", "match", "per", "probability", "first", "every", "after", "window", "phase", "fault"});
  FaultRule rule;
  rule.given = v;
  if (v.contains("name")) {
    auto n = r.string(v["name"], json_path_key(path, "name"));
    auto plain = [](const std::string& t) {
      return !t.empty() && t.size() <= 64 &&
             t.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") ==
                 std::string::npos;
    };
    if (n && !plain(*n))
      r.fail(json_path_key(path, "name"),
             "a rule name is 1 to 64 letters, digits, '-', '_' or '.' (it appears in URLs and headers)");
    else if (n)
      rule.name = *n;
  }
  if (v.contains("match")) {
    const auto& m = v["match"];
    auto mp = json_path_key(path, "match");
    if (!m.is_object()) {
      r.fail(mp, "expected an object, got " + json_describe(m));
    } else {
      r.known_keys(m, mp, {"method", "path", "headers", "route", "variant"});
      if (m.contains("method")) {
        const auto& mm = m["method"];
        if (mm.is_string()) {
          rule.match.methods.push_back(mm.get<std::string>());
        } else if (auto list = r.strings(mm, json_path_key(mp, "method"))) {
          rule.match.methods = *list;
        }
        for (const auto& method : rule.match.methods)
          if (!is_token(method)) r.fail(json_path_key(mp, "method"), "\"" + method + "\" is not a method");
      }
      if (m.contains("path")) {
        auto p = r.string(m["path"], json_path_key(mp, "path"));
        if (p && (p->empty() || p->front() != '/'))
          r.fail(json_path_key(mp, "path"), "a path pattern starts with '/' (\"*\" is a wildcard)");
        else if (p)
          rule.match.path = *p;
      }
      if (m.contains("headers")) {
        const auto& h = m["headers"];
        auto hp = json_path_key(mp, "headers");
        if (!h.is_object()) {
          r.fail(hp,
                 "expected an object of header names to values (\"*\" = present), got " + json_describe(h));
        } else {
          for (const auto& [name, value] : h.items()) {
            auto val = r.string(value, json_path_key(hp, name));
            if (!is_token(name)) r.fail(json_path_key(hp, name), "not a header name");
            if (val) rule.match.headers.emplace_back(name, *val);
          }
        }
      }
      if (m.contains("route")) rule.match.route = r.string(m["route"], json_path_key(mp, "route"));
      if (m.contains("variant")) rule.match.variant = r.string(m["variant"], json_path_key(mp, "variant"));
    }
  }
  if (v.contains("per")) {
    auto per = r.string(v["per"], json_path_key(path, "per"));
    if (per && *per == "connection")
      rule.per = FaultUnit::Connection;
    else if (per && *per != "request")
      r.fail(json_path_key(path, "per"),
             "expected \"request\" or \"connection\" (the unit a probability and counts apply to)");
  }
  if (v.contains("probability")) {
    const auto& p = v["probability"];
    if (!p.is_number() || p.get<double>() < 0 || p.get<double>() > 1)
      r.fail(json_path_key(path, "probability"), "expected a number from 0 to 1, got " + json_describe(p));
    else
      rule.probability = p.get<double>();
  }
  auto count = [&](const char* key, std::optional<std::uint64_t>& out, std::uint64_t lo) {
    if (v.contains(key)) out = r.integer(v[key], json_path_key(path, key), lo, 1ULL << 62);
  };
  count("first", rule.first, 0);
  count("every", rule.every, 1);
  count("after", rule.after, 0);
  if (v.contains("window")) {
    const auto& w = v["window"];
    auto wp = json_path_key(path, "window");
    if (!w.is_object()) {
      r.fail(wp, "expected {\"from\": \"10s\", \"until\": \"40s\"}, got " + json_describe(w));
    } else {
      r.known_keys(w, wp, {"from", "until"});
      if (w.contains("from")) rule.from = r.duration(w["from"], json_path_key(wp, "from"));
      if (w.contains("until")) rule.until = r.duration(w["until"], json_path_key(wp, "until"));
      if (rule.from && rule.until && *rule.until <= *rule.from)
        r.fail(json_path_key(wp, "until"), "must be after \"from\"");
    }
  }
  if (v.contains("phase")) {
    auto ph = r.string(v["phase"], json_path_key(path, "phase"));
    if (ph) {
      const FaultPhase* found = nullptr;
      std::string list;
      for (const auto& p : phases) {
        if (p.name == *ph) found = &p;
        list += (list.empty() ? "" : ", ") + p.name;
      }
      if (!found) {
        r.fail(json_path_key(path, "phase"),
               "no phase named \"" + *ph + "\"" +
                   (list.empty() ? " (the stage defines no phases)" : " (phases: " + list + ")"));
      } else if (v.contains("window")) {
        r.fail(path, "give either \"phase\" or \"window\", not both");
      } else {
        rule.phase = found->name;
        rule.from = found->start;
        rule.until = found->end;
      }
    }
  }
  if (!v.contains("fault")) {
    r.fail(path, "missing \"fault\" (what to inject, e.g. {\"type\": \"abort\", \"status\": 503})");
  } else if (auto f = parse_fault(v["fault"], json_path_key(path, "fault"), r)) {
    rule.fault = std::move(f);
  }
  if (rule.fault && rule.fault->only_at_connect() && rule.per != FaultUnit::Connection)
    r.fail(json_path_key(path, "per"),
           "a " + rule.fault->type() + " fault acts on connections: set \"per\": \"connection\"");
  if (rule.fault && rule.fault->only_at_connect() && !rule.match.empty())
    r.fail(json_path_key(path, "match"),
           "a " + rule.fault->type() + " fault acts before any request is read, so it cannot match on one");
  if (r.problems.size() != before) return std::nullopt;
  return rule;
}

std::optional<std::vector<FaultRule>> parse_fault_rules(const nlohmann::json& v, const std::string& path,
                                                        const std::vector<FaultPhase>& phases,
                                                        ParamReader& r) {
  if (!v.is_array()) {
    r.fail(path, "expected an array of rules, got " + json_describe(v));
    return std::nullopt;
  }
  std::size_t before = r.problems.size();
  std::vector<FaultRule> out;
  std::set<std::string> names;
  for (std::size_t i = 0; i < v.size(); ++i) {
    auto ip = json_path_index(path, i);
    auto rule = parse_fault_rule(v[i], ip, phases, r);
    if (!rule) continue;
    if (rule->name.empty()) rule->name = "rule-" + std::to_string(i + 1);
    if (!names.insert(rule->name).second) {
      r.fail(json_path_key(ip, "name"),
             "\"" + rule->name + "\" is used by another rule (names key the draws)");
      continue;
    }
    out.push_back(std::move(*rule));
  }
  if (r.problems.size() != before) return std::nullopt;
  return out;
}

}  // namespace rproxy::stages
