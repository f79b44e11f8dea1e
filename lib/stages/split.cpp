#include "stages/split.hpp"

#include <cmath>
#include <cstdio>
#include <set>

#include "core/balancer.hpp"
#include "rproxy/http_parser.hpp"
#include "rproxy/scenario.hpp"
#include "stages/params.hpp"

namespace rproxy::stages {
namespace {

using nlohmann::json;

constexpr unsigned kMaxVariantWeight = 100000;
constexpr std::size_t kMaxExamples = 10;

std::string quote(std::string_view s) {
  return json(std::string(s)).dump();
}

// Cookie header fields (RFC 6265 §5.4; several fields are joined with "; ").
std::optional<std::string> cookie_value(const Headers& headers, std::string_view name) {
  for (const auto& h : headers) {
    if (!iequals(h.name, "Cookie")) continue;
    std::string_view rest = h.value;
    while (!rest.empty()) {
      auto semi = rest.find(';');
      auto pair = rest.substr(0, semi);
      rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
      while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
      auto eq = pair.find('=');
      if (eq == std::string_view::npos || pair.substr(0, eq) != name) continue;
      auto value = pair.substr(eq + 1);
      while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
        value = value.substr(1, value.size() - 2);
      return std::string(value);
    }
  }
  return std::nullopt;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex_digit(s[i + 1]) >= 0 && hex_digit(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_digit(s[i + 1]) * 16 + hex_digit(s[i + 2]));
      i += 2;
    } else {
      out += s[i] == '+' ? ' ' : s[i];
    }
  }
  return out;
}

// Finds a query parameter in an origin-form target; `remove` drops it from the target (other
// parameters keep their bytes and order).
std::optional<std::string> query_param(std::string& target, std::string_view name, bool remove) {
  auto q = target.find('?');
  if (q == std::string::npos) return std::nullopt;
  std::size_t pos = q + 1;
  while (pos <= target.size()) {
    auto amp = target.find('&', pos);
    auto end = amp == std::string::npos ? target.size() : amp;
    std::string_view pair(target.data() + pos, end - pos);
    auto eq = pair.find('=');
    if (percent_decode(pair.substr(0, eq)) == name) {
      std::string value = eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1));
      if (remove) {
        // Remove "name=value" and one adjacent separator; drop "?" when nothing is left.
        std::size_t from = pos;
        std::size_t to = amp == std::string::npos ? end : end + 1;
        if (amp == std::string::npos && from > q + 1) --from;  // last parameter: take the "&" before it
        target.erase(from, to - from);
        if (target.size() == q + 1) target.erase(q);
      }
      return value;
    }
    if (amp == std::string::npos) break;
    pos = amp + 1;
  }
  return std::nullopt;
}

bool valid_cookie_key(std::string_view v) {
  if (v.empty() || v.size() > 64) return false;
  for (char c : v)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
      return false;
  return true;
}

std::string format_pct(double share) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f%%", share * 100);
  return b;
}

std::string format_ms(double ms) {
  char b[32];
  if (ms < 10)
    std::snprintf(b, sizeof b, "%.2fms", ms);
  else if (ms < 1000)
    std::snprintf(b, sizeof b, "%.1fms", ms);
  else
    std::snprintf(b, sizeof b, "%.2fs", ms / 1000);
  return b;
}

json latency_json(const LatencyHistogram& h) {
  return {{"count", h.count()},         {"p50", h.quantile_ms(0.5)}, {"p95", h.quantile_ms(0.95)},
          {"p99", h.quantile_ms(0.99)}, {"mean", h.mean_ms()},       {"max", h.max_ms()}};
}

bool names_contains(const std::vector<Variant>& variants, const std::string& name) {
  for (const auto& v : variants)
    if (v.name == name) return true;
  return false;
}

}  // namespace

std::string StickySpec::to_string() const {
  switch (mode) {
    case Mode::None:
      return "none";
    case Mode::Cookie:
      return "cookie";
    case Mode::Ip:
      return "ip";
    case Mode::Header:
      return "header:" + name;
    case Mode::Query:
      return "query:" + name;
  }
  return "none";
}

