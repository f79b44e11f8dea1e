// Scenario <-> JSON, and the rules a scenario must satisfy.
//
// Two passes, so flags and JSON share one set of rules:
//   1. read_* turn the document into a Scenario. They check only what JSON itself can get wrong: unknown
//      keys, JSON types, required keys and the syntax of value strings (URLs, durations, ...). A value that
//      fails is reported and left at its default; a broken array element is kept as a placeholder so later
//      paths still match the document's indices.
//   2. Validator checks the Scenario struct: ranges, formats of plain strings, cross-field rules, stage
//      params. It is also what validate_scenario runs on scenarios built from flags.
// Every problem is collected; nothing stops at the first one. Problems the second pass would derive from a
// value the first pass already rejected ("no upstreams" after the only upstream URL was bad) are dropped,
// so each mistake is reported once.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <string_view>

#include "rproxy/http.hpp"
#include "rproxy/http_parser.hpp"
#include "rproxy/scenario.hpp"
#include "rproxy/stage.hpp"

namespace rproxy {
namespace {

using nlohmann::json;

constexpr int kVersion = 1;
constexpr std::uint64_t kMaxWorkers = 64;
constexpr std::uint64_t kMaxConns = 1000000;
constexpr std::uint64_t kMaxWeight = 1000;
constexpr std::size_t kMaxNameLength = 64;
constexpr std::string_view kRootPath = "(root)";

using KeyTable = std::map<std::string_view, std::vector<std::string>, std::less<>>;

// The one list of keys per object kind; read_* check against it and the schema test compares it with the
// schema file.
const KeyTable& key_table() {
  static const KeyTable table{
      {"scenario",
       {"version", "seed", "listeners", "workers", "limits", "access_log", "report", "admin", "tls", "stages",
        "routes"}},
      {"limits",
       {"max_conns", "max_body", "head_timeout", "body_timeout", "idle_timeout", "write_timeout",
        "drain_timeout", "underscore_headers"}},
      {"access_log", {"path", "format"}},
      {"tls", {"cert", "key", "redirect_http"}},
      {"stage", {"type", "name", "params"}},
      {"route",
       {"name", "match", "strip_prefix", "rewrite", "upstreams", "balance", "host_header", "connect_timeout",
        "read_timeout", "upstream_tls", "health_check", "passive_health", "retries", "hold", "stages"}},
      {"match", {"host", "path_prefix", "path", "methods", "headers"}},
      {"upstream", {"url", "weight", "name", "backup"}},
      {"upstream_tls", {"ca", "insecure", "server_name"}},
      {"health_check",
       {"path", "interval", "timeout", "healthy_threshold", "unhealthy_threshold", "expect_status"}},
      {"passive_health", {"max_fails", "eject_for"}},
      {"retries", {"attempts", "backoff", "on"}},
  };
  return table;
}

// Levenshtein distance, for "did you mean" hints on unknown keys.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string quote(std::string_view text) {
  return json(std::string(text)).dump(-1, ' ', false, json::error_handler_t::replace);
}

bool starts_with_path(std::string_view path, std::string_view prefix) {
  if (!path.starts_with(prefix)) return false;
  return path.size() == prefix.size() || path[prefix.size()] == '.' || path[prefix.size()] == '[';
}

// Two paths are related when one is the other or lies inside it. "" is the root, inside which everything
// lies.
bool related(std::string_view a, std::string_view b) {
  return a.empty() || b.empty() || starts_with_path(a, b) || starts_with_path(b, a);
}

// as_unsigned accepts any non-negative integer: nlohmann keeps integers parsed from text as unsigned, but
// ones assigned in C++ (tests, the CLI) as signed.
std::optional<std::uint64_t> as_unsigned(const json& v) {
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_integer() && v.get<std::int64_t>() >= 0)
    return static_cast<std::uint64_t>(v.get<std::int64_t>());
  return std::nullopt;
}

std::string range_message(std::uint64_t min, std::uint64_t max, const std::string& got) {
  return "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " + got;
}

// ---------------------------------------------------------------------------------------------------
// Pass 1: JSON -> Scenario.

class Reader {
 public:
  explicit Reader(std::vector<std::string>& problems) : problems_(problems) {}

  void fail(const std::string& path, const std::string& message) {
    problems_.push_back((path.empty() ? std::string(kRootPath) : path) + ": " + message);
    failed_paths_.push_back(path);
  }
  const std::vector<std::string>& failed_paths() const { return failed_paths_; }

  // object checks that v is an object of the given kind and reports every key the kind does not have.
  bool object(const json& v, const std::string& path, std::string_view kind) {
    if (!v.is_object()) {
      fail(path, "expected an object, got " + json_describe(v));
      return false;
    }
    const auto& keys = key_table().find(kind)->second;
    for (const auto& [key, value] : v.items()) {
      if (std::find(keys.begin(), keys.end(), key) != keys.end()) continue;
      std::string message = "unknown key";
      std::size_t best = 3;  // suggest only close matches: a typo, not a different word
      for (const auto& known : keys) {
        auto d = edit_distance(key, known);
        if (d < best) {
          best = d;
          message = "unknown key; did you mean " + quote(known) + "?";
        }
      }
      fail(json_path_key(path, key), message);
    }
    return true;
  }

  std::optional<std::string> string(const json& v, const std::string& path) {
    if (v.is_string()) return v.get<std::string>();
    fail(path, "expected a string, got " + json_describe(v));
    return std::nullopt;
  }

  // name reads an explicit name. "" is refused here because in the struct it means "unnamed" and would
  // silently get a default name.
  std::optional<std::string> name(const json& v, const std::string& path) {
    auto s = string(v, path);
    if (s && s->empty()) {
      fail(path, "must not be empty (leave the key out for a default name)");
      return std::nullopt;
    }
    return s;
  }

  std::optional<bool> boolean(const json& v, const std::string& path) {
    if (v.is_boolean()) return v.get<bool>();
    fail(path, "expected true or false, got " + json_describe(v));
    return std::nullopt;
  }

  std::optional<std::uint64_t> unsigned_in(const json& v, const std::string& path, std::uint64_t min,
                                           std::uint64_t max) {
    if (auto value = as_unsigned(v); value && *value >= min && *value <= max) return value;
    if (v.is_number_integer()) {  // negative or out of range
      fail(path, range_message(min, max, v.dump()));
      return std::nullopt;
    }
    fail(path, "expected an unsigned integer, got " + json_describe(v));
    return std::nullopt;
  }

