// Tests for the cors stage: preflights answered locally, headers on responses (errors included), origin
// patterns, credentials, Vary, and param errors with their paths.
#include "stages/cors.hpp"

#include <doctest/doctest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rproxy/scenario.hpp"
#include "rproxy/stage.hpp"
#include "stages/glob.hpp"

using nlohmann::json;
using rproxy::Decision;
using rproxy::Exchange;
using rproxy::stages::CorsStage;
using rproxy::stages::glob_match;

namespace {

std::unique_ptr<rproxy::Stage> build(const json& params, std::vector<std::string>& problems) {
  static const rproxy::Scenario scenario;
  return CorsStage::create(params, "stages[0].params", rproxy::StageContext{scenario, nullptr}, problems);
}

std::unique_ptr<rproxy::Stage> must_build(const json& params) {
  std::vector<std::string> problems;
  auto s = build(params, problems);
  REQUIRE(problems.empty());
  REQUIRE(s != nullptr);
  return s;
}

Exchange preflight(const std::string& origin, const std::string& headers = "") {
  Exchange ex;
  ex.request.method = "OPTIONS";
  ex.request.target = "/api/items";
  ex.request.headers.add("Origin", origin);
  ex.request.headers.add("Access-Control-Request-Method", "PUT");
  if (!headers.empty()) ex.request.headers.add("Access-Control-Request-Headers", headers);
  return ex;
}

// A simple request that went upstream (or got an error from rproxy): run both hooks.
Exchange answered(rproxy::Stage& stage, const std::optional<std::string>& origin, int status = 200) {
  Exchange ex;
  ex.request.method = "GET";
  ex.request.target = "/api/items";
  if (origin) ex.request.headers.add("Origin", *origin);
  REQUIRE(stage.on_request(ex).kind == Decision::Kind::Continue);
  ex.response.emplace();
  ex.response->status = status;
  ex.response->headers.add("Access-Control-Allow-Origin", "https://upstream-said-this.test");
  stage.on_response(ex);
  return ex;
}

}  // namespace

TEST_CASE("cors: glob_match handles stars anywhere and never matches partially") {
  CHECK(glob_match("http://localhost:*", "http://localhost:5173"));
  CHECK(glob_match("https://*.example.test", "https://app.example.test"));
  CHECK_FALSE(glob_match("https://*.example.test", "https://example.test"));
  CHECK_FALSE(glob_match("http://localhost:*", "http://localhost.evil.test"));  // ':' must be there
  CHECK(glob_match("*", ""));
  CHECK(glob_match("a*b*c", "aXXbYYc"));
  CHECK_FALSE(glob_match("a*b*c", "aXXbYY"));
  CHECK_FALSE(glob_match("http://localhost:5173", "http://localhost:51734"));
}