std::optional<StickySpec> parse_sticky(const std::string& text, std::string& error) {
  StickySpec s;
  if (text == "none") return s;
  if (text == "cookie") {
    s.mode = StickySpec::Mode::Cookie;
    return s;
  }
  if (text == "ip") {
    s.mode = StickySpec::Mode::Ip;
    return s;
  }
  auto colon = text.find(':');
  auto kind = text.substr(0, colon);
  if (colon != std::string::npos && (kind == "header" || kind == "query")) {
    s.name = text.substr(colon + 1);
    s.mode = kind == "header" ? StickySpec::Mode::Header : StickySpec::Mode::Query;
    if (s.name.empty()) {
      error = "needs a name after \"" + kind + ":\", e.g. " +
              (kind == "header" ? "header:X-User-Id" : "query:uid");
      return std::nullopt;
    }
    if (kind == "header" && !is_token(s.name)) {
      error = quote(s.name) + " is not a valid header name";
      return std::nullopt;
    }
    return s;
  }
  error = "must be none, cookie, ip, header:NAME or query:NAME, got " + quote(text);
  return std::nullopt;
}

std::optional<SplitSettings> SplitStage::parse_settings(const json& params, const std::string& path,
                                                        const StageContext& context,
                                                        std::vector<std::string>& problems) {
  const auto before = problems.size();
  ParamReader r{problems};
  SplitSettings s;
  if (!params.is_object()) {
    r.fail(path, "expected an object, got " + json_describe(params));
    return std::nullopt;
  }
  r.known_keys(params, path, {"variants", "sticky", "cookie", "cookie_max_age", "override", "shadow"});

  auto vpath = json_path_key(path, "variants");
  auto vit = params.find("variants");
  if (vit == params.end()) {
    r.fail(vpath,
           "required: at least two variants, e.g. [{\"name\": \"a\", \"weight\": 90}, {\"name\": \"b\", "
           "\"weight\": 10}]");
  } else if (!vit->is_array()) {
    r.fail(vpath, "expected an array of variants, got " + json_describe(*vit));
  } else {
    if (vit->size() < 2)
      r.fail(vpath, "at least two variants are needed, got " + std::to_string(vit->size()));
    std::set<std::string> names;
    for (std::size_t i = 0; i < vit->size(); ++i) {
      const auto& item = (*vit)[i];
      auto ipath = json_path_index(vpath, i);
      if (!item.is_object()) {
        r.fail(ipath, "expected {\"name\": ..., \"weight\": ...}, got " + json_describe(item));
        continue;
      }
      r.known_keys(item, ipath, {"name", "weight"});
      Variant v;
      auto nit = item.find("name");
      if (nit == item.end()) {
        r.fail(json_path_key(ipath, "name"), "required (the name of the upstreams this variant sends to)");
      } else if (auto n = r.string(*nit, json_path_key(ipath, "name"))) {
        v.name = *n;
        if (!is_valid_scenario_name(v.name))
          r.fail(json_path_key(ipath, "name"),
                 "must be 1-64 letters, digits, \"_\", \"-\" or \".\", got " + quote(v.name));
        else if (!names.insert(v.name).second)
          r.fail(json_path_key(ipath, "name"), "duplicate variant " + quote(v.name));
      }
      if (auto wit = item.find("weight"); wit != item.end()) {
        if (auto w = r.integer(*wit, json_path_key(ipath, "weight"), 0, kMaxVariantWeight))
          v.weight = static_cast<unsigned>(*w);
      }
      s.variants.push_back(v);
    }
  }
  if (auto it = params.find("sticky"); it != params.end()) {
    if (auto text = r.string(*it, json_path_key(path, "sticky"))) {
      std::string err;
      if (auto st = parse_sticky(*text, err))
        s.sticky = *st;
      else
        r.fail(json_path_key(path, "sticky"), err);
    }
  }
  if (auto it = params.find("cookie"); it != params.end()) {
    if (auto c = r.string(*it, json_path_key(path, "cookie"))) {
      if (!is_token(*c) || *c == kOverrideParam)
        r.fail(json_path_key(path, "cookie"),
               "must be a cookie name (a token) other than " + quote(kOverrideParam) + ", got " + quote(*c));
      else
        s.cookie = *c;
    }
  }
  if (auto it = params.find("cookie_max_age"); it != params.end()) {
    if (auto d = r.duration(*it, json_path_key(path, "cookie_max_age"))) {
      if (d->count() < 1000)
        r.fail(json_path_key(path, "cookie_max_age"), "must be at least 1s (Max-Age counts whole seconds)");
      else
        s.cookie_max_age = *d;
    }
  }
  if (auto it = params.find("override"); it != params.end()) {
    if (auto b = r.boolean(*it, json_path_key(path, "override"))) s.override_enabled = *b;
  }
  if (auto it = params.find("shadow"); it != params.end()) {
    auto spath = json_path_key(path, "shadow");
    if (!it->is_object()) {
      r.fail(spath, "expected an object like {\"variant\": \"b\"}, got " + json_describe(*it));
    } else {
      r.known_keys(*it, spath, {"variant", "percent", "compare_headers", "ignore", "max_body", "timeout"});
      ShadowSpec sh;
      auto vit2 = it->find("variant");
      if (vit2 == it->end()) {
        r.fail(json_path_key(spath, "variant"), "required: the variant that receives the copies");
      } else if (auto v = r.string(*vit2, json_path_key(spath, "variant"))) {
        sh.variant = *v;
        if (!names_contains(s.variants, sh.variant))
          r.fail(json_path_key(spath, "variant"), "no variant named " + quote(sh.variant));
      }
      if (auto p = it->find("percent"); p != it->end()) {
        if (!p->is_number() || p->get<double>() < 0 || p->get<double>() > 100)
          r.fail(json_path_key(spath, "percent"),
                 "expected a number from 0 to 100, got " + json_describe(*p));
        else
          sh.percent = p->get<double>();
      }
      if (auto h = it->find("compare_headers"); h != it->end()) {
        if (auto list = r.strings(*h, json_path_key(spath, "compare_headers"))) {
          for (std::size_t i = 0; i < list->size(); ++i)
            if (!is_token((*list)[i]))
              r.fail(json_path_index(json_path_key(spath, "compare_headers"), i), "not a valid header name");
          sh.diff.headers = *list;
        }
      }
      if (auto ig = it->find("ignore"); ig != it->end()) {
        if (auto list = r.strings(*ig, json_path_key(spath, "ignore"))) {
          for (std::size_t i = 0; i < list->size(); ++i)
            if (auto err = check_ignore_entry((*list)[i]))
              r.fail(json_path_index(json_path_key(spath, "ignore"), i), *err);
          sh.diff.ignore = *list;
        }
      }
      if (auto mb = it->find("max_body"); mb != it->end()) {
        if (auto n = r.size(*mb, json_path_key(spath, "max_body"))) {
          if (*n == 0 || *n > 64ULL * 1024 * 1024)
            r.fail(json_path_key(spath, "max_body"), "must be from 1 byte to 64MiB");
          else
            sh.max_body = *n;
        }
      }
      if (auto t = it->find("timeout"); t != it->end()) {
        if (auto d = r.duration(*t, json_path_key(spath, "timeout"))) {
          if (d->count() <= 0)
            r.fail(json_path_key(spath, "timeout"), "must be greater than 0");
          else
            sh.timeout = *d;
        }
      }
      s.shadow = sh;
    }
  }
  if (problems.size() != before) return std::nullopt;

  // Weights: at least one variant that can be assigned must have weight.
  unsigned live = 0;
  for (const auto& v : s.variants)
    if (!s.shadow || v.name != s.shadow->variant) live += v.weight;
  if (live == 0) r.fail(vpath, "every variant that takes traffic has weight 0");

  // Every variant must name upstreams on each route the stage runs on.
  std::vector<const Route*> routes;
  if (context.route) {
    routes.push_back(context.route);
  } else {
    for (const auto& rt : context.scenario.routes) routes.push_back(&rt);
  }
  for (const auto* route : routes) {
    std::string have;
    for (const auto& u : route->upstreams)
      if (!u.name.empty() && have.find(quote(u.name)) == std::string::npos)
        have += (have.empty() ? "" : ", ") + quote(u.name);
    for (std::size_t i = 0; i < s.variants.size(); ++i) {
      bool found = false;
      for (const auto& u : route->upstreams) found = found || u.name == s.variants[i].name;
      if (!found)
        r.fail(json_path_key(json_path_index(vpath, i), "name"),
               "route " + quote(route->name) + " has no upstream named " + quote(s.variants[i].name) +
                   (have.empty() ? " (its upstreams have no names; give them \"name\")"
                                 : " (it has " + have + ")"));
    }
  }
  if (problems.size() != before) return std::nullopt;
  return s;
}