  std::optional<Millis> duration(const json& v, const std::string& path) {
    // 0 is the one number that needs no unit; everything else must say what it counts.
    if (as_unsigned(v) == 0u) return Millis{0};
    if (!v.is_string()) {
      fail(path, "expected a duration like \"250ms\", got " + json_describe(v));
      return std::nullopt;
    }
    Millis out{};
    if (auto err = parse_duration(v.get<std::string>(), out)) {
      fail(path, *err);
      return std::nullopt;
    }
    return out;
  }

  std::optional<std::uint64_t> size(const json& v, const std::string& path) {
    if (auto value = as_unsigned(v)) return value;
    if (!v.is_string()) {
      fail(path, "expected a size in bytes or a string like \"10MiB\", got " + json_describe(v));
      return std::nullopt;
    }
    std::uint64_t out = 0;
    if (auto err = parse_size(v.get<std::string>(), out)) {
      fail(path, *err);
      return std::nullopt;
    }
    return out;
  }

  bool array(const json& v, const std::string& path, std::string_view of) {
    if (v.is_array()) return true;
    fail(path, "expected an array of " + std::string(of) + ", got " + json_describe(v));
    return false;
  }

 private:
  std::vector<std::string>& problems_;
  std::vector<std::string> failed_paths_;
};

// Calls read(value, path) when obj has key.
template <typename F>
void with_member(const json& obj, std::string_view key, const std::string& base, F&& read) {
  auto it = obj.find(key);
  if (it != obj.end()) read(*it, json_path_key(base, key));
}

StageSpec read_stage(Reader& r, const json& v, const std::string& path) {
  StageSpec stage;
  if (!r.object(v, path, "stage")) return stage;
  if (!v.contains("type")) r.fail(json_path_key(path, "type"), "required (the stage type, e.g. \"headers\")");
  with_member(v, "type", path, [&](const json& m, const std::string& p) {
    if (auto s = r.string(m, p)) stage.type = *s;
  });
  with_member(v, "name", path, [&](const json& m, const std::string& p) {
    if (auto s = r.name(m, p)) stage.name = *s;
  });
  with_member(v, "params", path, [&](const json& m, const std::string& p) {
    if (m.is_object())
      stage.params = m;
    else
      r.fail(p, "expected an object, got " + json_describe(m));
  });
  return stage;
}

std::vector<StageSpec> read_stages(Reader& r, const json& v, const std::string& path) {
  std::vector<StageSpec> stages;
  if (!r.array(v, path, "stages")) return stages;
  for (std::size_t i = 0; i < v.size(); ++i) stages.push_back(read_stage(r, v[i], json_path_index(path, i)));
  return stages;
}

RouteMatch read_match(Reader& r, const json& v, const std::string& path) {
  RouteMatch match;
  if (!r.object(v, path, "match")) return match;
  with_member(v, "host", path, [&](const json& m, const std::string& p) { match.host = r.string(m, p); });
  with_member(v, "path_prefix", path,
              [&](const json& m, const std::string& p) { match.path_prefix = r.string(m, p); });
  with_member(v, "path", path, [&](const json& m, const std::string& p) { match.path = r.string(m, p); });
  with_member(v, "methods", path, [&](const json& m, const std::string& p) {
    if (!r.array(m, p, "methods like \"GET\"")) return;
    for (std::size_t i = 0; i < m.size(); ++i)
      // A placeholder for a bad element keeps later indices equal to the document's.
      match.methods.push_back(r.string(m[i], json_path_index(p, i)).value_or(""));
  });
  with_member(v, "headers", path, [&](const json& m, const std::string& p) {
    if (!m.is_object()) {
      r.fail(p, "expected an object of header names to values, got " + json_describe(m));
      return;
    }
    for (const auto& [name, value] : m.items())
      if (auto s = r.string(value, json_path_key(p, name))) match.headers[name] = *s;
  });
  return match;
}

UpstreamSpec read_upstream(Reader& r, const json& v, const std::string& path) {
  UpstreamSpec up;
  const json* url = &v;
  std::string url_path = path;
  if (v.is_object()) {
    if (!r.object(v, path, "upstream")) return up;
    url_path = json_path_key(path, "url");
    auto it = v.find("url");
    if (it == v.end()) {
      r.fail(url_path, "required (an http(s) URL like \"http://127.0.0.1:3000\")");
      url = nullptr;
    } else {
      url = &*it;
    }
    with_member(v, "weight", path, [&](const json& m, const std::string& p) {
      if (auto w = r.unsigned_in(m, p, 1, kMaxWeight)) up.weight = static_cast<unsigned>(*w);
    });
    with_member(v, "name", path, [&](const json& m, const std::string& p) {
      if (auto n = r.string(m, p)) up.name = *n;
    });
    with_member(v, "backup", path, [&](const json& m, const std::string& p) {
      if (auto b = r.boolean(m, p)) up.backup = *b;
    });
  }
  if (url == nullptr) return up;
  if (!url->is_string()) {
    r.fail(url_path,
           "expected an http(s) URL string or {\"url\": ..., \"weight\": ...}, got " + json_describe(*url));
    return up;
  }
  if (auto err = parse_url(url->get<std::string>(), up.url)) r.fail(url_path, *err);
  return up;
}

// expect_status: a status ("200") or an inclusive range ("200-399"), within 100-599.
std::optional<std::string> parse_status_range(const json& v, int& lo, int& hi) {
  auto bad = "expected a status like \"200\" or a range like \"200-399\", got " + json_describe(v);
  std::string text = v.is_number_unsigned() ? std::to_string(v.get<unsigned>()) : v.is_string() ? v.get<std::string>() : "";
  auto dash = text.find('-');
  auto number = [](std::string_view t) {
    int n = 0;
    if (t.size() != 3) return -1;
    for (char c : t) {
      if (c < '0' || c > '9') return -1;
      n = n * 10 + (c - '0');
    }
    return n >= 100 && n <= 599 ? n : -1;
  };
  int a = number(std::string_view(text).substr(0, dash));
  int b = dash == std::string::npos ? a : number(std::string_view(text).substr(dash + 1));
  if (a < 0 || b < 0) return bad;
  if (a > b) return "the range " + quote(text) + " is empty (its first status is above its last)";
  lo = a;
  hi = b;
  return std::nullopt;
}

bool is_retry_condition(const std::string& c) {
  if (c == "connect" || c == "reset" || c == "timeout" || c == "5xx") return true;
  return c.size() == 3 && c[0] == '5' && std::isdigit(static_cast<unsigned char>(c[1])) &&
         std::isdigit(static_cast<unsigned char>(c[2]));
}

