// Integration tests for the gateway stages with real clients and upstreams: rate limiting accuracy under
// concurrency, CORS preflights that never reach the upstream, CORS on errors and 429s, and the flags.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/proxy_fixture.hpp"
#include "support/raw_client.hpp"
#include "support/scripted_upstream.hpp"
#include "support/subprocess.hpp"

using namespace rproxy;
using namespace rproxy::test;
using nlohmann::json;

namespace {

Scenario with_stages(const std::string& upstream, std::vector<StageSpec> stages) {
  auto s = make_scenario({make_route({upstream})});
  s.stages = std::move(stages);
  return s;
}

}  // namespace

TEST_SUITE("gateway") {
  TEST_CASE("rate_limit: 10/s under 8 concurrent keep-alive clients admits 10 plus or minus 1 per second") {
    auto e = start_echo();
    ProxyFixture proxy(
        with_stages(echo_url(*e), {StageSpec{"rate_limit", "", {{"rate", "10/s"}, {"key", "global"}}}}));
    const auto start = Clock::now();
    const auto run_for = milliseconds(3000);
    std::mutex mutex;
    std::vector<long long> admitted_at;  // ms since start
    std::atomic<int> limited{0};
    std::atomic<int> other{0};
    std::vector<std::thread> clients;
    for (int t = 0; t < 8; ++t)
      clients.emplace_back([&] {
        RawClient c(proxy.port());
        while (Clock::now() - start < run_for) {
          c.send(get_request("/"));
          auto r = c.read_response();
          auto at = ms_since(start);
          if (r.status == 200) {
            std::lock_guard lock(mutex);
            admitted_at.push_back(at);
          } else if (r.status == 429 && r.header("Retry-After") == "1" &&
                     r.header("RateLimit-Limit") == "10") {
            ++limited;
          } else {
            ++other;
          }
        }
      });
    for (auto& c : clients) c.join();
    int per_second[3] = {0, 0, 0};
    for (auto at : admitted_at)
      if (at < 3000) ++per_second[at / 1000];
    MESSAGE("admitted per second: " << per_second[0] << ", " << per_second[1] << ", " << per_second[2] << "; "
                                    << limited.load() << " got 429");
    CHECK(other == 0);
    CHECK(limited > 100);  // the clients really pushed harder than the limit
    for (int s = 0; s < 3; ++s) {
      CAPTURE(s);
      CHECK(per_second[s] >= 9);
      CHECK(per_second[s] <= 11);
    }
    CHECK(admitted_at.size() >= 29);
    CHECK(admitted_at.size() <= 32);
    CHECK(proxy.server().report()["stages"]["rate_limit"]["allowed"] == admitted_at.size());
  }

  TEST_CASE("rate_limit: per-client buckets - one client over its limit does not slow another") {
    auto e = start_echo();
    ProxyFixture proxy(with_stages(
        echo_url(*e),
        {StageSpec{"rate_limit", "", {{"rate", "2/s"}, {"burst", 1}, {"key", "header:X-Api-Key"}}}}));
    RawClient greedy(proxy.port());
    int greedy_ok = 0;
    for (int i = 0; i < 20; ++i) {
      greedy.send(get_request("/", "proxy.test", "X-Api-Key: greedy\r\n"));
      greedy_ok += greedy.read_response().status == 200;
    }
    CHECK(greedy_ok == 2);  // burst 1: two at once, then one per 500 ms
    RawClient polite(proxy.port());
    polite.send(get_request("/", "proxy.test", "X-Api-Key: polite\r\n"));
    auto r = polite.read_response();
    CHECK(r.status == 200);
    CHECK(r.header("RateLimit-Remaining") == "1");
    CHECK(r.header("RateLimit-Policy") == "2;w=1;burst=1");
  }

  TEST_CASE("cors: curl preflight is answered by rproxy and the upstream never sees it") {
    UpstreamScript script;
    script.response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    ScriptedUpstream up(script);
    ProxyFixture proxy(with_stages(
        up.url(), {StageSpec{"cors", "", {{"origins", {"http://localhost:*"}}, {"credentials", true}}}}));
    auto r = run_curl({"-i", "-X", "OPTIONS", "-H", "Origin: http://localhost:5173", "-H",
                       "Access-Control-Request-Method: DELETE", "-H",
                       "Access-Control-Request-Headers: authorization",
                       "http://127.0.0.1:" + std::to_string(proxy.port()) + "/api/items/7"});
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("HTTP/1.1 204") == 0);
    CHECK(r.out.find("Access-Control-Allow-Origin: http://localhost:5173") != std::string::npos);
    CHECK(r.out.find("Access-Control-Allow-Credentials: true") != std::string::npos);
    CHECK(r.out.find("Access-Control-Allow-Headers: authorization") != std::string::npos);
    CHECK(up.connections() == 0);
    // The actual request goes through and comes back with the headers.
    auto get = run_curl({"-i", "-H", "Origin: http://localhost:5173",
                         "http://127.0.0.1:" + std::to_string(proxy.port()) + "/api/items/7"});
    CHECK(get.out.find("HTTP/1.1 200") == 0);
    CHECK(get.out.find("Access-Control-Allow-Origin: http://localhost:5173") != std::string::npos);
    CHECK(get.out.find("Vary: Origin") != std::string::npos);
    CHECK(up.heads_received() == 1);
  }

  TEST_CASE("cors: rproxy's own errors and 429s carry the CORS headers too") {
    ClosedPort closed;
    ProxyFixture proxy(
        with_stages("http://127.0.0.1:" + std::to_string(closed.port()),
                    {StageSpec{"cors", "", json::object()}, StageSpec{"rate_limit", "", {{"rate", "1/m"}}}}));
    RawClient c(proxy.port());
    c.send(get_request("/", "proxy.test", "Origin: http://localhost:3000\r\n"));
    auto bad_gateway = c.read_response();
    CHECK(bad_gateway.status == 502);
    CHECK(bad_gateway.header("Access-Control-Allow-Origin") == "*");
    c.send(get_request("/", "proxy.test", "Origin: http://localhost:3000\r\n"));
    auto limited = c.read_response();
    CHECK(limited.status == 429);
    CHECK(limited.header("Access-Control-Allow-Origin") == "*");
    CHECK(limited.header("Retry-After") == "60");
  }

  TEST_CASE("access: curl with basic auth and bearer keys - rejected requests never reach the upstream") {
    TempDir dir;
    auto hash = run_command({"openssl", "passwd", "-6", "s3cret"});
    REQUIRE(hash.exit_code == 0);
    auto users = dir.write("users.htpasswd", "# dev users\nalice:" + hash.out);
    auto tokens = dir.write("tokens.txt", "ci-key-123\n");
    UpstreamScript script;
    script.response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    script.exchanges = 100;
    ScriptedUpstream up(script);
    ProxyFixture proxy(
        with_stages(up.url(), {StageSpec{"access",
                                         "",
                                         {{"basic", {{"users_file", users}, {"realm", "dev"}}},
                                          {"bearer", {{"tokens_file", tokens}, {"header", "X-Api-Key"}}}}}}));
    const auto url = "http://127.0.0.1:" + std::to_string(proxy.port()) + "/private";
    auto none = run_curl({"-i", url});
    CHECK(none.out.find("HTTP/1.1 401") == 0);
    CHECK(none.out.find("WWW-Authenticate: Basic realm=\"dev\", charset=\"UTF-8\"") != std::string::npos);
    CHECK(none.out.find("X-Rproxy-Error: auth_required") != std::string::npos);
    auto wrong = run_curl({"-i", "-u", "alice:guess", url});
    CHECK(wrong.out.find("HTTP/1.1 401") == 0);
    CHECK(wrong.out.find("X-Rproxy-Error: auth_failed") != std::string::npos);
    CHECK(wrong.out.find("guess") == std::string::npos);
    CHECK(up.heads_received() == 0);  // nothing rejected was forwarded

    auto ok = run_curl({"-i", "-u", "alice:s3cret", url});
    CHECK(ok.out.find("HTTP/1.1 200") == 0);
    auto key = run_curl({"-i", "-H", "X-Api-Key: ci-key-123", url});
    CHECK(key.out.find("HTTP/1.1 200") == 0);
    REQUIRE(up.wait_for_heads(2, milliseconds(2000)));
    // The proxy's credentials were taken off before the request went upstream.
    CHECK(up.received().find("Authorization") == std::string::npos);
    CHECK(up.received().find("ci-key-123") == std::string::npos);
    auto rep = proxy.server().report()["stages"]["access"];
    CHECK(rep["allowed"] == 2);
    CHECK(rep["unauthorized"] == 2);
  }

  TEST_CASE("access: --deny and --allow decide on the client address") {
    auto e = start_echo();
    auto denied = run_command(
        {rproxy_binary(), "serve", "--to", echo_url(*e), "--deny", "127.0.0.0/8", "--print-scenario"});
    REQUIRE(denied.exit_code == 0);
    auto s = scenario_from_json(json::parse(denied.out));
    s.listeners = {ListenAddress{"127.0.0.1", 0}};
    {
      ProxyFixture proxy(s);
      auto r = fetch(proxy.port(), get_request("/"));
      CHECK(r.status == 403);
      CHECK(r.header("X-Rproxy-Error") == "access_denied");
    }
    s.stages[0].params = {{"allow", {"10.0.0.0/8", "127.0.0.1"}}};
    ProxyFixture allowed(s);
    CHECK(fetch(allowed.port(), get_request("/")).status == 200);
    auto bad = run_command({rproxy_binary(), "serve", "--to", echo_url(*e), "--allow", "10.0.0.0/33"});
    CHECK(bad.exit_code == 2);
    CHECK(bad.err.find("stages[0].params.allow[0]") != std::string::npos);
  }

  TEST_CASE("static: rproxy serve --static with curl - ranges, 304, SPA, and no traversal") {
    TempDir site;
    TempDir outside;
    auto secret = outside.write("secret.txt", "TOP SECRET");
    ::mkdir((site.path() + "/dist").c_str(), 0755);
    site.write("dist/index.html", "<h1>app</h1>");
    std::string big(3u << 20, '\0');
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + (i * 7) % 26);
    site.write("dist/big.bin", big);
    REQUIRE(::symlink(secret.c_str(), (site.path() + "/dist/leak.txt").c_str()) == 0);
    auto e = start_echo("api");
    auto rp = spawn_rproxy({"serve", "--listen", "127.0.0.1:0", "--static", site.path() + "/dist", "--spa",
                            "--route", "/api=" + echo_url(*e)});
    const auto base = "http://127.0.0.1:" + std::to_string(rp.port);
    CHECK(run_curl({base + "/"}).out == "<h1>app</h1>");
    CHECK(run_curl({base + "/settings/profile"}).out == "<h1>app</h1>");                // SPA route
    CHECK(json::parse(run_curl({base + "/api/users"}).out)["target"] == "/api/users");  // API still proxied
    auto whole = run_curl({base + "/big.bin"});
    CHECK(whole.out == big);
    auto part = run_curl({"-r", "1048576-1048585", "-D", "-", base + "/big.bin"});
    CHECK(part.out.find("HTTP/1.1 206") == 0);
    CHECK(part.out.find("Content-Range: bytes 1048576-1048585/3145728") != std::string::npos);
    CHECK(part.out.substr(part.out.size() - 10) == big.substr(1048576, 10));
    auto etag_line = run_curl({"-I", base + "/index.html"}).out;
    auto at = etag_line.find("ETag: ");
    REQUIRE(at != std::string::npos);
    auto etag = etag_line.substr(at + 6, etag_line.find('\r', at) - at - 6);
    auto again = run_curl(
        {"-o", "/dev/null", "-w", "%{http_code}", "-H", "If-None-Match: " + etag, base + "/index.html"});
    CHECK(again.out == "304");
    for (std::string t : std::vector<std::string>{"/../../" + outside.path().substr(1) + "/secret.txt",
                                                  "/%2e%2e/%2e%2e/etc/passwd",
                                                  "/%252e%252e/%252e%252e/etc/passwd", "/leak.txt"}) {
      CAPTURE(t);
      auto r = run_curl({"--path-as-is", "-w", "\n%{http_code}", base + t});
      CHECK(r.out.find("TOP SECRET") == std::string::npos);
      CHECK(r.out.find("root:") == std::string::npos);
    }
  }

  TEST_CASE("gateway flags: --cors-origin and --rate-limit build the stages, bad values name the flag") {
    auto r = run_command({rproxy_binary(), "serve", "--to", "http://127.0.0.1:3000", "--cors-origin",
                          "http://localhost:5173", "--rate-limit", "5/s", "--rate-limit-burst", "2",
                          "--print-scenario"});
    REQUIRE(r.exit_code == 0);
    auto doc = json::parse(r.out);
    REQUIRE(doc["stages"].size() == 2);
    CHECK(doc["stages"][0]["type"] == "cors");
    CHECK(doc["stages"][0]["params"]["origins"] == json::array({"http://localhost:5173"}));
    CHECK(doc["stages"][1]["type"] == "rate_limit");
    CHECK(doc["stages"][1]["params"] == json({{"rate", "5/s"}, {"burst", 2}}));
    auto bad = run_command({rproxy_binary(), "serve", "--to", "http://127.0.0.1:3000", "--rate-limit", "5"});
    CHECK(bad.exit_code == 2);
    CHECK(bad.err.find("--rate-limit: expected a rate like \"10/s\"") != std::string::npos);
    auto lonely =
        run_command({rproxy_binary(), "serve", "--to", "http://127.0.0.1:3000", "--rate-limit-key", "ip"});
    CHECK(lonely.exit_code == 2);
    CHECK(lonely.err.find("--rate-limit-key: needs --rate-limit RATE") != std::string::npos);
    auto origin = run_command(
        {rproxy_binary(), "serve", "--to", "http://127.0.0.1:3000", "--cors-origin", "localhost"});
    CHECK(origin.exit_code == 2);
    CHECK(origin.err.find("stages[0].params.origins[0]: expected an origin") != std::string::npos);
  }
}