std::unique_ptr<Stage> SplitStage::create(const json& params, const std::string& path,
                                          const StageContext& context, std::vector<std::string>& problems) {
  auto settings = parse_settings(params, path, context, problems);
  if (!settings) return nullptr;
  return std::make_unique<SplitStage>(std::move(*settings), context.scenario.seed);
}

namespace {
std::vector<Variant> assignable(const SplitSettings& s) {
  auto v = s.variants;
  if (s.shadow)
    for (auto& x : v)
      if (x.name == s.shadow->variant) x.weight = 0;
  return v;
}
}  // namespace

SplitStage::SplitStage(SplitSettings settings, std::uint64_t seed)
    : settings_(std::move(settings)),
      seed_(seed),
      picker_(assignable(settings_), seed),
      stats_(new VariantStats[settings_.variants.size()]) {}

std::optional<std::size_t> SplitStage::find_variant(std::string_view name) const {
  for (std::size_t i = 0; i < settings_.variants.size(); ++i)
    if (settings_.variants[i].name == name) return i;
  return std::nullopt;
}

std::string SplitStage::new_cookie_key(std::uint64_t ordinal) const {
  char b[20];
  std::snprintf(b, sizeof b, "%016llx",
                static_cast<unsigned long long>(splitmix64(seed_ ^ splitmix64(ordinal ^ 0x636f6f6b6965ULL))));
  return b;
}