HealthCheck read_health_check(Reader& r, const json& m, const std::string& p) {
  HealthCheck hc;
  with_member(m, "path", p, [&](const json& f, const std::string& fp) {
    if (auto str = r.string(f, fp)) hc.path = *str;
  });
  with_member(m, "interval", p, [&](const json& f, const std::string& fp) {
    if (auto d = r.duration(f, fp)) hc.interval = *d;
  });
  with_member(m, "timeout", p, [&](const json& f, const std::string& fp) {
    if (auto d = r.duration(f, fp)) hc.timeout = *d;
  });
  with_member(m, "healthy_threshold", p, [&](const json& f, const std::string& fp) {
    if (auto n = r.unsigned_in(f, fp, 1, 100)) hc.healthy_threshold = static_cast<unsigned>(*n);
  });
  with_member(m, "unhealthy_threshold", p, [&](const json& f, const std::string& fp) {
    if (auto n = r.unsigned_in(f, fp, 1, 100)) hc.unhealthy_threshold = static_cast<unsigned>(*n);
  });
  with_member(m, "expect_status", p, [&](const json& f, const std::string& fp) {
    if (auto err = parse_status_range(f, hc.expect_min, hc.expect_max)) r.fail(fp, *err);
  });
  return hc;
}

Route read_route(Reader& r, const json& v, const std::string& path) {
  Route route;
  if (!r.object(v, path, "route")) return route;
  with_member(v, "name", path, [&](const json& m, const std::string& p) {
    if (auto s = r.name(m, p)) route.name = *s;
  });
  with_member(v, "match", path,
              [&](const json& m, const std::string& p) { route.match = read_match(r, m, p); });
  with_member(v, "strip_prefix", path, [&](const json& m, const std::string& p) {
    if (auto b = r.boolean(m, p)) route.strip_prefix = *b;
  });
  with_member(v, "rewrite", path,
              [&](const json& m, const std::string& p) { route.rewrite = r.string(m, p); });
  with_member(v, "upstreams", path, [&](const json& m, const std::string& p) {
    if (!r.array(m, p, "upstream URLs")) return;
    for (std::size_t i = 0; i < m.size(); ++i)
      route.upstreams.push_back(read_upstream(r, m[i], json_path_index(p, i)));
  });
  with_member(v, "balance", path, [&](const json& m, const std::string& p) {
    auto s = r.string(m, p);
    if (!s) return;
    if (auto b = parse_balance(*s))
      route.balance = *b;
    else
      r.fail(p, "must be one of round_robin, least_conn, random, weighted; got " + quote(*s));
  });
  with_member(v, "host_header", path, [&](const json& m, const std::string& p) {
    auto s = r.string(m, p);
    if (!s) return;
    if (auto h = parse_host_header(*s))
      route.host_header = *h;
    else
      r.fail(p, "must be \"preserve\" or \"upstream\", got " + quote(*s));
  });
  with_member(v, "connect_timeout", path, [&](const json& m, const std::string& p) {
    if (auto d = r.duration(m, p)) route.connect_timeout = *d;
  });
  with_member(v, "read_timeout", path, [&](const json& m, const std::string& p) {
    if (auto d = r.duration(m, p)) route.read_timeout = *d;
  });
  with_member(v, "upstream_tls", path, [&](const json& m, const std::string& p) {
    if (!r.object(m, p, "upstream_tls")) return;
    with_member(m, "ca", p, [&](const json& f, const std::string& fp) {
      if (auto str = r.string(f, fp)) route.upstream_tls.ca = *str;
    });
    with_member(m, "insecure", p, [&](const json& f, const std::string& fp) {
      if (auto b = r.boolean(f, fp)) route.upstream_tls.insecure = *b;
    });
    with_member(m, "server_name", p, [&](const json& f, const std::string& fp) {
      if (auto str = r.string(f, fp)) route.upstream_tls.server_name = *str;
    });
  });
  with_member(v, "health_check", path, [&](const json& m, const std::string& p) {
    if (!r.object(m, p, "health_check")) return;
    route.health_check = read_health_check(r, m, p);
  });
  with_member(v, "passive_health", path, [&](const json& m, const std::string& p) {
    if (!r.object(m, p, "passive_health")) return;
    with_member(m, "max_fails", p, [&](const json& f, const std::string& fp) {
      if (auto n = r.unsigned_in(f, fp, 0, 1000)) route.passive_health.max_fails = static_cast<unsigned>(*n);
    });
    with_member(m, "eject_for", p, [&](const json& f, const std::string& fp) {
      if (auto d = r.duration(f, fp)) route.passive_health.eject_for = *d;
    });
  });
  with_member(v, "retries", path, [&](const json& m, const std::string& p) {
    if (!r.object(m, p, "retries")) return;
    with_member(m, "attempts", p, [&](const json& f, const std::string& fp) {
      if (auto n = r.unsigned_in(f, fp, 0, 10)) route.retries.attempts = static_cast<unsigned>(*n);
    });
    with_member(m, "backoff", p, [&](const json& f, const std::string& fp) {
      if (auto d = r.duration(f, fp)) route.retries.backoff = *d;
    });
    with_member(m, "on", p, [&](const json& f, const std::string& fp) {
      if (!r.array(f, fp, "retry conditions")) return;
      route.retries.on.clear();
      for (std::size_t i = 0; i < f.size(); ++i)
        if (auto str = r.string(f[i], json_path_index(fp, i))) route.retries.on.push_back(*str);
    });
  });
  with_member(v, "hold", path, [&](const json& m, const std::string& p) {
    if (auto d = r.duration(m, p)) route.hold = *d;
  });
  with_member(v, "stages", path,
              [&](const json& m, const std::string& p) { route.stages = read_stages(r, m, p); });
  return route;
}

Limits read_limits(Reader& r, const json& v, const std::string& path) {
  Limits limits;
  if (!r.object(v, path, "limits")) return limits;
  with_member(v, "max_conns", path, [&](const json& m, const std::string& p) {
    if (auto n = r.unsigned_in(m, p, 1, kMaxConns)) limits.max_conns = static_cast<std::uint32_t>(*n);
  });
  with_member(v, "max_body", path, [&](const json& m, const std::string& p) {
    if (auto n = r.size(m, p)) limits.max_body = *n;
  });
  const std::pair<std::string_view, Millis Limits::*> timeouts[] = {
      {"head_timeout", &Limits::head_timeout},   {"body_timeout", &Limits::body_timeout},
      {"idle_timeout", &Limits::idle_timeout},   {"write_timeout", &Limits::write_timeout},
      {"drain_timeout", &Limits::drain_timeout},
  };
  for (const auto& [key, member] : timeouts)
    with_member(v, key, path, [&, member = member](const json& m, const std::string& p) {
      if (auto d = r.duration(m, p)) limits.*member = *d;
    });
  with_member(v, "underscore_headers", path, [&](const json& m, const std::string& p) {
    if (auto mode = parse_underscore_headers(m.is_string() ? m.get<std::string>() : std::string()))
      limits.underscore_headers = *mode;
    else
      r.fail(p, "must be \"drop\", \"reject\" or \"allow\", got " + json_describe(m));
  });
  return limits;
}

