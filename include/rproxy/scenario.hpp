// Scenario: the whole description of one rproxy run. Subcommands build one from flags; `rproxy run FILE`
// loads one from JSON. Same scenario + same seed = same behaviour.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace rproxy {

class StageRegistry;  // stage.hpp; validation looks stage types up in one

using Millis = std::chrono::milliseconds;

// Url is a parsed http(s) upstream URL. Only scheme, host and port are meaningful for an upstream; a path
// is rejected by validation so nobody believes it is prepended.
struct Url {
  std::string scheme = "http";
  std::string host;  // without brackets for IPv6
  std::uint16_t port = 80;
  std::string text;  // as written, for logs and messages

  // authority renders host:port, bracketing IPv6 literals.
  std::string authority() const;
  bool operator==(const Url&) const = default;
};

// parse_url parses "http://host[:port]" / "https://..."; returns an error message or nullopt on success.
std::optional<std::string> parse_url(const std::string& text, Url& out);

// ListenAddress is host + port for a listener; "[::1]:8080", "127.0.0.1:8080", ":8080" (= 127.0.0.1).
// "https://127.0.0.1:8443" is a listener that speaks TLS (certificate from Scenario::tls).
struct ListenAddress {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
  bool tls = false;
  std::string to_string() const;  // "https://" prefix when tls
  bool operator==(const ListenAddress&) const = default;
};
std::optional<std::string> parse_listen_address(const std::string& text, ListenAddress& out);
// is_loopback_host: "localhost", 127.0.0.0/8, ::1 or a v4-mapped 127.x address (the admin endpoint's rule).
bool is_loopback_host(const std::string& host);

// Duration strings: "250ms", "2s", "1.5s", "1m", "2h", "0"; whole milliseconds, at most 8760h. A bare number
// other than 0 is an error. Returns an error message or nullopt.
std::optional<std::string> parse_duration(const std::string& text, Millis& out);
// format_duration prints the largest unit that divides exactly ("2s", "1m", "1500ms"; zero is "0s"), so the
// output always parses back to the same value.
std::string format_duration(Millis d);

// Byte sizes: "1048576", "512B", "1KB" (1000), "64KiB" (1024), "10MiB", "1.5GiB", "0" (= unlimited where
// documented). Units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB; the result must be whole bytes.
std::optional<std::string> parse_size(const std::string& text, std::uint64_t& out);

struct UpstreamSpec {
  Url url;
  unsigned weight = 1;
  // name labels the upstream for stages (a split variant names the upstreams it sends to); several
  // upstreams may share a name and are then balanced among themselves. "" = unnamed.
  std::string name;
  // backup: used only while every non-backup upstream of the route is down (ejected or failing checks).
  bool backup = false;
  bool operator==(const UpstreamSpec&) const = default;
};

enum class Balance { RoundRobin, LeastConn, Random, Weighted };
std::string to_string(Balance b);  // "round_robin", "least_conn", "random", "weighted"
// parse_balance is the inverse of to_string(Balance); nullopt for anything else (case-sensitive, as in JSON).
std::optional<Balance> parse_balance(std::string_view text);

enum class HostHeader { Preserve, Upstream };
std::string to_string(HostHeader h);  // "preserve", "upstream"
std::optional<HostHeader> parse_host_header(std::string_view text);

struct RouteMatch {
  std::optional<std::string> host;         // exact, case-insensitive, port ignored; "*.example.com" wildcard
  std::optional<std::string> path_prefix;  // segment-aware: "/api" matches /api, /api/x, not /apix
  std::optional<std::string> path;        // exact path (query ignored)
  std::vector<std::string> methods;        // empty = any
  std::map<std::string, std::string> headers;  // name → exact value ("*" = present)
  bool operator==(const RouteMatch&) const = default;
};

// StageSpec is the envelope of one stage: the pipeline owns type/name; params belong to the stage.
struct StageSpec {
  std::string type;
  std::string name;
  nlohmann::json params = nlohmann::json::object();
  bool operator==(const StageSpec&) const = default;
};