LocalResponse SplitStage::unknown_variant(const std::string& given, const std::string& where) const {
  std::string names;
  for (const auto& v : settings_.variants) names += (names.empty() ? "" : ", ") + v.name;
  LocalResponse r;
  r.status = 400;
  r.headers.add("Content-Type", "text/plain; charset=utf-8");
  r.headers.add("X-Rproxy-Error", "unknown_variant");
  r.body =
      "400 Bad Request: " + where + " asks for variant " + quote(given) + "; variants are " + names + "\n";
  return r;
}

const std::string& SplitStage::variant_for_key(const std::string& key) const {
  return settings_.variants[picker_.pick(key)].name;
}

std::string SplitStage::explain(const std::string& key) const {
  std::string out = "key " + quote(key) + " -> variant " + variant_for_key(key) + " (seed " +
                    std::to_string(seed_) + ", sticky " + settings_.sticky.to_string() +
                    "; scores, lowest wins:";
  for (std::size_t i = 0; i < settings_.variants.size(); ++i) {
    char b[64];
    double sc = picker_.score(i, key);
    if (std::isinf(sc))
      std::snprintf(b, sizeof b, " %s=never", settings_.variants[i].name.c_str());
    else
      std::snprintf(b, sizeof b, " %s=%.4f", settings_.variants[i].name.c_str(), sc);
    out += b;
  }
  return out + ")";
}