Scenario read_scenario(Reader& r, const json& doc) {
  Scenario s;
  const std::string root;
  if (!r.object(doc, root, "scenario")) return s;
  if (!doc.contains("version")) r.fail("version", "required; must be 1");
  with_member(doc, "version", root, [&](const json& m, const std::string& p) {
    if (m.is_number_integer() && m.get<std::int64_t>() == kVersion) return;
    r.fail(p, "must be 1, got " + json_describe(m));
  });
  with_member(doc, "seed", root, [&](const json& m, const std::string& p) {
    if (auto n = r.unsigned_in(m, p, 0, std::numeric_limits<std::uint64_t>::max())) s.seed = *n;
  });
  with_member(doc, "listeners", root, [&](const json& m, const std::string& p) {
    if (!r.array(m, p, "listen addresses like \"127.0.0.1:8080\"")) return;
    s.listeners.clear();
    for (std::size_t i = 0; i < m.size(); ++i) {
      auto item_path = json_path_index(p, i);
      ListenAddress address;
      if (auto text = r.string(m[i], item_path))
        if (auto err = parse_listen_address(*text, address)) r.fail(item_path, *err);
      s.listeners.push_back(address);
    }
  });
  with_member(doc, "workers", root, [&](const json& m, const std::string& p) {
    if (auto n = r.unsigned_in(m, p, 0, kMaxWorkers)) s.workers = static_cast<unsigned>(*n);
  });
  with_member(doc, "limits", root,
              [&](const json& m, const std::string& p) { s.limits = read_limits(r, m, p); });
  with_member(doc, "access_log", root, [&](const json& m, const std::string& p) {
    if (!r.object(m, p, "access_log")) return;
    with_member(m, "path", p, [&](const json& f, const std::string& fp) {
      if (auto str = r.string(f, fp)) s.access_log.path = *str;
    });
    with_member(m, "format", p, [&](const json& f, const std::string& fp) {
      if (auto str = r.string(f, fp)) s.access_log.format = *str;
    });
  });
  with_member(doc, "report", root, [&](const json& m, const std::string& p) {
    if (auto str = r.string(m, p)) s.report = *str;
  });
  with_member(doc, "tls", root, [&](const json& m, const std::string& p) {
    if (!r.object(m, p, "tls")) return;
    with_member(m, "cert", p, [&](const json& f, const std::string& fp) {
      if (auto str = r.string(f, fp)) s.tls.cert = *str;
    });
    with_member(m, "key", p, [&](const json& f, const std::string& fp) {
      if (auto str = r.string(f, fp)) s.tls.key = *str;
    });
    with_member(m, "redirect_http", p, [&](const json& f, const std::string& fp) {
      auto str = r.string(f, fp);
      if (!str || str->empty()) return;  // "" = no redirect listener
      ListenAddress a;
      if (auto err = parse_listen_address(*str, a))
        r.fail(fp, *err);
      else
        s.tls.redirect_http = a;
    });
  });
  with_member(doc, "admin", root, [&](const json& m, const std::string& p) {
    auto str = r.string(m, p);
    if (!str || str->empty()) return;  // "" = no admin endpoint
    ListenAddress a;
    if (auto err = parse_listen_address(*str, a))
      r.fail(p, *err);
    else
      s.admin = a;
  });
  with_member(doc, "stages", root,
              [&](const json& m, const std::string& p) { s.stages = read_stages(r, m, p); });
  with_member(doc, "routes", root, [&](const json& m, const std::string& p) {
    if (!r.array(m, p, "routes")) return;
    for (std::size_t i = 0; i < m.size(); ++i) s.routes.push_back(read_route(r, m[i], json_path_index(p, i)));
  });
  return s;
}

// ---------------------------------------------------------------------------------------------------
// Pass 2: rules on the Scenario struct.

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
  });
}

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// RFC 3986 path characters: pchar and "/", with well-formed %XX escapes. Returns a message or "".
std::string check_path(std::string_view path) {
  if (path.empty() || path.front() != '/') return "must start with \"/\", got " + quote(path);
  if (path.find_first_of("?#") != std::string_view::npos)
    return "must be a path only, without \"?\" or \"#\" (the query is never matched or replaced), got " +
           quote(path);
  for (std::size_t i = 0; i < path.size(); ++i) {
    char c = path[i];
    if (c == '%') {
      if (i + 2 >= path.size() || !is_hex(path[i + 1]) || !is_hex(path[i + 2]))
        return "has a malformed %-escape: " + quote(path);
      continue;
    }
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              std::string_view("-._~!$&'()*+,;=:@/").find(c) != std::string_view::npos;
    if (!ok) return "contains a character not allowed in a URL path (percent-encode it): " + quote(path);
  }
  return "";
}

// A match host is a plain name or "*." + name; the port of the Host header is ignored when matching.
std::string check_match_host(const std::string& host) {
  if (host.find(':') != std::string::npos)
    return "must be a host name without a port (the port is ignored when matching), got " + quote(host);
  std::string_view name = host;
  if (name.starts_with("*.")) name.remove_prefix(2);
  // parse_url's host rules, reused through a synthetic URL rather than duplicated.
  Url probe;
  if (name.find_first_of("/?#@[]") != std::string_view::npos ||
      parse_url("http://" + std::string(name), probe))
    return "must be a host name or \"*.suffix\", got " + quote(host);
  return "";
}

class Validator {
 public:
  Validator(const StageRegistry& registry, const std::vector<std::string>& broken,
            std::vector<std::string>& problems)
      : registry_(registry), broken_(broken), problems_(problems) {}