// UpstreamTls: how a route talks to its https:// upstreams. Verification is on unless insecure.
struct UpstreamTls {
  std::string ca;           // extra CA file (PEM) trusted besides the system store; "" = system store only
  bool insecure = false;    // skip certificate verification (a warning is printed at start)
  std::string server_name;  // SNI and verified name; "" = the upstream URL's host
  bool operator==(const UpstreamTls&) const = default;
};

// HealthCheck: active probes of each upstream of a route (GET path, expecting a status in
// [expect_min, expect_max]). An upstream is marked down after unhealthy_threshold failed probes in a row and
// up again after healthy_threshold passing ones; a down upstream gets no traffic while another is up.
struct HealthCheck {
  std::string path = "/";
  Millis interval{2000};
  Millis timeout{1000};
  unsigned healthy_threshold = 1;
  unsigned unhealthy_threshold = 2;
  int expect_min = 200;
  int expect_max = 399;
  bool operator==(const HealthCheck&) const = default;
};

// PassiveHealth: an upstream that fails max_fails exchanges in a row (timed out, reset before answering, TLS
// failure; a refused connection fails over at once and does not count) is ejected for eject_for; afterwards it gets traffic again, and its next failure ejects it
// again at once. max_fails 0 turns ejection off.
struct PassiveHealth {
  unsigned max_fails = 3;
  Millis eject_for{10000};
  bool operator==(const PassiveHealth&) const = default;
};

// Retries: how often a failed attempt is tried again (on another upstream when there is one), waiting
// backoff, 2×backoff, 4×backoff... between attempts. Only idempotent requests without a body are retried once
// something was sent; a connection that could not be opened is retried for any method (nothing was sent).
// on: "connect" (refused, failed, timed out), "reset" (closed before the response head), "timeout" (no
// response head within read_timeout), "5xx" or a code like "503" (the upstream's answer is discarded).
struct Retries {
  unsigned attempts = 0;
  Millis backoff{100};
  std::vector<std::string> on{"connect", "reset"};
  bool operator==(const Retries&) const = default;
};

struct Route {
  std::string name;
  RouteMatch match;
  bool strip_prefix = false;             // remove match.path_prefix before forwarding
  std::optional<std::string> rewrite;    // replace the path (query kept)
  std::vector<UpstreamSpec> upstreams;
  Balance balance = Balance::RoundRobin;
  HostHeader host_header = HostHeader::Preserve;
  Millis connect_timeout{5000};
  Millis read_timeout{60000};
  std::vector<StageSpec> stages;  // run after the scenario-wide stages
  UpstreamTls upstream_tls;
  std::optional<HealthCheck> health_check;
  PassiveHealth passive_health;
  Retries retries;
  // hold: while every upstream is down, idempotent requests wait up to this long for one to come back (a
  // dev server restarting) instead of failing at once; 0 = fail at once.
  Millis hold{0};
  bool operator==(const Route&) const = default;
};

// UnderscoreHeaders: what happens to request fields whose names contain "_". CGI-style backends (PHP,
// WSGI, Rack) read X_Auth and X-Auth as the same HTTP_X_AUTH, so a client could pass a field a stage or an
// edge check strips. Drop is nginx's default (underscores_in_headers off), Reject Envoy's edge profile.
enum class UnderscoreHeaders { Drop, Reject, Allow };
std::string to_string(UnderscoreHeaders u);  // "drop", "reject", "allow"
std::optional<UnderscoreHeaders> parse_underscore_headers(std::string_view text);

struct Limits {
  std::uint32_t max_conns = 1024;
  std::uint64_t max_body = 0;  // 0 = unlimited
  Millis head_timeout{10000};
  Millis body_timeout{30000};
  Millis idle_timeout{75000};
  Millis write_timeout{30000};
  Millis drain_timeout{30000};
  UnderscoreHeaders underscore_headers = UnderscoreHeaders::Drop;
  bool operator==(const Limits&) const = default;
};

struct AccessLog {
  std::string path;  // "" = off, "-" = stderr
  std::string format = "text";
  bool operator==(const AccessLog&) const = default;
};