Decision SplitStage::on_request(Exchange& ex) {
  const auto ordinal = ordinal_.fetch_add(1, std::memory_order_relaxed) + 1;
  std::optional<std::size_t> forced;
  if (settings_.override_enabled) {
    if (auto h = ex.request.headers.get(kVariantHeader)) {
      std::string given(*h);
      forced = find_variant(given);
      if (!forced) return Decision::respond(unknown_variant(given, std::string("header ") + kVariantHeader));
      ex.tags["split.reason"] = "override";
    }
    if (auto q = query_param(ex.request.target, kOverrideParam, true)) {
      if (q->empty()) {
        ex.tags["split.pin"] = "";  // unpin
      } else if (!forced) {
        forced = find_variant(*q);
        if (!forced)
          return Decision::respond(unknown_variant(*q, std::string("query parameter ") + kOverrideParam));
        ex.tags["split.reason"] = "override";
      }
    }
    if (forced && settings_.sticky.mode == StickySpec::Mode::Cookie)
      ex.tags["split.pin"] = settings_.variants[*forced].name;
    if (!forced && !ex.tags.count("split.pin")) {
      if (auto c = cookie_value(ex.request.headers, kOverrideParam)) {
        forced = find_variant(*c);
        if (forced)
          ex.tags["split.reason"] = "pinned";
        else
          ex.tags["split.pin"] = "";  // a pin to a variant that no longer exists: clear it
      }
    }
  }

  std::size_t index = 0;
  if (forced) {
    index = *forced;
    stats_[index].overrides.fetch_add(1, std::memory_order_relaxed);
  } else {
    std::optional<std::string> key;
    switch (settings_.sticky.mode) {
      case StickySpec::Mode::None:
        break;
      case StickySpec::Mode::Ip:
        key = ex.client_ip;
        break;
      case StickySpec::Mode::Header:
        if (ex.request.headers.has(settings_.sticky.name))
          key = ex.request.headers.joined(settings_.sticky.name);
        break;
      case StickySpec::Mode::Query: {
        std::string target = ex.request.target;
        key = query_param(target, settings_.sticky.name, false);
        break;
      }
      case StickySpec::Mode::Cookie: {
        auto c = cookie_value(ex.request.headers, settings_.cookie);
        if (c && valid_cookie_key(*c)) {
          key = *c;
        } else {
          key = new_cookie_key(ordinal);
          ex.tags["split.cookie"] = *key;
        }
        break;
      }
    }
    if (key) {
      index = picker_.pick(*key);
      ex.tags["split.reason"] =
          settings_.sticky.mode == StickySpec::Mode::Cookie && ex.tags.count("split.cookie") ? "new"
                                                                                             : "sticky";
    } else {
      if (settings_.sticky.mode != StickySpec::Mode::None) unkeyed_.fetch_add(1, std::memory_order_relaxed);
      index = picker_.pick_ordinal(ordinal);
      ex.tags["split.reason"] = "random";
    }
  }
  stats_[index].assigned.fetch_add(1, std::memory_order_relaxed);
  const auto& name = settings_.variants[index].name;
  ex.variant = name;
  ex.request.headers.set(kVariantHeader, name);

  Decision d;
  d.upstream = name;
  if (settings_.shadow && name != settings_.shadow->variant) {
    // Which requests are copied is, like everything else, a function of the seed and the ordinal.
    auto draw = splitmix64(seed_ ^ splitmix64(ordinal ^ 0x736861646f77ULL)) % 1000000;
    if (static_cast<double>(draw) < settings_.shadow->percent * 10000) {
      ShadowRequest sr;
      sr.upstream = settings_.shadow->variant;
      sr.observer = this;
      sr.max_body = settings_.shadow->max_body;
      // Responses are kept up to the same size but never less than 1 MiB, so a small request cap does
      // not turn JSON comparisons into hash comparisons.
      sr.capture = std::max<std::uint64_t>(settings_.shadow->max_body, 1024 * 1024);
      sr.timeout = settings_.shadow->timeout;
      sr.headers.push_back({kVariantHeader, settings_.shadow->variant});
      d.shadow = sr;
      std::lock_guard lock(shadow_mutex_);
      ++shadow_.requested;
    }
  }
  return d;
}

std::string SplitStage::served_variant(const Exchange& ex) const {
  // After a failover the upstream that answered belongs to another variant: that one served.
  if (ex.tags.count("failover_from") && !ex.upstream_name.empty() && find_variant(ex.upstream_name))
    return ex.upstream_name;
  return ex.variant;
}

Decision SplitStage::on_response(Exchange& ex) {
  if (ex.variant.empty() || !ex.response) return Decision::proceed();
  auto served = served_variant(ex);
  ex.variant = served;
  auto& h = ex.response->headers;
  h.set(kVariantHeader, served);
  const auto max_age = std::to_string(settings_.cookie_max_age.count() / 1000);
  const std::string attrs = "; Path=/; Max-Age=" + max_age + "; HttpOnly; SameSite=Lax";
  if (auto it = ex.tags.find("split.cookie"); it != ex.tags.end())
    h.add("Set-Cookie", settings_.cookie + "=" + it->second + attrs);
  if (auto it = ex.tags.find("split.pin"); it != ex.tags.end()) {
    if (it->second.empty())
      h.add("Set-Cookie", std::string(kOverrideParam) + "=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax");
    else
      h.add("Set-Cookie", std::string(kOverrideParam) + "=" + it->second + attrs);
  }
  return Decision::proceed();
}

