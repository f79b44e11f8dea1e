// Tests for the rate_limit stage: GCRA admission with a fake clock, burst, keys, LRU bound, headers and
// param errors with their paths.
#include "stages/rate_limit.hpp"

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "rproxy/scenario.hpp"
#include "rproxy/stage.hpp"

using nlohmann::json;
using rproxy::Decision;
using rproxy::Exchange;
using rproxy::stages::RateLimitSettings;
using rproxy::stages::RateLimitStage;
using namespace std::chrono_literals;

namespace {

// FakeClock is advanced by the test; the stage reads it through a std::function.
struct FakeClock {
  std::chrono::steady_clock::time_point now{std::chrono::seconds(1000)};
  RateLimitStage::Clock fn() {
    return [this] { return now; };
  }
};

Exchange request_from(const std::string& ip, const std::string& api_key = "") {
  Exchange ex;
  ex.client_ip = ip;
  ex.route = "api";
  ex.request.method = "GET";
  ex.request.target = "/";
  if (!api_key.empty()) ex.request.headers.add("X-Api-Key", api_key);
  return ex;
}

RateLimitSettings per_second(std::uint64_t n, std::uint64_t burst = 0) {
  RateLimitSettings s;
  s.count = n;
  s.per = std::chrono::seconds(1);
  s.burst = burst;
  return s;
}

bool admitted(RateLimitStage& stage, Exchange ex) {
  return stage.on_request(ex).kind == Decision::Kind::Continue;
}

std::unique_ptr<rproxy::Stage> build(const json& params, std::vector<std::string>& problems) {
  static const rproxy::Scenario scenario;
  return RateLimitStage::create(params, "stages[0].params", rproxy::StageContext{scenario, nullptr},
                                problems);
}

}  // namespace

TEST_CASE("rate_limit: 10/s admits one request per 100 ms and refuses what comes early") {
  FakeClock clock;
  RateLimitStage stage(per_second(10), clock.fn());
  CHECK(admitted(stage, request_from("10.0.0.1")));
  CHECK_FALSE(admitted(stage, request_from("10.0.0.1")));
  clock.now += 99ms;
  CHECK_FALSE(admitted(stage, request_from("10.0.0.1")));
  clock.now += 1ms;
  CHECK(admitted(stage, request_from("10.0.0.1")));
  // Hammering for 10 s at 1 ms steps: exactly 10 per second get through (plus the first).
  int ok = 0;
  for (int ms = 0; ms < 10000; ++ms) {
    clock.now += 1ms;
    ok += admitted(stage, request_from("10.0.0.1"));
  }
  CHECK(ok == 100);
}

TEST_CASE("rate_limit: burst lets an idle client send burst+1 at once, then the rate applies") {
  FakeClock clock;
  RateLimitStage stage(per_second(10, 5), clock.fn());
  int ok = 0;
  for (int i = 0; i < 20; ++i) ok += admitted(stage, request_from("10.0.0.2"));
  CHECK(ok == 6);
  clock.now += 100ms;
  CHECK(admitted(stage, request_from("10.0.0.2")));
  CHECK_FALSE(admitted(stage, request_from("10.0.0.2")));
  // After a quiet second the burst is available again, never more.
  clock.now += 10s;
  ok = 0;
  for (int i = 0; i < 20; ++i) ok += admitted(stage, request_from("10.0.0.2"));
  CHECK(ok == 6);
}

TEST_CASE("rate_limit: keys - clients, header values, route and global buckets are separate") {
  FakeClock clock;
  RateLimitStage by_ip(per_second(1), clock.fn());
  CHECK(admitted(by_ip, request_from("10.0.0.1")));
  CHECK(admitted(by_ip, request_from("10.0.0.2")));
  CHECK_FALSE(admitted(by_ip, request_from("10.0.0.1")));

  auto s = per_second(1);
  s.key = RateLimitSettings::Key::Header;
  s.header = "X-Api-Key";
  RateLimitStage by_header(s, clock.fn());
  CHECK(admitted(by_header, request_from("10.0.0.1", "alice")));
  CHECK(admitted(by_header, request_from("10.0.0.1", "bob")));
  CHECK_FALSE(admitted(by_header, request_from("10.0.0.2", "alice")));  // same key from another address
  CHECK(admitted(by_header, request_from("10.0.0.1")));                 // no header: a bucket of its own
  CHECK_FALSE(admitted(by_header, request_from("10.0.0.3")));

  s.key = RateLimitSettings::Key::Global;
  RateLimitStage global(s, clock.fn());
  CHECK(admitted(global, request_from("10.0.0.1")));
  CHECK_FALSE(admitted(global, request_from("10.0.0.9")));
}

