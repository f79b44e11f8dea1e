// Integration tests for the response cache with real upstreams and clients: hits that never reach the
// upstream, Age, revalidation with a real 304, Vary, access control still applied on hits, and a cached
// body compressed per client.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <thread>

#include "support/proxy_fixture.hpp"
#include "support/raw_client.hpp"
#include "support/scripted_upstream.hpp"
#include "support/subprocess.hpp"

using namespace rproxy;
using namespace rproxy::test;
using namespace std::chrono_literals;

namespace {

HttpResponse get(std::uint16_t port, const std::string& target, const std::string& extra_headers = "") {
  RawClient c(port);
  c.send("GET " + target + " HTTP/1.1\r\nHost: t\r\n" + extra_headers + "\r\n");
  return c.read_response();
}

Scenario caching(const std::string& upstream, std::vector<StageSpec> before = {}) {
  auto s = make_scenario({make_route({upstream})});
  s.stages = std::move(before);
  s.stages.push_back(StageSpec{"cache", "", nlohmann::json::object()});
  return s;
}

std::string page(int n) {
  std::string body;
  for (int i = 0; i < n; ++i) body += "<li>item " + std::to_string(i) + "</li>\n";
  return body;
}

}  // namespace

TEST_SUITE("cache") {
  TEST_CASE("cache: a fresh response is served from memory with Age, the upstream sees one request") {
    ScriptedUpstream up(
        UpstreamScript{true, 0ms,
                       "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: max-age=60\r\n"
                       "Content-Length: 5\r\n\r\nhello",
                       0ms, UpstreamScript::End::Close, 100});
    ProxyFixture proxy(caching(up.url()));
    auto first = get(proxy.port(), "/a");
    CHECK(first.status == 200);
    CHECK(first.header("X-Rproxy-Cache") == "MISS");
    std::this_thread::sleep_for(1100ms);
    auto second = get(proxy.port(), "/a");
    CHECK(second.status == 200);
    CHECK(second.body == "hello");
    CHECK(second.header("X-Rproxy-Cache") == "HIT");
    CHECK(std::stoi(second.header("Age").value_or("0")) >= 1);
    // HEAD from the stored GET, a different target misses, no-store from the client bypasses.
    RawClient c(proxy.port());
    c.send("HEAD /a HTTP/1.1\r\nHost: t\r\n\r\n");
    auto head = c.read_response({.head_request = true});
    CHECK(head.header("X-Rproxy-Cache") == "HIT");
    CHECK(head.header("Content-Length") == "5");
    CHECK(get(proxy.port(), "/b").header("X-Rproxy-Cache") == "MISS");
    CHECK(get(proxy.port(), "/a", "Cache-Control: no-store\r\n").header("X-Rproxy-Cache") == "BYPASS");
    CHECK(up.heads_received() == 3);  // /a, /b, /a bypassed
  }

  TEST_CASE("cache: a stale entry is revalidated with If-None-Match and a 304 serves the stored body") {
    UpstreamScript first{
        true, 0ms,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: max-age=1\r\nETag: \"v1\"\r\n"
        "Content-Length: 8\r\n\r\nversion1"};
    UpstreamScript not_modified{
        true, 0ms, "HTTP/1.1 304 Not Modified\r\nCache-Control: max-age=60\r\nETag: \"v1\"\r\n\r\n"};
    ScriptedUpstream up({first, not_modified});
    ProxyFixture proxy(caching(up.url()));
    CHECK(get(proxy.port(), "/doc").header("X-Rproxy-Cache") == "MISS");
    std::this_thread::sleep_for(1200ms);
    auto r = get(proxy.port(), "/doc");
    CHECK(r.status == 200);
    CHECK(r.body == "version1");
    CHECK(r.header("X-Rproxy-Cache") == "REVALIDATED");
    CHECK(up.received().find("If-None-Match: \"v1\"") != std::string::npos);
    // Freshened by the 304's max-age=60: now a plain hit.
    CHECK(get(proxy.port(), "/doc").header("X-Rproxy-Cache") == "HIT");
    CHECK(up.heads_received() == 2);
    // The client's own conditional on a fresh entry is answered 304 by the cache.
    auto cond = get(proxy.port(), "/doc", "If-None-Match: \"v1\"\r\n");
    CHECK(cond.status == 304);
    CHECK(up.heads_received() == 2);
  }

  TEST_CASE("cache: Vary keeps variants apart and uncacheable answers are never stored") {
    auto e = start_echo();
    ProxyFixture proxy(caching(echo_url(*e)));
    const std::string vary = "/v?header=Cache-Control:max-age%3D60&header=Vary:Accept-Language";
    auto en = get(proxy.port(), vary, "Accept-Language: en\r\n");
    CHECK(en.header("X-Rproxy-Cache") == "MISS");
    CHECK(get(proxy.port(), vary, "Accept-Language: en\r\n").header("X-Rproxy-Cache") == "HIT");
    CHECK(get(proxy.port(), vary, "Accept-Language: fr\r\n").header("X-Rproxy-Cache") == "MISS");
    CHECK(get(proxy.port(), vary, "Accept-Language: fr\r\n").header("X-Rproxy-Cache") == "HIT");
    const std::string nostore = "/n?header=Cache-Control:no-store";
    get(proxy.port(), nostore);
    CHECK(get(proxy.port(), nostore).header("X-Rproxy-Cache") == "MISS");
    const std::string cookie = "/c?header=Cache-Control:max-age%3D60&header=Set-Cookie:session%3Dsecret";
    get(proxy.port(), cookie);
    auto again = get(proxy.port(), cookie);
    CHECK(again.header("X-Rproxy-Cache") == "MISS");
  }

  TEST_CASE("cache: a hit still passes access control, and one cached body is compressed per client") {
    TempDir dir;
    auto tokens = dir.write("tokens", "let-me-in\n");
    const auto body = page(400);
    ScriptedUpstream up(
        UpstreamScript{true, 0ms,
                       "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nCache-Control: max-age=60\r\n"
                       "Content-Length: " +
                           std::to_string(body.size()) + "\r\n\r\n" + body,
                       0ms, UpstreamScript::End::Close, 100});
    ProxyFixture proxy(caching(up.url(), {StageSpec{"compress", "", nlohmann::json::object()},
                                          StageSpec{"access", "", {{"bearer", {{"tokens_file", tokens}}}}}}));
    const std::string auth = "Authorization: Bearer let-me-in\r\n";
    auto gz = get(proxy.port(), "/p", auth + "Accept-Encoding: gzip\r\n");
    CHECK(gz.header("X-Rproxy-Cache") == "MISS");
    CHECK(gz.header("Content-Encoding") == "gzip");
    auto plain = get(proxy.port(), "/p", auth);
    CHECK(plain.header("X-Rproxy-Cache") == "HIT");
    CHECK_FALSE(plain.has_header("Content-Encoding"));
    CHECK(plain.body == body);
    auto br = get(proxy.port(), "/p", auth + "Accept-Encoding: br\r\n");
    CHECK(br.header("X-Rproxy-Cache") == "HIT");
    CHECK(br.header("Content-Encoding") == "br");
    CHECK(br.header("Vary").value_or("").find("Accept-Encoding") != std::string::npos);
    // No credentials: 401 even though the page is in the cache.
    auto denied = get(proxy.port(), "/p");
    CHECK(denied.status == 401);
    CHECK(denied.body.find("<li>") == std::string::npos);
    CHECK(up.heads_received() == 1);
  }

  TEST_CASE("cache: rproxy serve --cache-ttl caches a silent dev server, curl sees HIT") {
    auto e = start_echo();
    auto p = spawn_rproxy({"serve", "--listen", "127.0.0.1:0", "--to", echo_url(*e), "--cache-ttl", "30s"});
    auto url = "http://127.0.0.1:" + std::to_string(p.port) + "/slow?delay=300ms";
    auto t0 = std::chrono::steady_clock::now();
    auto miss = run_curl({"-D", "-", "-o", "/dev/null", url});
    CHECK(miss.out.find("X-Rproxy-Cache: MISS") != std::string::npos);
    CHECK(std::chrono::steady_clock::now() - t0 >= 300ms);
    auto t1 = std::chrono::steady_clock::now();
    auto hit = run_curl({"-D", "-", "-o", "/dev/null", url});
    CHECK(hit.out.find("X-Rproxy-Cache: HIT") != std::string::npos);
    CHECK(std::chrono::steady_clock::now() - t1 < 300ms);
  }
  TEST_CASE("cache: a revalidated answer is compressed like any other, its header and body agree") {
    const auto body = page(300);
    UpstreamScript first{
        true, 0ms,
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nCache-Control: no-cache\r\nETag: \"v1\"\r\n"
        "Content-Length: " +
            std::to_string(body.size()) + "\r\n\r\n" + body};
    UpstreamScript not_modified{true, 0ms, "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n"};
    ScriptedUpstream up({first, not_modified});
    ProxyFixture proxy(caching(up.url(), {StageSpec{"compress", "", nlohmann::json::object()}}));
    auto url = "http://127.0.0.1:" + std::to_string(proxy.port()) + "/r";
    auto miss = run_curl({"--compressed", "-H", "Accept-Encoding: gzip", "-D", "-", url});
    CHECK(miss.out.find("X-Rproxy-Cache: MISS") != std::string::npos);
    auto again = run_curl({"--compressed", "-H", "Accept-Encoding: gzip", "-D", "-", url});
    REQUIRE(again.exit_code == 0);  // curl fails (61) when the body does not match Content-Encoding
    CHECK(again.out.find("X-Rproxy-Cache: REVALIDATED") != std::string::npos);
    CHECK(again.out.find("Content-Encoding: gzip") != std::string::npos);
    CHECK(again.out.substr(again.out.find("\r\n\r\n") + 4) == body);
  }
}