void SplitStage::on_complete(const Exchange& ex) {
  if (ex.variant.empty()) return;  // answered before a variant was assigned (e.g. unknown override)
  auto served = served_variant(ex);
  auto i = find_variant(served);
  if (!i) return;
  auto& st = stats_[*i];
  st.requests.fetch_add(1, std::memory_order_relaxed);
  if (ex.tags.count("failover_from")) {
    st.failovers_in.fetch_add(1, std::memory_order_relaxed);
    if (auto from = find_variant(ex.tags.at("failover_from")))
      stats_[*from].failovers_out.fetch_add(1, std::memory_order_relaxed);
  }
  int status = ex.outcome.status;
  if (status >= 100 && status < 600)
    st.status_class[static_cast<std::size_t>(status / 100 - 1)].fetch_add(1, std::memory_order_relaxed);
  if (status == 0 || !ex.outcome.error.empty()) st.errors.fetch_add(1, std::memory_order_relaxed);
  st.latency.record_ms(ex.outcome.duration_ms);
}

void SplitStage::on_shadow(const Exchange& ex, const CapturedResponse& primary,
                           const CapturedResponse& shadow) {
  auto diffs = compare_responses(primary, shadow, settings_.shadow->diff);
  shadow_primary_latency_.record_ms(ex.outcome.duration_ms > 0 ? ex.outcome.duration_ms
                                                               : primary.duration_ms);
  shadow_latency_.record_ms(shadow.duration_ms);
  std::lock_guard lock(shadow_mutex_);
  ++shadow_.compared;
  if (!shadow.error.empty()) ++shadow_.shadow_errors;
  auto& route = shadow_.routes[ex.route.empty() ? "-" : ex.route];
  ++route.compared;
  if (diffs.empty()) {
    ++shadow_.identical;
    return;
  }
  ++shadow_.different;
  ++route.different;
  for (const auto& d : diffs) ++route.where[d.where];
  if (route.examples.size() < kMaxExamples) {
    json list = json::array();
    for (const auto& d : diffs)
      list.push_back({{"where", d.where}, {"primary", d.primary}, {"shadow", d.shadow}});
    route.examples.push_back(
        {{"request", ex.request.method + " " + ex.request.target}, {"differences", list}});
  }
}

void SplitStage::on_shadow_skipped(const Exchange&, const std::string& reason) {
  std::lock_guard lock(shadow_mutex_);
  ++shadow_.skipped[reason];
}

json SplitStage::report() const {
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < settings_.variants.size(); ++i) total += stats_[i].requests.load();
  unsigned weight_total = 0;
  auto assign = assignable(settings_);
  for (const auto& v : assign) weight_total += v.weight;
  json variants = json::array();
  for (std::size_t i = 0; i < settings_.variants.size(); ++i) {
    const auto& st = stats_[i];
    auto n = st.requests.load();
    auto ci = wilson_interval(n, total);
    json status = json::object();
    for (std::size_t c = 0; c < 5; ++c) status[std::to_string(c + 1) + "xx"] = st.status_class[c].load();
    variants.push_back(
        {{"name", settings_.variants[i].name},
         {"weight", settings_.variants[i].weight},
         {"target_share", weight_total ? static_cast<double>(assign[i].weight) / weight_total : 0.0},
         {"observed_share", total ? static_cast<double>(n) / static_cast<double>(total) : 0.0},
         {"share_ci95", {ci.low, ci.high}},
         {"requests", n},
         {"assigned", st.assigned.load()},
         {"overrides", st.overrides.load()},
         {"failovers_in", st.failovers_in.load()},
         {"failovers_out", st.failovers_out.load()},
         {"errors", st.errors.load()},
         {"status", status},
         {"latency_ms", latency_json(st.latency)}});
  }
  json out = {{"type", "split"},
              {"seed", seed_},
              {"sticky", settings_.sticky.to_string()},
              {"requests", total},
              {"unkeyed", unkeyed_.load()},
              {"variants", variants}};
  if (settings_.shadow) {
    std::lock_guard lock(shadow_mutex_);
    json routes = json::object();
    for (const auto& [name, r] : shadow_.routes) {
      routes[name] = {{"compared", r.compared},
                      {"different", r.different},
                      {"differences", r.where},
                      {"examples", r.examples}};
    }
    out["shadow"] = {
        {"variant", settings_.shadow->variant},
        {"percent", settings_.shadow->percent},
        {"requested", shadow_.requested},
        {"compared", shadow_.compared},
        {"identical", shadow_.identical},
        {"different", shadow_.different},
        {"shadow_errors", shadow_.shadow_errors},
        {"skipped", shadow_.skipped},
        {"latency_ms",
         {{"primary", latency_json(shadow_primary_latency_)}, {"shadow", latency_json(shadow_latency_)}}},
        {"routes", routes}};
  }
  return out;
}