  void run(const Scenario& s) {
    scenario_ = &s;
    if (s.version != kVersion) report("version", "must be 1, got " + std::to_string(s.version));
    check_listeners(s.listeners);
    if (s.workers > kMaxWorkers) report("workers", range_message(0, kMaxWorkers, std::to_string(s.workers)));
    check_limits(s.limits);
    if (s.admin && !is_loopback_host(s.admin->host))
      report("admin", "the admin endpoint listens on loopback only (127.0.0.1, ::1 or localhost), got " +
                          quote(s.admin->to_string()));
    else if (s.admin && s.admin->tls)
      report("admin", "the admin endpoint speaks plain HTTP on loopback; drop \"https://\"");
    check_tls(s);
    if (s.access_log.format != "text" && s.access_log.format != "json")
      report("access_log.format", "must be \"text\" or \"json\", got " + quote(s.access_log.format));
    check_stages(s.stages, "stages", {}, nullptr);
    std::vector<std::string> global_names;
    for (const auto& st : s.stages) global_names.push_back(st.name);
    if (s.routes.empty()) report("routes", "at least one route is required");
    std::map<std::string, std::size_t> route_names;
    for (std::size_t i = 0; i < s.routes.size(); ++i) {
      auto path = json_path_index("routes", i);
      check_route(s.routes[i], path, global_names);
      const auto& name = s.routes[i].name;
      if (broken(path + ".name") || !valid_name(name)) continue;
      auto [it, inserted] = route_names.emplace(name, i);
      if (!inserted)
        report(path + ".name",
               "duplicate route name " + quote(name) + " (also routes[" + std::to_string(it->second) + "])");
    }
  }

 private:
  // broken tells whether pass 1 already reported something at, inside or around path.
  bool broken(std::string_view path) const {
    return std::any_of(broken_.begin(), broken_.end(),
                       [&](const std::string& b) { return related(path, b); });
  }

  void report(const std::string& path, const std::string& message) {
    if (!broken(path)) problems_.push_back(path + ": " + message);
  }

  void check_listeners(const std::vector<ListenAddress>& listeners) {
    if (listeners.empty()) report("listeners", "at least one listen address is required");
    for (std::size_t i = 0; i < listeners.size(); ++i) {
      // Port 0 asks the kernel for a fresh port each time, so two of them never collide.
      if (listeners[i].port == 0 || broken(json_path_index("listeners", i))) continue;
      for (std::size_t j = 0; j < i; ++j) {
        if (listeners[j] == listeners[i] && !broken(json_path_index("listeners", j))) {
          report(json_path_index("listeners", i),
                 "duplicate of listeners[" + std::to_string(j) + "] (" + listeners[i].to_string() + ")");
          break;
        }
      }
    }
  }

  void check_tls(const Scenario& s) {
    bool any_tls = std::any_of(s.listeners.begin(), s.listeners.end(), [](const auto& l) { return l.tls; });
    if (s.tls.cert.empty() != s.tls.key.empty())
      report(s.tls.cert.empty() ? "tls.cert" : "tls.key",
             "tls.cert and tls.key go together (both empty = a certificate from rproxy's local CA)");
    if (!s.tls.redirect_http) return;
    const auto& r = *s.tls.redirect_http;
    if (!any_tls)
      report("tls.redirect_http", "redirects to an https:// listener, and there is none (use --tls or https://ADDR)");
    if (r.tls) report("tls.redirect_http", "is the plain HTTP listener; drop \"https://\"");
    for (std::size_t i = 0; i < s.listeners.size(); ++i)
      if (r.port != 0 && s.listeners[i].host == r.host && s.listeners[i].port == r.port)
        report("tls.redirect_http", "same address as listeners[" + std::to_string(i) + "] (" + r.to_string() + ")");
  }

  void check_health(const Route& route, const std::string& path) {
    if (const auto& hc = route.health_check) {
      auto err = check_path(hc->path);
      if (!err.empty()) report(path + ".health_check.path", err);
      positive(hc->interval, path + ".health_check.interval");
      positive(hc->timeout, path + ".health_check.timeout");
    }
    if (route.passive_health.max_fails > 0) positive(route.passive_health.eject_for, path + ".passive_health.eject_for");
    for (std::size_t i = 0; i < route.retries.on.size(); ++i) {
      const auto& c = route.retries.on[i];
      if (!is_retry_condition(c))
        report(json_path_index(path + ".retries.on", i),
               "must be \"connect\", \"reset\", \"timeout\", \"5xx\" or a status from 500 to 599, got " + quote(c));
    }
    bool any_primary = std::any_of(route.upstreams.begin(), route.upstreams.end(), [](const auto& u) { return !u.backup; });
    if (!route.upstreams.empty() && !any_primary)
      report(path + ".upstreams", "every upstream is a backup; at least one must not be");
  }

  void check_upstream_tls(const Route& route, const std::string& path) {
    const auto& t = route.upstream_tls;
    if (t.insecure && !t.ca.empty())
      report(path + ".upstream_tls", "ca and insecure contradict each other: insecure skips verification");
    if (!t.server_name.empty()) {
      Url probe;
      if (t.server_name.find_first_of("/?#@[]:") != std::string::npos || parse_url("http://" + t.server_name, probe))
        report(path + ".upstream_tls.server_name", "must be a host name or IP address, got " + quote(t.server_name));
    }
  }

  void positive(Millis d, const std::string& path) {
    if (d.count() <= 0) report(path, "must be greater than 0, got " + quote(format_duration(d)));
  }

  void check_limits(const Limits& l) {
    if (l.max_conns < 1 || l.max_conns > kMaxConns)
      report("limits.max_conns", range_message(1, kMaxConns, std::to_string(l.max_conns)));
    positive(l.head_timeout, "limits.head_timeout");
    positive(l.body_timeout, "limits.body_timeout");
    positive(l.idle_timeout, "limits.idle_timeout");
    positive(l.write_timeout, "limits.write_timeout");
    // Zero drain is meaningful: stop right away, cutting in-flight exchanges.
    if (l.drain_timeout.count() < 0)
      report("limits.drain_timeout", "must not be negative, got " + quote(format_duration(l.drain_timeout)));
  }

  // reserved are the names of the stages that run before this list in the same pipeline.
  void check_stages(const std::vector<StageSpec>& stages, const std::string& path,
                    const std::vector<std::string>& reserved, const Route* route) {
    std::map<std::string, std::size_t> names;
    for (std::size_t i = 0; i < stages.size(); ++i) {
      const auto& st = stages[i];
      auto item = json_path_index(path, i);
      if (broken(item + ".type")) continue;  // without a type nothing else about the stage can be checked
      const StageInfo* info = registry_.find(st.type);
      if (info == nullptr) {
        std::string known;
        for (const auto& k : registry_.all()) known += (known.empty() ? "" : ", ") + k.type;
        report(item + ".type", "unknown stage type " + quote(st.type) + " (known: " + known + ")");
      }
      check_stage_name(st.name, item + ".name", reserved, names, i);
      if (!st.params.is_object()) {
        report(item + ".params", "expected an object, got " + json_describe(st.params));
      } else if (info != nullptr && !broken(item + ".params")) {
        // The factory is the one parser of the params; the stage it builds is thrown away here and built
        // again by the engine, which keeps validation free of engine state.
        info->factory(st.params, item + ".params", StageContext{*scenario_, route}, problems_);
      }
    }
  }