TEST_CASE("cors: a preflight from an allowed origin is answered 204 and never forwarded") {
  auto stage = must_build({{"origins", {"http://localhost:*"}}, {"credentials", true}, {"max_age", "1h"}});
  auto ex = preflight("http://localhost:5173", "content-type, x-token");
  auto d = stage->on_request(ex);
  REQUIRE(d.kind == Decision::Kind::Respond);
  const auto& h = d.response->headers;
  CHECK(d.response->status == 204);
  CHECK(h.get("Access-Control-Allow-Origin") == "http://localhost:5173");
  CHECK(h.get("Access-Control-Allow-Credentials") == "true");
  CHECK(h.get("Access-Control-Allow-Methods") == "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
  CHECK(h.get("Access-Control-Allow-Headers") == "content-type, x-token");  // reflected
  CHECK(h.get("Access-Control-Max-Age") == "3600");
  CHECK(h.has_token("Vary", "Origin"));
  CHECK(h.has_token("Vary", "Access-Control-Request-Headers"));
  // Its own response hook leaves the preflight answer alone.
  ex.response.emplace();
  ex.response->headers = h;
  stage->on_response(ex);
  CHECK(ex.response->headers.count("Access-Control-Allow-Origin") == 1);
}

TEST_CASE("cors: a preflight from another origin gets 403 naming it") {
  auto stage = must_build({{"origins", {"http://localhost:5173"}}});
  auto ex = preflight("https://evil.test");
  auto d = stage->on_request(ex);
  REQUIRE(d.kind == Decision::Kind::Respond);
  CHECK(d.response->status == 403);
  CHECK(d.response->headers.get("X-Rproxy-Error") == "cors_origin_not_allowed");
  CHECK_FALSE(d.response->headers.has("Access-Control-Allow-Origin"));
  CHECK(d.response->body.find("https://evil.test") != std::string::npos);
}

TEST_CASE("cors: OPTIONS without Access-Control-Request-Method is an ordinary request") {
  auto stage = must_build(json::object());
  Exchange ex;
  ex.request.method = "OPTIONS";
  ex.request.headers.add("Origin", "http://localhost:3000");
  CHECK(stage->on_request(ex).kind == Decision::Kind::Continue);
}

TEST_CASE("cors: responses get the headers, replacing the upstream's, with Vary Origin") {
  auto any = must_build(json::object());
  auto ex = answered(*any, std::string("http://localhost:3000"));
  CHECK(ex.response->headers.get("Access-Control-Allow-Origin") == "*");
  CHECK(ex.response->headers.count("Access-Control-Allow-Origin") == 1);
  CHECK(ex.response->headers.has_token("Vary", "Origin"));
  CHECK_FALSE(ex.response->headers.has("Access-Control-Allow-Credentials"));

  auto creds = must_build({{"credentials", true}, {"expose", {"X-Request-Id"}}});
  ex = answered(*creds, std::string("http://localhost:3000"), 502);  // rproxy's own error too
  CHECK(ex.response->headers.get("Access-Control-Allow-Origin") == "http://localhost:3000");
  CHECK(ex.response->headers.get("Access-Control-Allow-Credentials") == "true");
  CHECK(ex.response->headers.get("Access-Control-Expose-Headers") == "X-Request-Id");

  auto restricted = must_build({{"origins", {"http://localhost:5173"}}});
  ex = answered(*restricted, std::string("https://evil.test"));
  CHECK_FALSE(ex.response->headers.has("Access-Control-Allow-Origin"));  // the upstream's is removed too
  CHECK(ex.response->headers.has_token("Vary", "Origin"));
  ex = answered(*restricted, std::nullopt);
  CHECK(ex.response->headers.has_token("Vary", "Origin"));  // caches must not reuse it for an origin
}

TEST_CASE("cors: the null origin is only allowed when listed") {
  auto any = must_build(json::object());
  CHECK_FALSE(static_cast<CorsStage&>(*any).origin_allowed("null"));
  auto listed = must_build({{"origins", {"null"}}});
  CHECK(static_cast<CorsStage&>(*listed).origin_allowed("null"));
}

TEST_CASE("cors: params are checked with their paths") {
  std::vector<std::string> problems;
  CHECK(build({{"origins", {"http://localhost:5173/", "localhost"}},
               {"methods", {"GET", "BAD METHOD"}},
               {"max_age", "ten"},
               {"origin", "x"}},
              problems) == nullptr);
  CHECK(
      problems ==
      std::vector<std::string>{
          "stages[0].params.origin: unknown key (known: origins, credentials, methods, headers, expose, "
          "max_age)",
          "stages[0].params.origins[0]: an origin has no path (drop the trailing \"/...\"), got "
          "\"http://localhost:5173/\"",
          "stages[0].params.origins[1]: expected an origin like \"http://localhost:5173\" or a pattern like "
          "\"http://localhost:*\", got \"localhost\"",
          "stages[0].params.methods[1]: not a valid token: \"BAD METHOD\"",
          "stages[0].params.max_age: expected a duration like \"250ms\", got \"ten\""});
}