// TlsConfig: the certificate of the TLS listeners, and an optional plain listener that redirects to them.
struct TlsConfig {
  std::string cert;  // PEM certificate chain; "" (with key "") = rproxy's local CA issues one for localhost
  std::string key;   // PEM private key
  std::optional<ListenAddress> redirect_http;  // answers every request with 308 to the first TLS listener
  bool operator==(const TlsConfig&) const = default;
};

struct Scenario {
  int version = 1;
  std::uint64_t seed = 1;
  std::vector<ListenAddress> listeners{ListenAddress{}};
  unsigned workers = 0;  // 0 = one event loop per core
  Limits limits;
  AccessLog access_log;
  std::string report;  // "" = none; else a JSON file written on exit with every stage's report
  // Live-control endpoint (loopback only): GET /report, /stages, /stages/<name>/... (fault rules).
  std::optional<ListenAddress> admin;
  TlsConfig tls;
  std::vector<StageSpec> stages;
  std::vector<Route> routes;
  bool operator==(const Scenario&) const = default;
};

// ConfigError collects every problem found, each prefixed by its JSON path or flag.
class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(std::vector<std::string> problems);
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  std::vector<std::string> problems_;
};

// scenario_from_json parses and validates; throws ConfigError listing every problem. Defaults are filled
// in, including route and stage names (see fill_default_names). The overload taking a registry checks stage
// types and params against it instead of builtin_stage_registry().
Scenario scenario_from_json(const nlohmann::json& doc);
Scenario scenario_from_json(const nlohmann::json& doc, const StageRegistry& registry);
// load_scenario reads a file (ConfigError on I/O or JSON syntax errors, naming the file and position;
// duplicate keys in one object are reported too, because the JSON library silently keeps the last one).
Scenario load_scenario(const std::string& path);
// scenario_to_json renders a scenario with every default filled in; from_json(to_json(s)) == s.
nlohmann::json scenario_to_json(const Scenario& s);
// validate_scenario checks every rule that can be checked on the struct itself: ranges, string formats
// (hosts, paths, methods, names), cross-field rules (routes have upstreams, strip_prefix needs a
// path_prefix, ...) and stage types and params. Returns "path: message" problems, empty when valid.
// Subcommands that build a Scenario from flags call it (after fill_default_names) before running.
std::vector<std::string> validate_scenario(const Scenario& s);
std::vector<std::string> validate_scenario(const Scenario& s, const StageRegistry& registry);

// fill_default_names names every unnamed route and stage, deterministically:
//   route: derived from match.path_prefix, else match.path ("/api/v1" -> "api_v1", "/" -> "root"), else
//          "default";
//   stage: its type.
// A name already taken (explicitly or earlier) gets "_2", "_3", ... appended. Route names are unique across
// the scenario; stage names are unique within the pipeline an exchange runs through (scenario-wide stages
// plus one route's stages), so logs and per-stage state never confuse two stages.
void fill_default_names(Scenario& s);

// is_valid_scenario_name: 1-64 letters, digits, "_", "-" or "." (route, stage, upstream and variant names).
bool is_valid_scenario_name(std::string_view name);

// json_path_key / json_path_index build the paths problems are prefixed with: "routes[0].match.host",
// "stages[1].params.request.set.X-A". Keys that are not plain identifiers are quoted: `headers["a b"]`.
// Stage factories use them for their params so every message looks the same.
std::string json_path_key(std::string_view base, std::string_view key);
std::string json_path_index(std::string_view base, std::size_t index);
// json_describe renders a value for "expected X, got Y" messages: scalars as JSON text (long strings cut),
// containers as "an object" / "an array" so one message never spills a whole subtree.
std::string json_describe(const nlohmann::json& value);

// scenario_json_keys lists the keys scenario_from_json accepts in one kind of object of the format:
// "scenario" (top level), "limits", "access_log", "tls", "stage", "route", "match", "upstream" (object
// form), "upstream_tls", "health_check", "passive_health", "retries".
// It is the parser's own table; the schema test compares it with scenarios/scenario.schema.json so the two
// cannot drift. Throws std::out_of_range for other names.
const std::vector<std::string>& scenario_json_keys(std::string_view object);

}  // namespace rproxy