  void check_stage_name(const std::string& name, const std::string& path,
                        const std::vector<std::string>& reserved, std::map<std::string, std::size_t>& names,
                        std::size_t index) {
    if (broken(path)) return;
    if (!valid_name(name)) {
      report(path, bad_name_message(name));
      return;
    }
    if (std::find(reserved.begin(), reserved.end(), name) != reserved.end()) {
      report(path,
             quote(name) + " is already the name of a scenario-wide stage (names are unique per pipeline)");
      return;
    }
    auto [it, inserted] = names.emplace(name, index);
    if (!inserted)
      report(path, "duplicate stage name " + quote(name) + " (also [" + std::to_string(it->second) + "])");
  }

  static std::string bad_name_message(const std::string& name) {
    if (name.empty()) return "must not be empty";
    return "must be 1-" + std::to_string(kMaxNameLength) + " letters, digits, \"_\", \"-\" or \".\", got " +
           quote(name);
  }

  void check_match(const RouteMatch& m, const std::string& path) {
    if (m.host) {
      auto err = check_match_host(*m.host);
      if (!err.empty()) report(path + ".host", err);
    }
    if (m.path_prefix) {
      auto err = check_path(*m.path_prefix);
      if (!err.empty()) report(path + ".path_prefix", err);
    }
    if (m.path) {
      auto err = check_path(*m.path);
      if (!err.empty()) report(path + ".path", err);
      if (m.path_prefix) report(path + ".path", "cannot be combined with path_prefix; use one of them");
    }
    for (std::size_t i = 0; i < m.methods.size(); ++i) {
      const auto& method = m.methods[i];
      auto item = json_path_index(path + ".methods", i);
      if (!is_token(method)) {
        report(item, "not a valid method: " + quote(method));
        continue;
      }
      auto upper = method;
      for (char& c : upper)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
      // Methods are case-sensitive (RFC 9110 §9.1): "get" is a different, unknown method, never GET.
      if (upper != method) {
        report(item, "methods are case-sensitive; write " + quote(upper) + ", got " + quote(method));
        continue;
      }
      if (std::find(m.methods.begin(), m.methods.begin() + static_cast<std::ptrdiff_t>(i), method) !=
          m.methods.begin() + static_cast<std::ptrdiff_t>(i))
        report(item, quote(method) + " is listed twice");
    }
    std::vector<std::string> seen;
    for (const auto& [name, value] : m.headers) {
      auto item = json_path_key(path + ".headers", name);
      if (!is_token(name)) {
        report(item, "not a valid header name");
        continue;
      }
      if (value != "*" && !is_valid_field_value(value)) report(item, "value contains a control character");
      if (name.find('_') != std::string::npos && scenario_ &&
          scenario_->limits.underscore_headers != UnderscoreHeaders::Allow)
        report(item, "never matches: request fields with \"_\" in the name are " +
                         std::string(scenario_->limits.underscore_headers == UnderscoreHeaders::Drop ? "dropped"
                                                                                                     : "rejected") +
                         " (limits.underscore_headers is " + to_string(scenario_->limits.underscore_headers) + ")");
      // An init-capture: clang 14 (scripts/fuzz.sh) cannot capture a structured binding itself.
      auto dup = std::find_if(seen.begin(), seen.end(),
                              [&name = name](const std::string& s) { return iequals(s, name); });
      if (dup != seen.end())
        report(item, "same header as " + quote(*dup) + " (names are case-insensitive)");
      else
        seen.push_back(name);
    }
  }

  void check_upstreams(const Route& route, const std::string& path) {
    auto list = path + ".upstreams";
    if (route.upstreams.empty() && !answers_locally(route))
      report(list, "at least one upstream is required (unless a stage such as replay answers every request)");
    bool balance_ok = !broken(path + ".balance");
    for (std::size_t i = 0; i < route.upstreams.size(); ++i) {
      const auto& up = route.upstreams[i];
      auto item = json_path_index(list, i);
      if (up.url.host.empty()) {
        report(item, "missing URL");
        continue;
      }
      if (!up.name.empty() && !valid_name(up.name)) report(item + ".name", bad_name_message(up.name));
      if (up.weight < 1 || up.weight > kMaxWeight)
        report(item + ".weight", range_message(1, kMaxWeight, std::to_string(up.weight)));
      else if (up.weight != 1 && route.balance != Balance::Weighted && balance_ok)
        report(item + ".weight", "only used with \"balance\": \"weighted\" (this route balances " +
                                     to_string(route.balance) + ")");
      if (broken(item + ".url")) continue;
      if (auto l = own_listener(up.url))
        report(item, up.url.text + " is rproxy's own listener (listeners[" + std::to_string(*l) +
                         "]): every request would come back to rproxy in a loop");
      for (std::size_t j = 0; j < i; ++j) {
        const auto& other = route.upstreams[j].url;
        // Differently named upstreams may share a URL (two variants on one backend during a rollout).
        if (broken(json_path_index(list, j) + ".url") || other.scheme != up.url.scheme ||
            other.host != up.url.host || other.port != up.url.port || route.upstreams[j].name != up.name)
          continue;
        report(item, "same upstream as upstreams[" + std::to_string(j) + "] (use weights to favour one)");
        break;
      }
    }
  }

  void check_route(const Route& route, const std::string& path,
                   const std::vector<std::string>& global_names) {
    if (!valid_name(route.name)) report(path + ".name", bad_name_message(route.name));
    check_match(route.match, path + ".match");
    if (route.strip_prefix && !route.match.path_prefix && !broken(path + ".match"))
      report(path + ".strip_prefix", "requires match.path_prefix (there is no prefix to strip)");
    if (route.rewrite) {
      auto err = check_path(*route.rewrite);
      if (!err.empty()) report(path + ".rewrite", err);
      if (route.strip_prefix)
        report(path + ".rewrite", "cannot be combined with strip_prefix; use one of them");
    }
    check_upstreams(route, path);
    check_upstream_tls(route, path);
    check_health(route, path);
    positive(route.connect_timeout, path + ".connect_timeout");
    positive(route.read_timeout, path + ".read_timeout");
    check_stages(route.stages, path + ".stages", global_names, &route);
  }