std::string SplitStage::summary() const {
  auto rep = report();
  std::string out = "split (sticky " + rep["sticky"].get<std::string>() + ", seed " + std::to_string(seed_) +
                    "): " + std::to_string(rep["requests"].get<std::uint64_t>()) + " requests\n";
  char line[256];
  std::snprintf(line, sizeof line, "  %-12s %7s %8s  %-17s %8s %6s %6s %6s %6s %6s %9s %9s %9s\n", "variant",
                "target", "observed", "95% CI", "requests", "2xx", "3xx", "4xx", "5xx", "errors", "p50",
                "p95", "p99");
  out += line;
  for (const auto& v : rep["variants"]) {
    auto ci = "[" + format_pct(v["share_ci95"][0].get<double>()) + ", " +
              format_pct(v["share_ci95"][1].get<double>()) + "]";
    const auto& st = v["status"];
    const auto& lat = v["latency_ms"];
    std::snprintf(line, sizeof line,
                  "  %-12s %7s %8s  %-17s %8llu %6llu %6llu %6llu %6llu %6llu %9s %9s %9s\n",
                  v["name"].get<std::string>().c_str(), format_pct(v["target_share"].get<double>()).c_str(),
                  format_pct(v["observed_share"].get<double>()).c_str(), ci.c_str(),
                  static_cast<unsigned long long>(v["requests"].get<std::uint64_t>()),
                  static_cast<unsigned long long>(st["2xx"].get<std::uint64_t>()),
                  static_cast<unsigned long long>(st["3xx"].get<std::uint64_t>()),
                  static_cast<unsigned long long>(st["4xx"].get<std::uint64_t>()),
                  static_cast<unsigned long long>(st["5xx"].get<std::uint64_t>()),
                  static_cast<unsigned long long>(v["errors"].get<std::uint64_t>()),
                  format_ms(lat["p50"].get<double>()).c_str(), format_ms(lat["p95"].get<double>()).c_str(),
                  format_ms(lat["p99"].get<double>()).c_str());
    out += line;
    auto fo = v["failovers_out"].get<std::uint64_t>();
    if (fo)
      out += "    " + std::to_string(fo) + " requests of " + v["name"].get<std::string>() + " failed over\n";
  }
  if (rep.contains("shadow")) {
    const auto& sh = rep["shadow"];
    out += "  shadow " + sh["variant"].get<std::string>() + ": " +
           std::to_string(sh["compared"].get<std::uint64_t>()) + " compared, " +
           std::to_string(sh["identical"].get<std::uint64_t>()) + " identical, " +
           std::to_string(sh["different"].get<std::uint64_t>()) + " different";
    std::uint64_t skipped = 0;
    std::string why;
    for (const auto& [reason, n] : sh["skipped"].items()) {
      skipped += n.get<std::uint64_t>();
      why += (why.empty() ? "" : ", ") + reason + ": " + std::to_string(n.get<std::uint64_t>());
    }
    if (skipped) out += ", " + std::to_string(skipped) + " not sent (" + why + ")";
    out += "; p50 primary " + format_ms(sh["latency_ms"]["primary"]["p50"].get<double>()) + ", shadow " +
           format_ms(sh["latency_ms"]["shadow"]["p50"].get<double>()) + "\n";
    for (const auto& [route, r] : sh["routes"].items()) {
      if (r["different"].get<std::uint64_t>() == 0) continue;
      std::string where;
      for (const auto& [w, n] : r["differences"].items())
        where += (where.empty() ? "" : ", ") + w + " x" + std::to_string(n.get<std::uint64_t>());
      out += "    route " + route + ": " + std::to_string(r["different"].get<std::uint64_t>()) + " of " +
             std::to_string(r["compared"].get<std::uint64_t>()) + " differ (" + where + ")\n";
    }
  }
  return out;
}

}  // namespace rproxy::stages
