// Tests for the scenario model: value parsers, JSON reading, validation, round trips, the example files and
// the schema file.
#include "rproxy/scenario.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "rproxy/stage.hpp"
#include "support/problems.hpp"

using rproxy::test::Problems;
using nlohmann::json;
using rproxy::Balance;
using rproxy::ConfigError;
using rproxy::HostHeader;
using rproxy::ListenAddress;
using rproxy::Millis;
using rproxy::Scenario;
using rproxy::Url;

namespace {

namespace fs = std::filesystem;

const fs::path kSourceDir = RPROXY_SOURCE_DIR;

// The smallest valid document; tests add to it.
json minimal_doc() {
  return json{{"version", 1}, {"routes", {{{"upstreams", {"http://127.0.0.1:3000"}}}}}};
}

json doc_with_route(const json& route) {
  json doc = minimal_doc();
  doc["routes"] = json::array({route});
  return doc;
}

json route_with(const json& fields) {
  json route = {{"upstreams", {"http://127.0.0.1:3000"}}};
  route.update(fields);
  return route;
}


Problems problems_of(const json& doc) {
  try {
    (void)rproxy::scenario_from_json(doc);
  } catch (const ConfigError& e) {
    return e.problems();
  }
  return {};
}

std::optional<std::string> url_error(const std::string& text) {
  Url url;
  return rproxy::parse_url(text, url);
}

std::optional<std::string> listen_error(const std::string& text) {
  ListenAddress address;
  return rproxy::parse_listen_address(text, address);
}

std::optional<std::string> duration_error(const std::string& text) {
  Millis d{};
  return rproxy::parse_duration(text, d);
}

std::optional<std::string> size_error(const std::string& text) {
  std::uint64_t n = 0;
  return rproxy::parse_size(text, n);
}

std::vector<fs::path> example_files() {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(kSourceDir / "scenarios"))
    if (entry.path().extension() == ".json" && entry.path().filename() != "scenario.schema.json")
      files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

json read_json(const fs::path& path) {
  std::ifstream in(path);
  REQUIRE(in);
  return json::parse(in);
}

// TempFile writes text to a file that is removed again when the test ends. name keeps files of different
// tests apart; the pid keeps concurrent runs (ctest -j runs one process per test) apart.
class TempFile {
 public:
  TempFile(const std::string& name, const std::string& text)
      : path_(fs::temp_directory_path() /
              ("rproxy_scenario_test_" + std::to_string(::getpid()) + "_" + name + ".json")) {
    std::ofstream(path_) << text;
  }
  ~TempFile() {
    std::error_code ignored;
    fs::remove(path_, ignored);
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  std::string path() const { return path_.string(); }

 private:
  fs::path path_;
};

std::string load_error(const std::string& path) {
  try {
    (void)rproxy::load_scenario(path);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

std::set<std::string> key_set(const json& properties) {
  std::set<std::string> keys;
  for (const auto& [key, value] : properties.items()) keys.insert(key);
  return keys;
}

std::set<std::string> parser_keys(std::string_view kind) {
  const auto& keys = rproxy::scenario_json_keys(kind);
  return {keys.begin(), keys.end()};
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// URLs

TEST_CASE("values: parse_url accepts http and https with default ports") {
  Url url;
  REQUIRE_FALSE(rproxy::parse_url("http://127.0.0.1:3000", url));
  CHECK(url.scheme == "http");
  CHECK(url.host == "127.0.0.1");
  CHECK(url.port == 3000);
  CHECK(url.text == "http://127.0.0.1:3000");

  REQUIRE_FALSE(rproxy::parse_url("http://example.com", url));
  CHECK(url.port == 80);
  REQUIRE_FALSE(rproxy::parse_url("https://example.com", url));
  CHECK(url.scheme == "https");
  CHECK(url.port == 443);
  REQUIRE_FALSE(rproxy::parse_url("https://example.com:8443/", url));
  CHECK(url.port == 8443);
  CHECK(url.text == "https://example.com:8443/");
  REQUIRE_FALSE(rproxy::parse_url("HTTP://App.Localhost:3000", url));
  CHECK(url.scheme == "http");
  CHECK(url.host == "app.localhost");
  REQUIRE_FALSE(rproxy::parse_url("http://my_service:80", url));
  CHECK(url.host == "my_service");
}

TEST_CASE("values: parse_url accepts IPv6 in brackets") {
  Url url;
  REQUIRE_FALSE(rproxy::parse_url("http://[::1]:3000", url));
  CHECK(url.host == "::1");
  CHECK(url.port == 3000);
  CHECK(url.authority() == "[::1]:3000");
  REQUIRE_FALSE(rproxy::parse_url("https://[2001:db8::2]", url));
  CHECK(url.host == "2001:db8::2");
  CHECK(url.port == 443);
}

TEST_CASE("values: Url authority always has the port") {
  CHECK(Url{"http", "example.com", 80, ""}.authority() == "example.com:80");
  CHECK(Url{"https", "fe80::1", 8443, ""}.authority() == "[fe80::1]:8443");
}

TEST_CASE("values: parse_url rejects other schemes") {
  CHECK(url_error("htp://x") == R"("htp://x" is not an http(s) URL)");
  CHECK(url_error("ftp://example.com") == R"("ftp://example.com" is not an http(s) URL)");
  CHECK(url_error("127.0.0.1:3000") == R"("127.0.0.1:3000" is not an http(s) URL)");
  CHECK(url_error("") == R"("" is not an http(s) URL)");
  CHECK(url_error("http:/x").has_value());
}

TEST_CASE("values: parse_url rejects a path") {
  CHECK(url_error("http://x/api") == R"("http://x/api" has a path; upstream URLs are scheme://host[:port])");
  CHECK(url_error("http://x:3000//").has_value());
}

TEST_CASE("values: parse_url rejects userinfo and query and fragment") {
  CHECK(url_error("http://user:pw@x") ==
        R"("http://user:pw@x" has user info; upstream URLs are scheme://host[:port])");
  CHECK(url_error("http://x?a=1") == R"("http://x?a=1" has a query; upstream URLs are scheme://host[:port])");
  CHECK(url_error("http://x/#top") ==
        R"("http://x/#top" has a fragment; upstream URLs are scheme://host[:port])");
}

TEST_CASE("values: parse_url rejects bad hosts and ports") {
  CHECK(url_error("http://") == R"("http://" has no host)");
  CHECK(url_error("http://:3000") == R"("http://:3000" has no host)");
  CHECK(url_error("http://x:0") == R"("http://x:0" has an invalid port "0" (must be 1-65535))");
  CHECK(url_error("http://x:65536").has_value());
  CHECK(url_error("http://x:").has_value());
  CHECK(url_error("http://x:80a").has_value());
  CHECK(url_error("http://::1:3000") ==
        R"("http://::1:3000" has an IPv6 address without brackets; write it as [addr]:port)");
  CHECK(url_error("http://[::1") == R"("http://[::1" has an unclosed '[')");
  CHECK(url_error("http://[nope]:80") == R"("http://[nope]:80" has an invalid IPv6 address "nope")");
  CHECK(url_error("http://[fe80::1%25eth0]:80").has_value());
  CHECK(url_error("http://a b:80") == R"("http://a b:80" has an invalid host "a b")");
  CHECK(url_error("http://999.1.1.1").has_value());
  CHECK(url_error("http://a..b").has_value());
  Url untouched{"https", "keep", 1, "keep"};
  REQUIRE(rproxy::parse_url("nope", untouched));
  CHECK(untouched == Url{"https", "keep", 1, "keep"});
}

// ---------------------------------------------------------------------------------------------------
// Listen addresses

TEST_CASE("values: parse_listen_address accepts every documented form") {
  struct Case {
    std::string text;
    std::string host;
    std::uint16_t port;
  };
  for (const auto& c : std::vector<Case>{{"127.0.0.1:8080", "127.0.0.1", 8080},
                                         {"[::1]:9000", "::1", 9000},
                                         {"localhost:8080", "localhost", 8080},
                                         {":8080", "127.0.0.1", 8080},
                                         {"8080", "127.0.0.1", 8080},
                                         {"0.0.0.0:80", "0.0.0.0", 80},
                                         {"[::]:0", "::", 0},
                                         {"127.0.0.1:0", "127.0.0.1", 0},
                                         {"0", "127.0.0.1", 0}}) {
    CAPTURE(c.text);
    ListenAddress a;
    REQUIRE_FALSE(rproxy::parse_listen_address(c.text, a));
    CHECK(a.host == c.host);
    CHECK(a.port == c.port);
  }
}

TEST_CASE("values: parse_listen_address rejects bad input") {
  CHECK(listen_error("") == R"(expected a listen address like "127.0.0.1:8080", got "")");
  CHECK(listen_error("localhost") == R"("localhost" has no port; expected host:port like "127.0.0.1:8080")");
  CHECK(listen_error("::1:8080") ==
        R"("::1:8080" has an IPv6 address without brackets; write it as [addr]:port)");
  CHECK(listen_error("127.0.0.1:99999") ==
        R"("127.0.0.1:99999" has an invalid port "99999" (must be 0-65535))");
  CHECK(listen_error("70000") == R"("70000" has an invalid port (must be 0-65535))");
  CHECK(listen_error("[::1]") == R"("[::1]" has no port; expected host:port like "127.0.0.1:8080")");
  CHECK(listen_error("[::1]x:80").has_value());
  CHECK(listen_error("[]:80").has_value());
  CHECK(listen_error("a b:80") == R"("a b:80" has an invalid host "a b")");
  CHECK(listen_error("ftp://127.0.0.1:8080").has_value());
  CHECK(listen_error("https://").has_value());
  CHECK(listen_error("127.0.0.1:").has_value());
}

TEST_CASE("values: an https:// listen address is a TLS listener and prints back the same") {
  ListenAddress a;
  REQUIRE_FALSE(rproxy::parse_listen_address("https://127.0.0.1:8443", a));
  CHECK(a.tls);
  CHECK(a.host == "127.0.0.1");
  CHECK(a.port == 8443);
  CHECK(a.to_string() == "https://127.0.0.1:8443");
  REQUIRE_FALSE(rproxy::parse_listen_address("https://[::1]:0/", a));
  CHECK(a.tls);
  CHECK(a.to_string() == "https://[::1]:0");
  // A pasted http:// URL is the plain listener it names.
  REQUIRE_FALSE(rproxy::parse_listen_address("http://localhost:9000", a));
  CHECK_FALSE(a.tls);
  CHECK(a.to_string() == "localhost:9000");
}

TEST_CASE("values: ListenAddress to_string brackets IPv6 and round trips") {
  CHECK(ListenAddress{}.to_string() == "127.0.0.1:8080");
  CHECK(ListenAddress{"::1", 9000}.to_string() == "[::1]:9000");
  for (const std::string text : {"127.0.0.1:8080", "[::1]:9000", "localhost:0", "[2001:db8::1]:443"}) {
    ListenAddress a;
    REQUIRE_FALSE(rproxy::parse_listen_address(text, a));
    CHECK(a.to_string() == text);
  }
}

// ---------------------------------------------------------------------------------------------------
// Durations and sizes

TEST_CASE("values: parse_duration accepts units and fractions") {
  struct Case {
    std::string text;
    long long ms;
  };
  for (const auto& c : std::vector<Case>{{"250ms", 250},
                                         {"2s", 2000},
                                         {"1.5s", 1500},
                                         {"1m", 60000},
                                         {"1.5m", 90000},
                                         {"2h", 7200000},
                                         {"0", 0},
                                         {"0s", 0},
                                         {"0ms", 0},
                                         {"0.001s", 1},
                                         {"1.250s", 1250},
                                         {"8760h", 31536000000}}) {
    CAPTURE(c.text);
    Millis d{-1};
    REQUIRE_FALSE(rproxy::parse_duration(c.text, d));
    CHECK(d.count() == c.ms);
  }
}

TEST_CASE("values: parse_duration rejects bare numbers and garbage") {
  CHECK(duration_error("10") == R"(expected a duration like "250ms", got "10")");
  for (const std::string bad :
       {"", "ms", "10 s", " 1s", "1S", "-1s", "1.s", ".5s", "1d", "1e3ms", "1s2", "+1s", "00x"}) {
    CAPTURE(bad);
    auto err = duration_error(bad);
    REQUIRE(err.has_value());
    CHECK(err->starts_with("expected a duration like \"250ms\", got "));
  }
  CHECK(duration_error("0.5ms") == R"("0.5ms" is not a whole number of milliseconds)");
  CHECK(duration_error("8761h") == R"("8761h" is too long (at most 8760h))");
  CHECK(duration_error("99999999999999999999999s") ==
        R"("99999999999999999999999s" is too long (at most 8760h))");
}

TEST_CASE("values: format_duration is canonical and round trips") {
  CHECK(rproxy::format_duration(Millis{250}) == "250ms");
  CHECK(rproxy::format_duration(Millis{2000}) == "2s");
  CHECK(rproxy::format_duration(Millis{60000}) == "1m");
  CHECK(rproxy::format_duration(Millis{90000}) == "90s");
  CHECK(rproxy::format_duration(Millis{1500}) == "1500ms");
  CHECK(rproxy::format_duration(Millis{3600000}) == "1h");
  CHECK(rproxy::format_duration(Millis{0}) == "0s");
  CHECK(rproxy::format_duration(Millis{-2000}) == "-2s");
  for (long long ms :
       {0LL, 1LL, 999LL, 1000LL, 1001LL, 59999LL, 60000LL, 61000LL, 3600000LL, 5400000LL, 31536000000LL}) {
    CAPTURE(ms);
    Millis back{-1};
    REQUIRE_FALSE(rproxy::parse_duration(rproxy::format_duration(Millis{ms}), back));
    CHECK(back.count() == ms);
  }
}

TEST_CASE("values: parse_size accepts bytes and units") {
  struct Case {
    std::string text;
    std::uint64_t bytes;
  };
  for (const auto& c : std::vector<Case>{{"0", 0},
                                         {"1048576", 1048576},
                                         {"512B", 512},
                                         {"1KB", 1000},
                                         {"64KiB", 65536},
                                         {"10MiB", 10485760},
                                         {"1GiB", 1073741824},
                                         {"2GB", 2000000000},
                                         {"1TiB", 1099511627776},
                                         {"1.5KiB", 1536},
                                         {"1.5MB", 1500000},
                                         {"18446744073709551615", 18446744073709551615ull}}) {
    CAPTURE(c.text);
    std::uint64_t n = 1;
    REQUIRE_FALSE(rproxy::parse_size(c.text, n));
    CHECK(n == c.bytes);
  }
}

TEST_CASE("values: parse_size rejects garbage and overflow") {
  CHECK(size_error("abc") == R"(expected a size like "10MiB", got "abc")");
  for (const std::string bad : {"", "-1", "1 KiB", "1kib", "1XB", "1.5", "KiB", "1.KiB"}) {
    CAPTURE(bad);
    auto err = size_error(bad);
    REQUIRE(err.has_value());
    CHECK(err->starts_with("expected a size like \"10MiB\", got "));
  }
  CHECK(size_error("1.0001KB") == R"("1.0001KB" is not a whole number of bytes)");
  CHECK(size_error("18446744073709551616") == R"("18446744073709551616" is too large)");
  CHECK(size_error("20000000TiB") == R"("20000000TiB" is too large)");
}

TEST_CASE("values: Balance and HostHeader names round trip") {
  CHECK(rproxy::to_string(Balance::RoundRobin) == "round_robin");
  CHECK(rproxy::to_string(Balance::LeastConn) == "least_conn");
  CHECK(rproxy::to_string(Balance::Random) == "random");
  CHECK(rproxy::to_string(Balance::Weighted) == "weighted");
  for (auto b : {Balance::RoundRobin, Balance::LeastConn, Balance::Random, Balance::Weighted})
    CHECK(rproxy::parse_balance(rproxy::to_string(b)) == b);
  CHECK_FALSE(rproxy::parse_balance("Round_Robin"));
  CHECK(rproxy::to_string(HostHeader::Preserve) == "preserve");
  CHECK(rproxy::to_string(HostHeader::Upstream) == "upstream");
  CHECK(rproxy::parse_host_header("upstream") == HostHeader::Upstream);
  CHECK_FALSE(rproxy::parse_host_header("client"));
}

TEST_CASE("values: json paths quote keys that are not identifiers") {
  CHECK(rproxy::json_path_key("", "version") == "version");
  CHECK(rproxy::json_path_key("routes[0]", "match") == "routes[0].match");
  CHECK(rproxy::json_path_key("a", "X-Env") == "a.X-Env");
  CHECK(rproxy::json_path_key("a", "b c") == R"(a["b c"])");
  CHECK(rproxy::json_path_key("a", "b.c") == R"(a["b.c"])");
  CHECK(rproxy::json_path_key("a", "") == R"(a[""])");
  CHECK(rproxy::json_path_index("routes", 3) == "routes[3]");
  CHECK(rproxy::json_describe(json("x")) == R"("x")");
  CHECK(rproxy::json_describe(json::array()) == "an array");
  CHECK(rproxy::json_describe(json::object()) == "an object");
  CHECK(rproxy::json_describe(json(std::string(100, 'a'))).size() == 60);
}

// ---------------------------------------------------------------------------------------------------
// Reading documents

TEST_CASE("scenario: minimal document gets every default") {
  Scenario s = rproxy::scenario_from_json(minimal_doc());
  CHECK(s.version == 1);
  CHECK(s.seed == 1);
  CHECK(s.listeners == std::vector<ListenAddress>{ListenAddress{"127.0.0.1", 8080}});
  CHECK(s.workers == 0);
  CHECK(s.limits == rproxy::Limits{});
  CHECK(s.limits.head_timeout == Millis{10000});
  CHECK(s.access_log.path.empty());
  CHECK(s.access_log.format == "text");
  CHECK(s.stages.empty());
  REQUIRE(s.routes.size() == 1);
  const auto& r = s.routes[0];
  CHECK(r.name == "default");
  CHECK(r.match == rproxy::RouteMatch{});
  CHECK_FALSE(r.strip_prefix);
  CHECK_FALSE(r.rewrite);
  REQUIRE(r.upstreams.size() == 1);
  CHECK(r.upstreams[0].url.authority() == "127.0.0.1:3000");
  CHECK(r.upstreams[0].weight == 1);
  CHECK(r.balance == Balance::RoundRobin);
  CHECK(r.host_header == HostHeader::Preserve);
  CHECK(r.connect_timeout == Millis{5000});
  CHECK(r.read_timeout == Millis{60000});
}

TEST_CASE("scenario: every key is read") {
  Scenario s = rproxy::load_scenario((kSourceDir / "scenarios/full.json").string());
  CHECK(s.seed == 42);
  CHECK(s.listeners == std::vector<ListenAddress>{{"127.0.0.1", 8080}, {"::1", 8080}});
  CHECK(s.workers == 4);
  CHECK(s.limits.max_conns == 2048);
  CHECK(s.limits.max_body == 10 * 1024 * 1024);
  CHECK(s.limits.drain_timeout == Millis{5000});
  CHECK(s.access_log.path == "-");
  CHECK(s.access_log.format == "json");
  REQUIRE(s.stages.size() == 1);
  CHECK(s.stages[0].name == "tag_requests");
  REQUIRE(s.routes.size() == 2);
  const auto& api = s.routes[0];
  CHECK(api.match.host == "*.localhost");
  CHECK(api.match.path_prefix == "/api");
  CHECK(api.match.methods == std::vector<std::string>{"GET", "POST"});
  CHECK(api.match.headers == std::map<std::string, std::string>{{"X-Env", "dev"}});
  CHECK(api.strip_prefix);
  REQUIRE(api.upstreams.size() == 2);
  CHECK(api.upstreams[0].weight == 2);
  CHECK(api.upstreams[1].url.scheme == "https");
  CHECK(api.upstreams[1].url.host == "::1");
  CHECK(api.balance == Balance::Weighted);
  CHECK(api.host_header == HostHeader::Upstream);
  CHECK(api.connect_timeout == Millis{2000});
  CHECK(api.read_timeout == Millis{60000});
  REQUIRE(api.stages.size() == 1);
  CHECK(api.stages[0].type == "headers");
  CHECK(s.routes[1].match.path == "/old");
  CHECK(s.routes[1].rewrite == "/new");
}

TEST_CASE("scenario: tls and upstream_tls are read, validated and round trip") {
  json doc = minimal_doc();
  doc["listeners"] = {"https://127.0.0.1:8443", "127.0.0.1:8080"};
  doc["tls"] = {{"cert", "c.pem"}, {"key", "k.pem"}, {"redirect_http", "127.0.0.1:8081"}};
  doc["routes"][0]["upstreams"] = {"https://api.internal:8443"};
  doc["routes"][0]["upstream_tls"] = {{"ca", "ca.pem"}, {"server_name", "api.internal"}};
  Scenario s = rproxy::scenario_from_json(doc);
  CHECK(s.listeners[0].tls);
  CHECK_FALSE(s.listeners[1].tls);
  CHECK(s.tls.cert == "c.pem");
  CHECK(s.tls.key == "k.pem");
  REQUIRE(s.tls.redirect_http.has_value());
  CHECK(s.tls.redirect_http->port == 8081);
  CHECK(s.routes[0].upstream_tls.ca == "ca.pem");
  CHECK_FALSE(s.routes[0].upstream_tls.insecure);
  CHECK(s.routes[0].upstream_tls.server_name == "api.internal");
  CHECK(rproxy::scenario_from_json(rproxy::scenario_to_json(s)) == s);
  // Defaults: no TLS anywhere, and they round trip too.
  Scenario plain = rproxy::scenario_from_json(minimal_doc());
  CHECK(plain.tls == rproxy::TlsConfig{});
  CHECK(rproxy::scenario_from_json(rproxy::scenario_to_json(plain)) == plain);
}

TEST_CASE("scenario: tls mistakes are reported with their paths") {
  json half = minimal_doc();
  half["listeners"] = {"https://127.0.0.1:8443"};
  half["tls"] = {{"cert", "c.pem"}};
  CHECK(problems_of(half) ==
        Problems{"tls.key: tls.cert and tls.key go together (both empty = a certificate from rproxy's local CA)"});
  json redirect = minimal_doc();
  redirect["tls"] = {{"redirect_http", "127.0.0.1:8081"}};
  CHECK(problems_of(redirect) ==
        Problems{"tls.redirect_http: redirects to an https:// listener, and there is none (use --tls or https://ADDR)"});
  json clash = minimal_doc();
  clash["listeners"] = {"https://127.0.0.1:8443"};
  clash["tls"] = {{"redirect_http", "127.0.0.1:8443"}};
  CHECK(problems_of(clash) == Problems{"tls.redirect_http: same address as listeners[0] (127.0.0.1:8443)"});
  json both = minimal_doc();
  both["routes"][0]["upstream_tls"] = {{"ca", "ca.pem"}, {"insecure", true}};
  CHECK(problems_of(both) ==
        Problems{"routes[0].upstream_tls: ca and insecure contradict each other: insecure skips verification"});
  json name = minimal_doc();
  name["routes"][0]["upstream_tls"] = {{"server_name", "a/b"}};
  CHECK(problems_of(name) == Problems{R"(routes[0].upstream_tls.server_name: must be a host name or IP address, got "a/b")"});
  json typo = minimal_doc();
  typo["routes"][0]["upstream_tls"] = {{"insecur", true}};
  CHECK(problems_of(typo) == Problems{R"(routes[0].upstream_tls.insecur: unknown key; did you mean "insecure"?)"});
  json admin = minimal_doc();
  admin["admin"] = "https://127.0.0.1:9901";
  CHECK(problems_of(admin) == Problems{R"(admin: the admin endpoint speaks plain HTTP on loopback; drop "https://")"});
}

TEST_CASE("scenario: unknown key is reported with its path") {
  CHECK(problems_of(doc_with_route(route_with({{"matchh", json::object()}}))) ==
        Problems{R"(routes[0].matchh: unknown key; did you mean "match"?)"});
  json doc = minimal_doc();
  doc["frobnicate"] = true;
  doc["limits"] = {{"max_conn", 5}};
  CHECK(problems_of(doc) ==
        Problems{R"(frobnicate: unknown key)", R"(limits.max_conn: unknown key; did you mean "max_conns"?)"});
  CHECK(problems_of(doc_with_route(route_with({{"match", {{"host name", "x"}}}}))) ==
        Problems{R"(routes[0].match["host name"]: unknown key)"});
  CHECK(problems_of(doc_with_route(route_with({{"upstreams", {{{"url", "http://x"}, {"wieght", 2}}}}}))) ==
        Problems{R"(routes[0].upstreams[0].wieght: unknown key; did you mean "weight"?)"});
  json stage_doc = minimal_doc();
  stage_doc["stages"] = {{{"type", "headers"}, {"param", json::object()}}};
  CHECK(problems_of(stage_doc) == Problems{R"(stages[0].param: unknown key; did you mean "params"?)"});
  json log_doc = minimal_doc();
  log_doc["access_log"] = {{"file", "x"}};
  CHECK(problems_of(log_doc) == Problems{"access_log.file: unknown key"});
}

TEST_CASE("scenario: wrong JSON types name the expected type") {
  CHECK(problems_of(json::array()) == Problems{"(root): expected an object, got an array"});
  json doc = minimal_doc();
  doc["seed"] = -1;
  doc["workers"] = "4";
  doc["listeners"] = "127.0.0.1:8080";
  doc["limits"] = {{"max_conns", 1.5}, {"max_body", true}};
  doc["access_log"] = {{"path", 5}};
  CHECK(problems_of(doc) ==
        Problems{
            "seed: must be between 0 and 18446744073709551615, got -1",
            R"(listeners: expected an array of listen addresses like "127.0.0.1:8080", got "127.0.0.1:8080")",
            R"(workers: expected an unsigned integer, got "4")",
            "limits.max_conns: expected an unsigned integer, got 1.5",
            R"(limits.max_body: expected a size in bytes or a string like "10MiB", got true)",
            "access_log.path: expected a string, got 5",
        });
  CHECK(problems_of(doc_with_route(route_with({{"strip_prefix", "yes"},
                                               {"match", {{"path_prefix", "/a"}, {"methods", "GET"}}},
                                               {"rewrite", 1}}))) ==
        Problems{
            R"(routes[0].match.methods: expected an array of methods like "GET", got "GET")",
            R"(routes[0].strip_prefix: expected true or false, got "yes")",
            "routes[0].rewrite: expected a string, got 1",
        });
  CHECK(problems_of(doc_with_route({{"upstreams", {42}}})) ==
        Problems{R"(routes[0].upstreams[0]: expected an http(s) URL string or {"url": ..., "weight": ...}, )"
                 "got 42"});
  json routes_doc = minimal_doc();
  routes_doc["routes"] = {{"upstreams", "x"}};
  CHECK(problems_of(routes_doc) == Problems{"routes: expected an array of routes, got an object"});
  json route_not_object = minimal_doc();
  route_not_object["routes"] = {"http://x"};
  CHECK(problems_of(route_not_object) == Problems{R"(routes[0]: expected an object, got "http://x")"});
  json stages_doc = minimal_doc();
  stages_doc["stages"] = {{{"type", 1}}, {{"type", "headers"}, {"params", json::array()}}, "headers"};
  CHECK(problems_of(stages_doc) == Problems{
                                       "stages[0].type: expected a string, got 1",
                                       "stages[1].params: expected an object, got an array",
                                       R"(stages[2]: expected an object, got "headers")",
                                   });
  CHECK(problems_of(doc_with_route(route_with({{"match", {{"headers", {{"X-A", 1}}}}}}))) ==
        Problems{"routes[0].match.headers.X-A: expected a string, got 1"});
}

TEST_CASE("scenario: version is required and must be 1") {
  json doc = minimal_doc();
  doc.erase("version");
  CHECK(problems_of(doc) == Problems{"version: required; must be 1"});
  doc["version"] = 2;
  CHECK(problems_of(doc) == Problems{"version: must be 1, got 2"});
  doc["version"] = "1";
  CHECK(problems_of(doc) == Problems{R"(version: must be 1, got "1")"});
  Scenario s = rproxy::scenario_from_json(minimal_doc());
  s.version = 3;
  CHECK(rproxy::validate_scenario(s) == Problems{"version: must be 1, got 3"});
}

TEST_CASE("scenario: bad upstream URL is reported with its path") {
  json doc = minimal_doc();
  doc["routes"] = {route_with(json::object()), {{"upstreams", {"http://127.0.0.1:3000", "htp://x"}}}};
  CHECK(problems_of(doc) == Problems{R"(routes[1].upstreams[1]: "htp://x" is not an http(s) URL)"});
  CHECK(problems_of(doc_with_route({{"upstreams", {{{"url", "http://x/api"}}}}})) ==
        Problems{R"(routes[0].upstreams[0].url: "http://x/api" has a path; )"
                 "upstream URLs are scheme://host[:port]"});
  CHECK(problems_of(doc_with_route({{"upstreams", {{{"weight", 2}}}}})) ==
        Problems{R"(routes[0].upstreams[0].url: required (an http(s) URL like "http://127.0.0.1:3000"))"});
}

TEST_CASE("scenario: durations must carry a unit") {
  json doc = minimal_doc();
  doc["limits"] = {{"head_timeout", 10}};
  CHECK(problems_of(doc) == Problems{R"(limits.head_timeout: expected a duration like "250ms", got 10)"});
  doc["limits"] = {{"head_timeout", "10"}};
  CHECK(problems_of(doc) == Problems{R"(limits.head_timeout: expected a duration like "250ms", got "10")"});
  doc["limits"] = {{"drain_timeout", 0}, {"idle_timeout", "1.5m"}};
  Scenario s = rproxy::scenario_from_json(doc);
  CHECK(s.limits.drain_timeout == Millis{0});
  CHECK(s.limits.idle_timeout == Millis{90000});
  CHECK(problems_of(doc_with_route(route_with({{"read_timeout", "1x"}}))) ==
        Problems{R"(routes[0].read_timeout: expected a duration like "250ms", got "1x")"});
}

TEST_CASE("scenario: every problem is reported at once") {
  json doc = minimal_doc();
  doc["version"] = 2;
  doc["workers"] = 100;
  doc["routes"][0]["upstreams"] = {"htp://x"};
  Problems expected{
      "version: must be 1, got 2",
      "workers: must be between 0 and 64, got 100",
      R"(routes[0].upstreams[0]: "htp://x" is not an http(s) URL)",
  };
  CHECK(problems_of(doc) == expected);
  try {
    (void)rproxy::scenario_from_json(doc);
    FAIL("expected ConfigError");
  } catch (const ConfigError& e) {
    CHECK(std::string(e.what()) == expected[0] + "\n" + expected[1] + "\n" + expected[2]);
  }
}

TEST_CASE("scenario: parse and validation problems are reported together") {
  json doc = minimal_doc();
  doc["limits"] = {{"max_conns", 0}, {"head_timeout", "0s"}};
  doc["routes"] = {route_with({{"strip_prefix", true}, {"connect_timeout", "soon"}}), {{"name", "x y"}}};
  CHECK(problems_of(doc) ==
        Problems{
            "limits.max_conns: must be between 1 and 1000000, got 0",
            R"(routes[0].connect_timeout: expected a duration like "250ms", got "soon")",
            R"(limits.head_timeout: must be greater than 0, got "0s")",
            "routes[0].strip_prefix: requires match.path_prefix (there is no prefix to strip)",
            R"(routes[1].name: must be 1-64 letters, digits, "_", "-" or ".", got "x y")",
            "routes[1].upstreams: at least one upstream is required (unless a stage such as replay answers every request)",
        });
}

TEST_CASE("scenario: a rejected value is not reported twice") {
  // The only upstream is bad: "no upstreams" would be the same mistake again.
  CHECK(problems_of(doc_with_route({{"upstreams", {"ftp://x"}}})).size() == 1);
  // A bad listener must not make a later one look like its duplicate.
  json doc = minimal_doc();
  doc["listeners"] = {"nope", "127.0.0.1:8080"};
  CHECK(problems_of(doc) ==
        Problems{R"(listeners[0]: "nope" has no port; expected host:port like "127.0.0.1:8080")"});
  // A stage without a type: no "unknown type", no name problem.
  json stage_doc = minimal_doc();
  stage_doc["stages"] = {{{"params", json::object()}}};
  CHECK(problems_of(stage_doc) == Problems{R"(stages[0].type: required (the stage type, e.g. "headers"))"});
  // match.path_prefix had the wrong type: strip_prefix is not blamed for it.
  CHECK(problems_of(doc_with_route(route_with({{"strip_prefix", true}, {"match", {{"path_prefix", 5}}}}))) ==
        Problems{"routes[0].match.path_prefix: expected a string, got 5"});
  // balance was misspelt: weights are not blamed for it.
  json misspelt = {{"balance", "weigthed"},
                   {"upstreams", {{{"url", "http://a"}, {"weight", 3}}, "http://b"}}};
  CHECK(
      problems_of(doc_with_route(misspelt)) ==
      Problems{
          R"(routes[0].balance: must be one of round_robin, least_conn, random, weighted; got "weigthed")"});
  // routes is not an array: "at least one route" would be the same mistake again.
  json routes_doc = minimal_doc();
  routes_doc["routes"] = "http://x";
  CHECK(problems_of(routes_doc).size() == 1);
}

// ---------------------------------------------------------------------------------------------------
// Validation rules

TEST_CASE("scenario: listeners must be present and distinct") {
  json doc = minimal_doc();
  doc["listeners"] = json::array();
  CHECK(problems_of(doc) == Problems{"listeners: at least one listen address is required"});
  doc["listeners"] = {"127.0.0.1:8080", ":9000", "8080"};
  CHECK(problems_of(doc) == Problems{"listeners[2]: duplicate of listeners[0] (127.0.0.1:8080)"});
  doc["listeners"] = {"127.0.0.1:0", ":0"};  // ephemeral ports never collide
  CHECK(problems_of(doc).empty());
  doc["listeners"] = {"127.0.0.1:8080", 8080};
  CHECK(problems_of(doc) == Problems{"listeners[1]: expected a string, got 8080"});
}

TEST_CASE("scenario: workers and limits are range checked") {
  json doc = minimal_doc();
  doc["workers"] = 64;
  doc["limits"] = {{"max_conns", 1000000}, {"max_body", "1GiB"}, {"drain_timeout", "0"}};
  Scenario s = rproxy::scenario_from_json(doc);
  CHECK(s.workers == 64);
  CHECK(s.limits.max_body == (1ull << 30));
  doc["workers"] = 65;
  doc["limits"] = {{"max_conns", 1000001}, {"max_body", -1}, {"idle_timeout", "0"}, {"write_timeout", "0ms"}};
  CHECK(problems_of(doc) ==
        Problems{
            "workers: must be between 0 and 64, got 65",
            "limits.max_conns: must be between 1 and 1000000, got 1000001",
            R"(limits.max_body: expected a size in bytes or a string like "10MiB", got -1)",
            R"(limits.idle_timeout: must be greater than 0, got "0s")",
            R"(limits.write_timeout: must be greater than 0, got "0s")",
        });
  doc["workers"] = 0;
  doc["limits"] = {{"max_body", "ten"}, {"body_timeout", "0"}};
  CHECK(problems_of(doc) == Problems{
                                R"(limits.max_body: expected a size like "10MiB", got "ten")",
                                R"(limits.body_timeout: must be greater than 0, got "0s")",
                            });
  doc["limits"] = {{"max_body", 4096}};
  CHECK(rproxy::scenario_from_json(doc).limits.max_body == 4096);
  CHECK(rproxy::scenario_from_json(doc).limits.underscore_headers == rproxy::UnderscoreHeaders::Drop);
  doc["limits"] = {{"underscore_headers", "reject"}};
  auto rejecting = rproxy::scenario_from_json(doc);
  CHECK(rejecting.limits.underscore_headers == rproxy::UnderscoreHeaders::Reject);
  CHECK(rproxy::scenario_to_json(rejecting)["limits"]["underscore_headers"] == "reject");
  doc["limits"] = {{"underscore_headers", "Drop"}};
  CHECK(problems_of(doc) ==
        Problems{R"(limits.underscore_headers: must be "drop", "reject" or "allow", got "Drop")"});
}

TEST_CASE("scenario: a route matching a header named with _ is refused unless underscore_headers allows it") {
  json doc = minimal_doc();
  doc["routes"] = {{{"match", {{"headers", {{"X_Tenant", "a"}}}}}, {"upstreams", {"http://127.0.0.1:3000"}}}};
  CHECK(problems_of(doc) == Problems{"routes[0].match.headers.X_Tenant: never matches: request fields with \"_\" in "
                                     "the name are dropped (limits.underscore_headers is drop)"});
  doc["limits"] = {{"underscore_headers", "allow"}};
  CHECK(problems_of(doc).empty());
}

TEST_CASE("scenario: an upstream that is rproxy's own listener is refused") {
  json doc = minimal_doc();
  doc["listeners"] = {"127.0.0.1:8080", "0.0.0.0:9000"};
  doc["routes"] = {{{"upstreams", {"http://localhost:8080", "http://127.0.0.1:9000", "http://127.0.0.1:8081",
                                   "http://10.1.2.3:8080"}}}};
  CHECK(problems_of(doc) ==
        Problems{
            "routes[0].upstreams[0]: http://localhost:8080 is rproxy's own listener (listeners[0]): every request "
            "would come back to rproxy in a loop",
            "routes[0].upstreams[1]: http://127.0.0.1:9000 is rproxy's own listener (listeners[1]): every request "
            "would come back to rproxy in a loop",
        });
  // Other families and other loopback addresses are other sockets: an IPv4-only app next to an IPv6 rproxy.
  doc["listeners"] = {"[::]:8080", "127.0.0.1:9000"};
  doc["routes"] = {{{"upstreams", {"http://127.0.0.1:8080", "http://[::1]:9000", "http://127.0.0.2:9000"}}}};
  CHECK(problems_of(doc).empty());
  doc["routes"] = {{{"upstreams", {"http://[::1]:8080", "http://localhost:9000"}}}};
  CHECK(problems_of(doc).size() == 2);
}

TEST_CASE("scenario: validate_scenario checks scenarios built in code") {
  Scenario s;  // as a subcommand would start: defaults, no routes
  CHECK(rproxy::validate_scenario(s) == Problems{"routes: at least one route is required"});
  rproxy::Route r;
  Url url;
  REQUIRE_FALSE(rproxy::parse_url("http://127.0.0.1:3000", url));
  r.upstreams.push_back({url, 1, ""});
  s.routes.push_back(r);
  CHECK(rproxy::validate_scenario(s) == Problems{"routes[0].name: must not be empty"});
  rproxy::fill_default_names(s);
  CHECK(rproxy::validate_scenario(s).empty());

  s.limits.max_conns = 0;
  s.limits.drain_timeout = Millis{-1};
  s.workers = 1000;
  s.access_log.format = "xml";
  s.routes[0].upstreams.push_back({});
  s.routes[0].upstreams[0].weight = 0;
  s.routes[0].connect_timeout = Millis{0};
  CHECK(rproxy::validate_scenario(s) ==
        Problems{
            "workers: must be between 0 and 64, got 1000",
            "limits.max_conns: must be between 1 and 1000000, got 0",
            R"(limits.drain_timeout: must not be negative, got "-1ms")",
            R"(access_log.format: must be "text" or "json", got "xml")",
            "routes[0].upstreams[0].weight: must be between 1 and 1000, got 0",
            "routes[0].upstreams[1]: missing URL",
            R"(routes[0].connect_timeout: must be greater than 0, got "0s")",
        });
}

TEST_CASE("scenario: access_log format must be text or json") {
  json doc = minimal_doc();
  doc["access_log"] = {{"path", "/tmp/access.log"}, {"format", "json"}};
  CHECK(rproxy::scenario_from_json(doc).access_log.path == "/tmp/access.log");
  doc["access_log"]["format"] = "JSON";
  CHECK(problems_of(doc) == Problems{R"(access_log.format: must be "text" or "json", got "JSON")"});
}

TEST_CASE("scenario: at least one route is required") {
  json doc = minimal_doc();
  doc.erase("routes");
  CHECK(problems_of(doc) == Problems{"routes: at least one route is required"});
  doc["routes"] = json::array();
  CHECK(problems_of(doc) == Problems{"routes: at least one route is required"});
}

TEST_CASE("scenario: route names default deterministically and must be unique") {
  json doc = minimal_doc();
  doc["routes"] = {
      route_with({{"match", {{"path_prefix", "/api/v1"}}}}),
      route_with({{"match", {{"path", "/health"}}}}),
      route_with({{"match", {{"path_prefix", "/"}}}}),
      route_with({{"match", {{"host", "a.localhost"}}}}),
      route_with({{"match", {{"path_prefix", "/api/v1/"}}}}),
      route_with({{"name", "default"}}),
      route_with(json::object()),
      route_with({{"match", {{"path_prefix", "/caf%C3%A9"}}}}),
  };
  Scenario s = rproxy::scenario_from_json(doc);
  std::vector<std::string> names;
  for (const auto& r : s.routes) names.push_back(r.name);
  CHECK(names == std::vector<std::string>{"api_v1", "health", "root", "default_2", "api_v1_2", "default",
                                          "default_3", "caf_C3_A9"});

  doc["routes"] = {route_with({{"name", "api"}}), route_with({{"name", "api"}}), route_with({{"name", ""}}),
                   route_with({{"name", std::string(65, 'a')}})};
  CHECK(problems_of(doc) == Problems{
                                "routes[2].name: must not be empty (leave the key out for a default name)",
                                R"(routes[1].name: duplicate route name "api" (also routes[0]))",
                                R"(routes[3].name: must be 1-64 letters, digits, "_", "-" or ".", got ")" +
                                    std::string(65, 'a') + "\"",
                            });

  // A route with some other mistake still takes part in the duplicate check.
  doc["routes"] = {route_with({{"name", "api"}}), route_with({{"name", "api"}, {"read_timeout", 5}})};
  CHECK(problems_of(doc) == Problems{
                                R"(routes[1].read_timeout: expected a duration like "250ms", got 5)",
                                R"(routes[1].name: duplicate route name "api" (also routes[0]))",
                            });
}

TEST_CASE("scenario: match paths must be paths") {
  CHECK(problems_of(doc_with_route(route_with({{"match", {{"path_prefix", "api"}}}}))) ==
        Problems{R"(routes[0].match.path_prefix: must start with "/", got "api")"});
  CHECK(problems_of(doc_with_route(route_with({{"match", {{"path", "/a?b=1"}}}}))) ==
        Problems{
            R"(routes[0].match.path: must be a path only, without "?" or "#" (the query is never matched or )"
            R"(replaced), got "/a?b=1")"});
  CHECK(problems_of(doc_with_route(route_with({{"match", {{"path", "/a b"}}}}))) ==
        Problems{"routes[0].match.path: contains a character not allowed in a URL path (percent-encode it): "
                 R"("/a b")"});
  CHECK(problems_of(doc_with_route(route_with({{"match", {{"path", "/a%zz"}}}}))) ==
        Problems{R"(routes[0].match.path: has a malformed %-escape: "/a%zz")"});
  CHECK(problems_of(doc_with_route(route_with({{"match", {{"path", "/a"}, {"path_prefix", "/b"}}}}))) ==
        Problems{"routes[0].match.path: cannot be combined with path_prefix; use one of them"});
  CHECK(problems_of(doc_with_route(route_with({{"match", {{"path", "/a/b:c@d;e=f%2F~"}}}}))).empty());
}

TEST_CASE("scenario: match methods must be uppercase tokens") {
  CHECK(
      problems_of(doc_with_route(route_with({{"match", {{"methods", {"GET", "POST", "PURGE"}}}}}))).empty());
  CHECK(problems_of(doc_with_route(route_with({{"match", {{"methods", json::array()}}}}))).empty());
  CHECK(problems_of(
            doc_with_route(route_with({{"match", {{"methods", {"get", "GE T", "GET", "POST", "POST"}}}}}))) ==
        Problems{
            R"(routes[0].match.methods[0]: methods are case-sensitive; write "GET", got "get")",
            R"(routes[0].match.methods[1]: not a valid method: "GE T")",
            R"(routes[0].match.methods[4]: "POST" is listed twice)",
        });
  CHECK(problems_of(doc_with_route(route_with({{"match", {{"methods", {"GET", 5, "get"}}}}}))) ==
        Problems{
            "routes[0].match.methods[1]: expected a string, got 5",
            R"(routes[0].match.methods[2]: methods are case-sensitive; write "GET", got "get")",
        });
}

TEST_CASE("scenario: match host is a name or a wildcard suffix") {
  for (const std::string good : {"app.localhost", "*.localhost", "EXAMPLE.com", "127.0.0.1", "my_svc"}) {
    CAPTURE(good);
    CHECK(problems_of(doc_with_route(route_with({{"match", {{"host", good}}}}))).empty());
  }
  CHECK(
      problems_of(doc_with_route(route_with({{"match", {{"host", "app.localhost:8080"}}}}))) ==
      Problems{
          R"(routes[0].match.host: must be a host name without a port (the port is ignored when matching), )"
          R"(got "app.localhost:8080")"});
  for (const std::string bad : {"", "*", "a.*.b", "*example.com", "a b", "x/y", "a..b", "user@host"}) {
    CAPTURE(bad);
    CHECK(problems_of(doc_with_route(route_with({{"match", {{"host", bad}}}}))) ==
          Problems{R"(routes[0].match.host: must be a host name or "*.suffix", got )" + json(bad).dump()});
  }
}

TEST_CASE("scenario: match headers need valid names and values") {
  CHECK(
      problems_of(doc_with_route(route_with({{"match", {{"headers", {{"X-Env", "dev"}, {"X-Any", "*"}}}}}})))
          .empty());
  CHECK(problems_of(doc_with_route(route_with({{"match", {{"headers", {{"Bad Name", "x"}}}}}}))) ==
        Problems{R"(routes[0].match.headers["Bad Name"]: not a valid header name)"});
  CHECK(problems_of(doc_with_route(route_with({{"match", {{"headers", {{"X-A", "a\r\nb"}}}}}}))) ==
        Problems{"routes[0].match.headers.X-A: value contains a control character"});
  CHECK(problems_of(doc_with_route(route_with({{"match", {{"headers", {{"X-A", "1"}, {"x-a", "2"}}}}}}))) ==
        Problems{R"(routes[0].match.headers.x-a: same header as "X-A" (names are case-insensitive))"});
}

TEST_CASE("scenario: strip_prefix and rewrite rules") {
  CHECK(
      problems_of(doc_with_route(route_with({{"strip_prefix", true}, {"match", {{"path_prefix", "/api"}}}})))
          .empty());
  CHECK(problems_of(doc_with_route(route_with({{"strip_prefix", true}}))) ==
        Problems{"routes[0].strip_prefix: requires match.path_prefix (there is no prefix to strip)"});
  CHECK(problems_of(doc_with_route(route_with({{"rewrite", "/v2/items"}}))).empty());
  CHECK(problems_of(doc_with_route(route_with({{"rewrite", "v2"}}))) ==
        Problems{R"(routes[0].rewrite: must start with "/", got "v2")"});
  CHECK(problems_of(doc_with_route(
            route_with({{"rewrite", "/x"}, {"strip_prefix", true}, {"match", {{"path_prefix", "/api"}}}}))) ==
        Problems{"routes[0].rewrite: cannot be combined with strip_prefix; use one of them"});
}

TEST_CASE("scenario: upstream rules") {
  CHECK(problems_of(doc_with_route({{"upstreams", json::array()}})) ==
        Problems{"routes[0].upstreams: at least one upstream is required (unless a stage such as replay answers every request)"});
  CHECK(problems_of(doc_with_route(json::object())) ==
        Problems{"routes[0].upstreams: at least one upstream is required (unless a stage such as replay answers every request)"});
  CHECK(problems_of(doc_with_route(
            {{"upstreams", {{{"url", "http://a"}, {"weight", 0}}, {{"url", "http://b"}, {"weight", 1001}}}},
             {"balance", "weighted"}})) ==
        Problems{
            "routes[0].upstreams[0].weight: must be between 1 and 1000, got 0",
            "routes[0].upstreams[1].weight: must be between 1 and 1000, got 1001",
        });
  CHECK(
      problems_of(doc_with_route({{"upstreams", {{{"url", "http://a"}, {"weight", 3}}, "http://b"}}})) ==
      Problems{R"(routes[0].upstreams[0].weight: only used with "balance": "weighted" (this route balances )"
               R"(round_robin))"});
  CHECK(problems_of(doc_with_route({{"upstreams", {"http://a", "HTTP://A:80/"}}})) ==
        Problems{"routes[0].upstreams[1]: same upstream as upstreams[0] (use weights to favour one)"});
  CHECK(problems_of(doc_with_route({{"upstreams", {"http://a", "https://a", "http://a:81"}}})).empty());
  // Named upstreams: two names may share a URL (variants on one backend); one name twice may not.
  CHECK(problems_of(doc_with_route({{"upstreams", {{{"url", "http://a"}, {"name", "x"}},
                                                   {{"url", "http://a"}, {"name", "y"}}}}})).empty());
  CHECK(problems_of(doc_with_route({{"upstreams", {{{"url", "http://a"}, {"name", "x"}},
                                                   {{"url", "http://a"}, {"name", "x"}}}}})) ==
        Problems{"routes[0].upstreams[1]: same upstream as upstreams[0] (use weights to favour one)"});
  CHECK(problems_of(doc_with_route({{"upstreams", {{{"url", "http://a"}, {"name", "bad name"}}}}})) ==
        Problems{R"(routes[0].upstreams[0].name: must be 1-64 letters, digits, "_", "-" or ".", got "bad name")"});
  CHECK(problems_of(doc_with_route(route_with({{"balance", "fastest"}, {"host_header", "client"}}))) ==
        Problems{
            R"(routes[0].balance: must be one of round_robin, least_conn, random, weighted; got "fastest")",
            R"(routes[0].host_header: must be "preserve" or "upstream", got "client")",
        });
}

TEST_CASE("scenario: stage types must be registered") {
  json doc = minimal_doc();
  doc["stages"] = {{{"type", "latency"}}};
  CHECK(problems_of(doc) == Problems{R"(stages[0].type: unknown stage type "latency" (known: headers, split, record, fault, access, cors, rate_limit, static, cache, compress, replay))"});
  doc["stages"] = {{{"name", "x"}}};
  CHECK(problems_of(doc) == Problems{R"(stages[0].type: required (the stage type, e.g. "headers"))"});
  doc["stages"] = json::array();
  doc["routes"][0]["stages"] = {{{"type", "nope"}}};
  CHECK(problems_of(doc) ==
        Problems{R"(routes[0].stages[0].type: unknown stage type "nope" (known: headers, split, record, fault, access, cors, rate_limit, static, cache, compress, replay))"});
}

TEST_CASE("scenario: stage names default to the type and stay unique per pipeline") {
  json doc = minimal_doc();
  doc["stages"] = {
      {{"type", "headers"}}, {{"type", "headers"}, {"name", "headers_3"}}, {{"type", "headers"}}};
  doc["routes"] = {route_with({{"stages", {{{"type", "headers"}}, {{"type", "headers"}}}}}),
                   route_with({{"name", "other"}, {"stages", {{{"type", "headers"}}}}})};
  Scenario s = rproxy::scenario_from_json(doc);
  CHECK(s.stages[0].name == "headers");
  CHECK(s.stages[1].name == "headers_3");
  CHECK(s.stages[2].name == "headers_2");
  CHECK(s.routes[0].stages[0].name == "headers_4");
  CHECK(s.routes[0].stages[1].name == "headers_5");
  CHECK(s.routes[1].stages[0].name == "headers_4");  // each route is its own pipeline

  doc["stages"] = {{{"type", "headers"}, {"name", "h"}}, {{"type", "headers"}, {"name", "h"}}};
  doc["routes"] = {route_with(
      {{"stages", {{{"type", "headers"}, {"name", "h"}}, {{"type", "headers"}, {"name", "a b"}}}}})};
  CHECK(problems_of(doc) ==
        Problems{
            R"(stages[1].name: duplicate stage name "h" (also [0]))",
            R"(routes[0].stages[0].name: "h" is already the name of a scenario-wide stage )"
            "(names are unique per "
            R"(pipeline))",
            R"(routes[0].stages[1].name: must be 1-64 letters, digits, "_", "-" or ".", got "a b")",
        });
}

TEST_CASE("scenario: stage params are checked by the stage") {
  json doc = minimal_doc();
  doc["routes"][0]["stages"] = {
      {{"type", "headers"}, {"params", {{"request", {{"set", {{"X-A", "a\nb"}}}}}}}}};
  CHECK(problems_of(doc) == Problems{"routes[0].stages[0].params.request.set.X-A: value contains CR/LF/NUL"});
  Scenario s = rproxy::scenario_from_json(minimal_doc());
  s.stages.push_back({"headers", "h", json::array()});
  CHECK(rproxy::validate_scenario(s) == Problems{"stages[0].params: expected an object, got an array"});
}

TEST_CASE("scenario: validation can use another registry") {
  rproxy::StageRegistry registry;
  registry.add(
      {"noop", "does nothing",
       [](const json&, const std::string&, const rproxy::StageContext&,
          std::vector<std::string>&) -> std::unique_ptr<rproxy::Stage> {
         return std::make_unique<rproxy::Stage>();
       }});
  json doc = minimal_doc();
  doc["stages"] = {{{"type", "noop"}}};
  CHECK(rproxy::scenario_from_json(doc, registry).stages[0].name == "noop");
  CHECK_THROWS_AS((void)rproxy::scenario_from_json(doc), ConfigError);
  doc["stages"] = {{{"type", "headers"}}};
  try {
    (void)rproxy::scenario_from_json(doc, registry);
    FAIL("expected ConfigError");
  } catch (const ConfigError& e) {
    CHECK(Problems(e.problems()) ==
          Problems{R"(stages[0].type: unknown stage type "headers" (known: noop))"});
  }
}

TEST_CASE("scenario: fill_default_names keeps explicit names") {
  Scenario s;
  s.routes.resize(3);
  s.routes[0].name = "default";
  s.routes[2].match.path = "/x/";
  s.stages = {{"headers", "", json::object()}, {"", "", json::object()}};
  rproxy::fill_default_names(s);
  CHECK(s.routes[0].name == "default");
  CHECK(s.routes[1].name == "default_2");
  CHECK(s.routes[2].name == "x");
  CHECK(s.stages[0].name == "headers");
  CHECK(s.stages[1].name == "stage");
  Scenario again = s;
  rproxy::fill_default_names(again);
  CHECK(again == s);
}

// ---------------------------------------------------------------------------------------------------
// Files, round trips, schema

TEST_CASE("scenario: every example file loads") {
  auto files = example_files();
  CHECK(files.size() >= 6);
  for (const auto& file : files) {
    CAPTURE(file.string());
    CHECK_NOTHROW((void)rproxy::load_scenario(file.string()));
  }
}

TEST_CASE("scenario: examples round trip through scenario_to_json") {
  for (const auto& file : example_files()) {
    CAPTURE(file.string());
    Scenario s = rproxy::load_scenario(file.string());
    json out = rproxy::scenario_to_json(s);
    Scenario back = rproxy::scenario_from_json(out);
    CHECK(back == s);
    CHECK(rproxy::scenario_to_json(back) == out);  // printing is stable too
  }
}

TEST_CASE("scenario: scenario_to_json fills every key") {
  Scenario s = rproxy::load_scenario((kSourceDir / "scenarios/basic.json").string());
  json out = rproxy::scenario_to_json(s);
  CHECK(key_set(out) == parser_keys("scenario"));
  CHECK(key_set(out["limits"]) == parser_keys("limits"));
  CHECK(key_set(out["access_log"]) == parser_keys("access_log"));
  CHECK(out["listeners"] == json{"127.0.0.1:8080"});
  CHECK(out["limits"]["head_timeout"] == "10s");
  CHECK(out["limits"]["idle_timeout"] == "75s");
  const json& route = out["routes"][0];
  std::set<std::string> route_keys = parser_keys("route");
  route_keys.erase("rewrite");  // absent optionals
  route_keys.erase("health_check");
  CHECK(key_set(route) == route_keys);
  CHECK(route["match"] == json::object());
  CHECK(route["upstreams"] == json{{{"url", "http://127.0.0.1:3000"}, {"weight", 1}}});
  CHECK(route["balance"] == "round_robin");
  CHECK(route["connect_timeout"] == "5s");

  Scenario full = rproxy::load_scenario((kSourceDir / "scenarios/full.json").string());
  json full_out = rproxy::scenario_to_json(full);
  CHECK(key_set(full_out["routes"][0]["match"]) ==
        std::set<std::string>{"host", "path_prefix", "methods", "headers"});
  CHECK(full_out["routes"][1]["rewrite"] == "/new");
  CHECK(full_out["limits"]["max_body"] == 10 * 1024 * 1024);
  CHECK(full_out["listeners"] == json{"127.0.0.1:8080", "[::1]:8080"});
}

TEST_CASE("scenario: scenario_to_json renders upstreams built in code") {
  Scenario s;
  rproxy::Route r;
  r.name = "r";
  r.upstreams.push_back({Url{"http", "::1", 3000, ""}, 1, ""});
  s.routes.push_back(r);
  json out = rproxy::scenario_to_json(s);
  CHECK(out["routes"][0]["upstreams"][0]["url"] == "http://[::1]:3000");
  Scenario back = rproxy::scenario_from_json(out);
  CHECK(back.routes[0].upstreams[0].url.authority() == "[::1]:3000");
}

TEST_CASE("scenario: load_scenario names file and position of a JSON syntax error") {
  TempFile file("syntax", "{\n  \"version\": 1,\n  \"routes\": x\n}\n");
  auto error = load_error(file.path());
  CHECK(error.starts_with(file.path() + ":3:13: invalid JSON: "));
  CHECK(error.find('\n') == std::string::npos);
  TempFile empty("empty", "");
  CHECK(load_error(empty.path()).starts_with(empty.path() + ":1:1: invalid JSON: "));
  TempFile trailing("trailing", "{\"version\": 1,}");
  CHECK(load_error(trailing.path()).starts_with(trailing.path() + ":1:15: invalid JSON: "));
}

TEST_CASE("scenario: load_scenario reports an unreadable file") {
  auto missing = (fs::temp_directory_path() / "rproxy_no_such_scenario.json").string();
  CHECK(load_error(missing) == missing + ": cannot read: No such file or directory");
  auto directory = (kSourceDir / "scenarios").string();
  CHECK(load_error(directory) == directory + ": cannot read: is a directory");
}

TEST_CASE("scenario: load_scenario reports duplicate keys with the other problems") {
  TempFile file("duplicates", R"({"version": 1, "workers": 2, "workers": 3,
    "routes": [{"upstreams": ["http://a"], "match": {"path": "/a", "path": "/b"}},
               {"upstreams": ["ftp://b"]}]})");
  try {
    (void)rproxy::load_scenario(file.path());
    FAIL("expected ConfigError");
  } catch (const ConfigError& e) {
    CHECK(Problems(e.problems()) == Problems{
                                        "workers: duplicate key (only the last one would count)",
                                        "routes[0].match.path: duplicate key (only the last one would count)",
                                        R"(routes[1].upstreams[0]: "ftp://b" is not an http(s) URL)",
                                    });
  }
  TempFile only_duplicates(
      "only_duplicates", R"({"version": 1, "routes": [{"upstreams": ["http://a"]}], "seed": 1, "seed": 2})");
  CHECK(load_error(only_duplicates.path()) == "seed: duplicate key (only the last one would count)");
}

TEST_CASE("scenario: ConfigError joins problems with newlines") {
  ConfigError e({"a: one", "b: two"});
  CHECK(std::string(e.what()) == "a: one\nb: two");
  CHECK(e.problems() == Problems{"a: one", "b: two"});
}

TEST_CASE("schema: is valid JSON and lists the keys the parser accepts") {
  json schema = read_json(kSourceDir / "scenarios/scenario.schema.json");
  CHECK(schema["$schema"] == "https://json-schema.org/draft/2020-12/schema");
  const json& defs = schema["$defs"];
  CHECK(key_set(schema["properties"]) == parser_keys("scenario"));
  CHECK(key_set(schema["properties"]["limits"]["properties"]) == parser_keys("limits"));
  CHECK(key_set(schema["properties"]["access_log"]["properties"]) == parser_keys("access_log"));
  CHECK(key_set(defs["route"]["properties"]) == parser_keys("route"));
  CHECK(key_set(defs["match"]["properties"]) == parser_keys("match"));
  CHECK(key_set(defs["upstream"]["properties"]) == parser_keys("upstream"));
  CHECK(key_set(defs["stage"]["properties"]) == parser_keys("stage"));
  CHECK(key_set(schema["properties"]["tls"]["properties"]) == parser_keys("tls"));
  CHECK(key_set(defs["route"]["properties"]["upstream_tls"]["properties"]) == parser_keys("upstream_tls"));
  CHECK(key_set(defs["route"]["properties"]["health_check"]["properties"]) == parser_keys("health_check"));
  CHECK(key_set(defs["route"]["properties"]["passive_health"]["properties"]) == parser_keys("passive_health"));
  CHECK(key_set(defs["route"]["properties"]["retries"]["properties"]) == parser_keys("retries"));
  CHECK_THROWS_AS(rproxy::scenario_json_keys("nope"), std::out_of_range);
}

TEST_CASE("schema: objects are closed and every key is described") {
  json schema = read_json(kSourceDir / "scenarios/scenario.schema.json");
  int objects = 0;
  std::function<void(const json&, const std::string&)> walk = [&](const json& node,
                                                                  const std::string& where) {
    if (node.is_object()) {
      if (node.contains("properties") && node.value("type", "") == "object") {
        ++objects;
        CAPTURE(where);
        CHECK(node.value("additionalProperties", json(true)) == json(false));
        for (const auto& [key, property] : node["properties"].items()) {
          CAPTURE(key);
          CHECK(property.contains("description"));
        }
      }
      for (const auto& [key, child] : node.items()) walk(child, where + "/" + key);
    } else if (node.is_array()) {
      for (std::size_t i = 0; i < node.size(); ++i) walk(node[i], where + "/" + std::to_string(i));
    }
  };
  walk(schema, "#");
  CHECK(objects >= 9);
  for (const auto& [name, def] : schema["$defs"].items()) {
    CAPTURE(name);
    CHECK(def.contains("description"));
  }
}

TEST_CASE("schema: stage types match the builtin registry") {
  json schema = read_json(kSourceDir / "scenarios/scenario.schema.json");
  std::set<std::string> in_schema;
  for (const auto& t : schema["$defs"]["stage"]["properties"]["type"]["enum"])
    in_schema.insert(t.get<std::string>());
  std::set<std::string> registered;
  for (const auto& info : rproxy::builtin_stage_registry().all()) registered.insert(info.type);
  CHECK(in_schema == registered);
}

TEST_CASE("stage registry: finds registered types and refuses duplicates") {
  const auto& builtin = rproxy::builtin_stage_registry();
  CHECK(&builtin == &rproxy::builtin_stage_registry());
  REQUIRE(builtin.find("headers") != nullptr);
  CHECK(builtin.find("headers")->type == "headers");
  CHECK_FALSE(builtin.find("headers")->summary.empty());
  CHECK(builtin.find("nope") == nullptr);
  rproxy::StageRegistry registry;
  rproxy::register_builtin_stages(registry);
  CHECK(registry.all().size() == builtin.all().size());
  CHECK_THROWS_AS(rproxy::register_builtin_stages(registry), std::logic_error);
  CHECK_THROWS_AS(registry.add({"no_factory", "", nullptr}), std::logic_error);
}