  // own_listener: the listener an upstream URL certainly reaches on this machine, if any: the same port and
  // the same address; a wildcard listener (IPv6 ones are v6-only) and a loopback address of its family;
  // or "localhost", which resolves to the loopback addresses of both families.
  std::optional<std::size_t> own_listener(const Url& url) const {
    if (!scenario_) return std::nullopt;
    auto v6 = [](const std::string& h) { return h.find(':') != std::string::npos; };
    auto wildcard = [](const std::string& h) { return h == "0.0.0.0" || h == "::" || h == "::0"; };
    for (std::size_t i = 0; i < scenario_->listeners.size(); ++i) {
      const auto& l = scenario_->listeners[i];
      if (l.port == 0 || l.port != url.port) continue;
      bool listens_loopback = wildcard(l.host) || is_loopback_host(l.host);
      bool same = url.host == l.host || (iequals(l.host, "localhost") && url.host == "127.0.0.1");
      bool via_wildcard = wildcard(l.host) && v6(l.host) == v6(url.host) &&
                          (is_loopback_host(url.host) || wildcard(url.host)) && !iequals(url.host, "localhost");
      bool via_localhost = iequals(url.host, "localhost") && listens_loopback;
      if (same || via_wildcard || via_localhost) return i;
    }
    return std::nullopt;
  }

  // A route whose pipeline holds a stage that answers every request itself needs no upstream.
  bool answers_locally(const Route& route) const {
    auto local = [&](const StageSpec& st) {
      const auto* info = registry_.find(st.type);
      return info != nullptr && info->answers_locally;
    };
    return std::any_of(route.stages.begin(), route.stages.end(), local) ||
           (scenario_ && std::any_of(scenario_->stages.begin(), scenario_->stages.end(), local));
  }

  const StageRegistry& registry_;
  const Scenario* scenario_ = nullptr;
  const std::vector<std::string>& broken_;
  std::vector<std::string>& problems_;
};

// ---------------------------------------------------------------------------------------------------
// Default names.

std::string unique_name(const std::string& base, std::set<std::string>& taken) {
  std::string name = base;
  for (int n = 2; taken.count(name) != 0; ++n) name = base + "_" + std::to_string(n);
  taken.insert(name);
  return name;
}

std::string derived_route_name(const RouteMatch& m) {
  const std::optional<std::string>& source = m.path_prefix ? m.path_prefix : m.path;
  if (!source) return "default";
  std::string_view p = *source;
  while (!p.empty() && p.front() == '/') p.remove_prefix(1);
  while (!p.empty() && p.back() == '/') p.remove_suffix(1);
  if (p.empty()) return "root";
  std::string name;
  for (char c : p.substr(0, kMaxNameLength)) {
    bool keep =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
    name += keep ? c : '_';
  }
  return name;
}

void fill_stage_names(std::vector<StageSpec>& stages, std::set<std::string>& taken) {
  for (const auto& st : stages)
    if (!st.name.empty()) taken.insert(st.name);
  for (auto& st : stages)
    if (st.name.empty()) st.name = unique_name(st.type.empty() ? "stage" : st.type, taken);
}

// ---------------------------------------------------------------------------------------------------
// Output.

json stages_to_json(const std::vector<StageSpec>& stages) {
  json out = json::array();
  for (const auto& st : stages) out.push_back({{"type", st.type}, {"name", st.name}, {"params", st.params}});
  return out;
}

json route_to_json(const Route& r) {
  json match = json::object();
  if (r.match.host) match["host"] = *r.match.host;
  if (r.match.path_prefix) match["path_prefix"] = *r.match.path_prefix;
  if (r.match.path) match["path"] = *r.match.path;
  if (!r.match.methods.empty()) match["methods"] = r.match.methods;
  if (!r.match.headers.empty()) match["headers"] = r.match.headers;
  json upstreams = json::array();
  for (const auto& up : r.upstreams) {
    // text is what the user wrote and is part of Url equality; scenarios built in code may leave it empty.
    std::string url = up.url.text.empty() ? up.url.scheme + "://" + up.url.authority() : up.url.text;
    json item = {{"url", url}, {"weight", up.weight}};
    if (!up.name.empty()) item["name"] = up.name;
    if (up.backup) item["backup"] = true;
    upstreams.push_back(std::move(item));
  }
  json out = {{"name", r.name},
              {"match", match},
              {"strip_prefix", r.strip_prefix},
              {"upstreams", upstreams},
              {"balance", to_string(r.balance)},
              {"host_header", to_string(r.host_header)},
              {"connect_timeout", format_duration(r.connect_timeout)},
              {"read_timeout", format_duration(r.read_timeout)},
              {"stages", stages_to_json(r.stages)}};
  if (r.rewrite) out["rewrite"] = *r.rewrite;
  out["upstream_tls"] = {{"ca", r.upstream_tls.ca},
                         {"insecure", r.upstream_tls.insecure},
                         {"server_name", r.upstream_tls.server_name}};
  if (const auto& hc = r.health_check) {
    out["health_check"] = {{"path", hc->path},
                           {"interval", format_duration(hc->interval)},
                           {"timeout", format_duration(hc->timeout)},
                           {"healthy_threshold", hc->healthy_threshold},
                           {"unhealthy_threshold", hc->unhealthy_threshold},
                           {"expect_status", hc->expect_min == hc->expect_max
                                                 ? std::to_string(hc->expect_min)
                                                 : std::to_string(hc->expect_min) + "-" + std::to_string(hc->expect_max)}};
  }
  out["passive_health"] = {{"max_fails", r.passive_health.max_fails},
                           {"eject_for", format_duration(r.passive_health.eject_for)}};
  out["retries"] = {{"attempts", r.retries.attempts},
                    {"backoff", format_duration(r.retries.backoff)},
                    {"on", r.retries.on}};
  out["hold"] = format_duration(r.hold);
  return out;
}

// Duplicate keys are legal JSON that nlohmann resolves silently (last wins); in a config file the first
// one is then ignored without a word, so report them. Tracks the path of every element while parsing.
class DuplicateKeyFinder {
 public:
  explicit DuplicateKeyFinder(std::vector<std::string>& problems) : problems_(problems) {}