TEST_CASE("rate_limit: a 429 carries Retry-After, RateLimit headers and X-Rproxy-Error") {
  FakeClock clock;
  RateLimitSettings s;
  s.count = 6;
  s.per = std::chrono::seconds(60);  // one per 10 s
  RateLimitStage stage(s, clock.fn());
  auto first = request_from("10.0.0.1");
  REQUIRE(stage.on_request(first).kind == Decision::Kind::Continue);
  first.response.emplace();
  stage.on_response(first);
  CHECK(first.response->headers.get("RateLimit-Limit") == "6");
  CHECK(first.response->headers.get("RateLimit-Remaining") == "0");
  CHECK(first.response->headers.get("RateLimit-Reset") == "10");
  CHECK(first.response->headers.get("RateLimit-Policy") == "6;w=60");
  clock.now += 2500ms;
  auto second = request_from("10.0.0.1");
  auto d = stage.on_request(second);
  REQUIRE(d.kind == Decision::Kind::Respond);
  CHECK(d.response->status == 429);
  CHECK(d.response->headers.get("Retry-After") == "8");  // 7.5 s rounded up
  CHECK(d.response->headers.get("X-Rproxy-Error") == "rate_limited");
  CHECK(d.response->body.find("6/m per ip") != std::string::npos);
  CHECK(stage.report()["limited"] == 1);
  CHECK(stage.report()["allowed"] == 1);
}

TEST_CASE("rate_limit: remaining counts down through a burst") {
  FakeClock clock;
  RateLimitStage stage(per_second(10, 2), clock.fn());
  std::vector<std::string> remaining;
  for (int i = 0; i < 3; ++i) {
    auto ex = request_from("10.0.0.1");
    REQUIRE(stage.on_request(ex).kind == Decision::Kind::Continue);
    ex.response.emplace();
    stage.on_response(ex);
    remaining.emplace_back(*ex.response->headers.get("RateLimit-Remaining"));
  }
  CHECK(remaining == std::vector<std::string>{"2", "1", "0"});
}

TEST_CASE("rate_limit: at most max_keys buckets, the least recently used evicted first") {
  FakeClock clock;
  auto s = per_second(1);
  s.max_keys = 2;
  RateLimitStage stage(s, clock.fn());
  CHECK(admitted(stage, request_from("10.0.0.1")));
  CHECK(admitted(stage, request_from("10.0.0.2")));
  CHECK_FALSE(admitted(stage, request_from("10.0.0.1")));  // touches .1: .2 is now the oldest
  CHECK(admitted(stage, request_from("10.0.0.3")));        // evicts .2
  CHECK_FALSE(admitted(stage, request_from("10.0.0.1")));  // .1 kept its bucket
  CHECK(admitted(stage, request_from("10.0.0.2")));        // .2 starts over
  CHECK(stage.report()["keys"] == 2);
  CHECK(stage.report()["evicted_keys"] == 2);
}

TEST_CASE("rate_limit: params are checked with their paths") {
  std::vector<std::string> problems;
  CHECK(build({{"rate", "10/s"}, {"burst", 3}, {"key", "header:X-Api-Key"}}, problems) != nullptr);
  CHECK(problems.empty());
  CHECK(build(json::object(), problems) == nullptr);
  CHECK(problems == std::vector<std::string>{"stages[0].params.rate: required, e.g. \"10/s\""});
  problems.clear();
  CHECK(build({{"rate", "10 per second"}, {"key", "cookie"}, {"burst", -1}, {"limit", 3}}, problems) ==
        nullptr);
  CHECK(
      problems ==
      std::vector<std::string>{
          "stages[0].params.limit: unknown key (known: rate, burst, key, max_keys)",
          "stages[0].params.rate: expected a rate like \"10/s\", \"600/m\" or \"1000/h\", got \"10 per "
          "second\"",
          "stages[0].params.burst: expected an integer from 0 to 1000000, got -1",
          "stages[0].params.key: expected \"ip\", \"header:NAME\", \"route\" or \"global\", got \"cookie\""});
  problems.clear();
  CHECK(build({{"rate", "0/s"}}, problems) == nullptr);
  CHECK(problems == std::vector<std::string>{
                        "stages[0].params.rate: the rate must be at least 1 per window, got \"0/s\""});
}