  bool operator()(int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start: {
        Frame frame;
        frame.is_array = event == json::parse_event_t::array_start;
        frame.path = element_path();
        frames_.push_back(std::move(frame));
        break;
      }
      case json::parse_event_t::key: {
        auto& frame = frames_.back();
        frame.key = parsed.get<std::string>();
        if (!frame.keys.insert(frame.key).second)
          problems_.push_back(json_path_key(frame.path, frame.key) +
                              ": duplicate key (only the last one would count)");
        break;
      }
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        frames_.pop_back();
        break;
      case json::parse_event_t::value:
        element_path();  // advances the index of an enclosing array
        break;
    }
    return true;
  }

 private:
  struct Frame {
    bool is_array = false;
    std::string path;
    std::size_t next_index = 0;
    std::string key;
    std::set<std::string> keys;
  };

  std::string element_path() {
    if (frames_.empty()) return "";
    auto& parent = frames_.back();
    if (parent.is_array) return json_path_index(parent.path, parent.next_index++);
    return json_path_key(parent.path, parent.key);
  }

  std::vector<std::string>& problems_;
  std::vector<Frame> frames_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Public API.

namespace {
std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) {
    if (!out.empty()) out += '\n';
    out += l;
  }
  return out;
}
}  // namespace

ConfigError::ConfigError(std::vector<std::string> problems)
    : std::runtime_error(join_lines(problems)), problems_(std::move(problems)) {}

std::string json_path_key(std::string_view base, std::string_view key) {
  bool plain = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
  if (!plain) return std::string(base) + "[" + quote(key) + "]";
  if (base.empty()) return std::string(key);
  return std::string(base) + "." + std::string(key);
}

std::string json_path_index(std::string_view base, std::size_t index) {
  return std::string(base) + "[" + std::to_string(index) + "]";
}

std::string json_describe(const json& value) {
  if (value.is_object()) return "an object";
  if (value.is_array()) return "an array";
  auto text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  constexpr std::size_t kMax = 60;
  if (text.size() > kMax) text = text.substr(0, kMax - 3) + "...";
  return text;
}

bool is_valid_scenario_name(std::string_view name) { return valid_name(name); }

const std::vector<std::string>& scenario_json_keys(std::string_view object) {
  auto it = key_table().find(object);
  if (it == key_table().end())
    throw std::out_of_range("scenario_json_keys: no object kind " + std::string(object));
  return it->second;
}

void fill_default_names(Scenario& s) {
  std::set<std::string> route_names;
  for (const auto& r : s.routes)
    if (!r.name.empty()) route_names.insert(r.name);
  for (auto& r : s.routes)
    if (r.name.empty()) r.name = unique_name(derived_route_name(r.match), route_names);

  std::set<std::string> global;
  fill_stage_names(s.stages, global);
  for (auto& r : s.routes) {
    std::set<std::string> taken = global;
    fill_stage_names(r.stages, taken);
  }
}

Scenario scenario_from_json(const json& doc) {
  return scenario_from_json(doc, builtin_stage_registry());
}

Scenario scenario_from_json(const json& doc, const StageRegistry& registry) {
  std::vector<std::string> problems;
  Reader reader(problems);
  Scenario s = read_scenario(reader, doc);
  fill_default_names(s);
  Validator(registry, reader.failed_paths(), problems).run(s);
  if (!problems.empty()) throw ConfigError(std::move(problems));
  return s;
}

std::vector<std::string> validate_scenario(const Scenario& s) {
  return validate_scenario(s, builtin_stage_registry());
}

std::vector<std::string> validate_scenario(const Scenario& s, const StageRegistry& registry) {
  std::vector<std::string> problems;
  const std::vector<std::string> none;
  Validator(registry, none, problems).run(s);
  return problems;
}

json scenario_to_json(const Scenario& s) {
  json listeners = json::array();
  for (const auto& l : s.listeners) listeners.push_back(l.to_string());
  json routes = json::array();
  for (const auto& r : s.routes) routes.push_back(route_to_json(r));
  json out = {
      {"version", s.version},
      {"seed", s.seed},
      {"listeners", listeners},
      {"workers", s.workers},
      {"limits",
       {{"max_conns", s.limits.max_conns},
        {"max_body", s.limits.max_body},
        {"head_timeout", format_duration(s.limits.head_timeout)},
        {"body_timeout", format_duration(s.limits.body_timeout)},
        {"idle_timeout", format_duration(s.limits.idle_timeout)},
        {"write_timeout", format_duration(s.limits.write_timeout)},
        {"drain_timeout", format_duration(s.limits.drain_timeout)},
        {"underscore_headers", to_string(s.limits.underscore_headers)}}},
      {"access_log", {{"path", s.access_log.path}, {"format", s.access_log.format}}},
      {"report", s.report},
      {"stages", stages_to_json(s.stages)},
      {"routes", routes},
  };
  out["admin"] = s.admin ? s.admin->to_string() : std::string();
  out["tls"] = {{"cert", s.tls.cert},
                {"key", s.tls.key},
                {"redirect_http", s.tls.redirect_http ? s.tls.redirect_http->to_string() : std::string()}};
  return out;
}

Scenario load_scenario(const std::string& path) {
  // A directory opens fine as a stream on Linux and then reads as empty, which would surface as a baffling
  // "invalid JSON" at 1:1.
  std::error_code ignored;
  if (std::filesystem::is_directory(path, ignored))
    throw ConfigError({path + ": cannot read: is a directory"});
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError({path + ": cannot read: " + std::strerror(errno)});
  std::ostringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();

  std::vector<std::string> problems;  // duplicate keys first: they explain surprises further down
  json doc;
  try {
    doc = json::parse(text, DuplicateKeyFinder(problems));
  } catch (const json::parse_error& e) {
    // Position from the byte offset rather than from e.what(), whose wording is the library's business.
    // e.byte is the 1-based offset of the offending character; `before` counts the characters ahead of it.
    std::size_t before = std::min<std::size_t>(e.byte == 0 ? 0 : e.byte - 1, text.size());
    auto line = 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(before), '\n');
    auto last_newline = before == 0 ? std::string::npos : text.rfind('\n', before - 1);
    std::size_t column = last_newline == std::string::npos ? before + 1 : before - last_newline;
    std::string detail = e.what();
    auto column_at = detail.find(", column ");
    auto colon = column_at == std::string::npos ? std::string::npos : detail.find(": ", column_at);
    if (colon != std::string::npos) detail = detail.substr(colon + 2);
    throw ConfigError(
        {path + ":" + std::to_string(line) + ":" + std::to_string(column) + ": invalid JSON: " + detail});
  }
  try {
    Scenario s = scenario_from_json(doc);
    if (problems.empty()) return s;
  } catch (const ConfigError& e) {
    problems.insert(problems.end(), e.problems().begin(), e.problems().end());
  }
  throw ConfigError(std::move(problems));
}

}  // namespace rproxy
