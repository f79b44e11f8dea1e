// Tests for the headers stage: edits on built exchanges, and param errors with their paths.
#include "stages/headers.hpp"

#include <doctest/doctest.h>

#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "rproxy/scenario.hpp"
#include "rproxy/stage.hpp"
#include "support/problems.hpp"

using nlohmann::json;
using rproxy::Exchange;
using rproxy::Header;
using rproxy::Headers;
using rproxy::stages::HeadersStage;
using rproxy::test::Problems;

namespace {

using Fields = std::vector<Header>;

constexpr const char* kPath = "stages[0].params";
const std::string kBadName = "not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)";

std::unique_ptr<rproxy::Stage> build_ok(const json& params) {
  return rproxy::test::build_stage_ok<HeadersStage>(params, kPath);
}

Problems problems_of(const json& params) {
  return rproxy::test::stage_problems<HeadersStage>(params, kPath);
}

Exchange exchange_with_request(Headers headers) {
  Exchange ex;
  ex.request.method = "GET";
  ex.request.target = "/";
  ex.request.headers = std::move(headers);
  return ex;
}

}  // namespace

TEST_CASE("headers stage: set replaces every field of that name") {
  auto stage = build_ok({{"request", {{"set", {{"X-A", "new"}}}}}});
  auto ex = exchange_with_request({{"Host", "h"}, {"x-a", "1"}, {"Accept", "*/*"}, {"X-A", "2"}});
  CHECK(stage->on_request(ex).kind == rproxy::Decision::Kind::Continue);
  CHECK(ex.request.headers.fields() == Fields{{"Host", "h"}, {"x-a", "new"}, {"Accept", "*/*"}});
}

TEST_CASE("headers stage: set appends a missing field") {
  auto stage = build_ok({{"request", {{"set", {{"X-A", "v"}}}}}});
  auto ex = exchange_with_request({{"Host", "h"}});
  stage->on_request(ex);
  CHECK(ex.request.headers.fields() == Fields{{"Host", "h"}, {"X-A", "v"}});
}

TEST_CASE("headers stage: add appends and keeps existing fields") {
  auto stage = build_ok({{"request", {{"add", {{"Via", "1.1 rproxy"}}}}}});
  auto ex = exchange_with_request({{"Via", "1.1 other"}});
  stage->on_request(ex);
  CHECK(ex.request.headers.fields() == Fields{{"Via", "1.1 other"}, {"Via", "1.1 rproxy"}});
}

TEST_CASE("headers stage: remove drops every field case-insensitively") {
  auto stage = build_ok({{"request", {{"remove", {"cookie", "X-Missing"}}}}});
  auto ex = exchange_with_request({{"Cookie", "a=1"}, {"Host", "h"}, {"COOKIE", "b=2"}});
  stage->on_request(ex);
  CHECK(ex.request.headers.fields() == Fields{{"Host", "h"}});
}

TEST_CASE("headers stage: edits apply remove then set then add") {
  auto stage = build_ok({{"request",
                          {{"add", {{"X-Set", "added"}, {"X-Gone", "back"}}},
                           {"set", {{"X-Set", "set"}}},
                           {"remove", {"X-Gone"}}}}});
  auto ex = exchange_with_request({{"X-Gone", "1"}, {"X-Set", "old"}});
  stage->on_request(ex);
  CHECK(ex.request.headers.fields() == Fields{{"X-Set", "set"}, {"X-Gone", "back"}, {"X-Set", "added"}});
}

TEST_CASE("headers stage: request edits leave the response alone and vice versa") {
  auto stage =
      build_ok({{"request", {{"set", {{"X-Req", "1"}}}}}, {"response", {{"set", {{"X-Resp", "2"}}}}}});
  auto ex = exchange_with_request({});
  ex.response.emplace();
  ex.response->headers.add("Server", "up");
  stage->on_request(ex);
  CHECK(ex.request.headers.fields() == Fields{{"X-Req", "1"}});
  CHECK(ex.response->headers.fields() == Fields{{"Server", "up"}});
  CHECK(stage->on_response(ex).kind == rproxy::Decision::Kind::Continue);
  CHECK(ex.response->headers.fields() == Fields{{"Server", "up"}, {"X-Resp", "2"}});
  CHECK(ex.request.headers.fields() == Fields{{"X-Req", "1"}});
}

TEST_CASE("headers stage: response edits need a response") {
  auto stage = build_ok({{"response", {{"set", {{"X-Resp", "2"}}}, {"remove", {"Server"}}}}});
  auto ex = exchange_with_request({{"Server", "client-sent"}});
  CHECK(stage->on_response(ex).kind == rproxy::Decision::Kind::Continue);
  CHECK_FALSE(ex.response.has_value());
  CHECK(ex.request.headers.fields() == Fields{{"Server", "client-sent"}});
}

TEST_CASE("headers stage: empty params build a stage that changes nothing") {
  auto stage = build_ok(json::object());
  auto* headers = dynamic_cast<HeadersStage*>(stage.get());
  REQUIRE(headers != nullptr);
  CHECK(headers->request_edits().empty());
  CHECK(headers->response_edits().empty());
  auto ex = exchange_with_request({{"Host", "h"}});
  stage->on_request(ex);
  CHECK(ex.request.headers.fields() == Fields{{"Host", "h"}});
}

TEST_CASE("headers stage: empty values are allowed") {
  auto stage = build_ok({{"request", {{"set", {{"X-Empty", ""}}}}}});
  auto ex = exchange_with_request({});
  stage->on_request(ex);
  CHECK(ex.request.headers.fields() == Fields{{"X-Empty", ""}});
}

TEST_CASE("headers stage: value with CR or LF or NUL is rejected with its path") {
  CHECK(problems_of({{"request", {{"set", {{"X-A", "v\r\nX-Injected: 1"}}}}}}) ==
        Problems{"stages[0].params.request.set.X-A: value contains CR/LF/NUL"});
  CHECK(problems_of({{"response", {{"add", {{"X-B", std::string("a\0b", 3)}}}}}}) ==
        Problems{"stages[0].params.response.add.X-B: value contains CR/LF/NUL"});
  CHECK(problems_of({{"request", {{"set", {{"X-C", "bell\a"}}}}}}) ==
        Problems{"stages[0].params.request.set.X-C: value contains a control character"});
}

TEST_CASE("headers stage: invalid header names are rejected") {
  CHECK(problems_of({{"request", {{"set", {{"X A", "v"}}}}}}) ==
        Problems{R"(stages[0].params.request.set["X A"]: not a valid header name (letters, digits and )"
                 R"(!#$%&'*+-.^_`|~ only))"});
  CHECK(problems_of({{"response", {{"remove", {"X:Y", ""}}}}}) ==
        Problems{
            "stages[0].params.response.remove[0]: " + kBadName,
            "stages[0].params.response.remove[1]: " + kBadName,
        });
}

TEST_CASE("headers stage: framing and connection headers cannot be edited") {
  CHECK(
      problems_of({{"request", {{"set", {{"content-length", "0"}}}, {"remove", {"Transfer-Encoding"}}}},
                   {"response", {{"add", {{"Connection", "close"}}}}}}) ==
      Problems{
          "stages[0].params.request.remove[0]: Transfer-Encoding is managed by the proxy (framing and "
          "connection "
          "headers cannot be edited)",
          "stages[0].params.request.set.content-length: Content-Length is managed by the proxy (framing and "
          "connection headers cannot be edited)",
          "stages[0].params.response.add.Connection: Connection is managed by the proxy (framing and "
          "connection "
          "headers cannot be edited)",
      });
  // Host is not framing: rewriting it is a legitimate use.
  build_ok({{"request", {{"set", {{"Host", "example.com"}}}}}});
}

TEST_CASE("headers stage: unknown keys are rejected") {
  CHECK(problems_of({{"requests", json::object()}}) ==
        Problems{"stages[0].params.requests: unknown key (expected request or response)"});
  CHECK(problems_of({{"request", {{"sett", json::object()}}}}) ==
        Problems{"stages[0].params.request.sett: unknown key (expected set, add or remove)"});
}

TEST_CASE("headers stage: wrong types are rejected") {
  CHECK(problems_of(json::array()) ==
        Problems{R"(stages[0].params: expected an object with "request" and/or "response", got an array)"});
  CHECK(
      problems_of({{"request", "X-A: 1"}}) ==
      Problems{
          R"(stages[0].params.request: expected an object with "set", "add" and/or "remove", got "X-A: 1")"});
  CHECK(problems_of({{"request", {{"set", {"X-A"}}, {"add", {{"X-B", 1}}}, {"remove", "X-C"}}}}) ==
        Problems{
            "stages[0].params.request.add.X-B: expected a string, got 1",
            R"(stages[0].params.request.remove: expected an array of header names, got "X-C")",
            "stages[0].params.request.set: expected an object of header names to values, got an array",
        });
  CHECK(problems_of({{"response", {{"remove", {1}}}}}) ==
        Problems{"stages[0].params.response.remove[0]: expected a string, got 1"});
}

TEST_CASE("headers stage: names differing only in case are rejected in one section") {
  CHECK(problems_of({{"request", {{"set", {{"X-A", "1"}, {"x-a", "2"}}}}}}) ==
        Problems{R"(stages[0].params.request.set.x-a: same header as "X-A" (names are case-insensitive))"});
  CHECK(problems_of({{"request", {{"remove", {"X-A", "x-a"}}}}}) ==
        Problems{R"(stages[0].params.request.remove[1]: "x-a" is listed twice)"});
  // set and add of one name is allowed: set one value, then append another.
  build_ok({{"request", {{"set", {{"X-A", "1"}}}, {"add", {{"X-A", "2"}}}}}});
}

TEST_CASE("headers stage: removing a name that is also set is rejected") {
  CHECK(
      problems_of({{"response", {{"set", {{"Server", "rproxy"}}}, {"remove", {"server"}}}}}) ==
      Problems{R"(stages[0].params.response.remove[0]: "server" is also in set, which already replaces it)"});
}

TEST_CASE("headers stage: all param problems are reported at once") {
  CHECK(problems_of({{"request", {{"set", {{"X-A", "a\nb"}, {"Bad Name", "v"}}}}}, {"extra", 1}}).size() ==
        3);
}

TEST_CASE("headers stage: the builtin registry builds the stage") {
  const auto* info = rproxy::builtin_stage_registry().find("headers");
  REQUIRE(info != nullptr);
  Problems problems;
  const rproxy::Scenario scenario;
  auto stage = info->factory({{"request", {{"set", {{"X-A", "1"}}}}}}, "p",
                             rproxy::StageContext{scenario, nullptr}, problems);
  CHECK(problems.empty());
  REQUIRE(stage != nullptr);
  auto ex = exchange_with_request({});
  stage->on_request(ex);
  CHECK(ex.request.headers.get("x-a") == "1");
}

TEST_CASE("headers stage: param errors in a scenario carry the scenario path") {
  json doc = {
      {"version", 1},
      {"stages", {{{"type", "headers"}, {"params", {{"response", {{"set", {{"X-A", "a\rb"}}}}}}}}}},
      {"routes",
       {{{"upstreams", {"http://127.0.0.1:3000"}},
         {"stages", {{{"type", "headers"}, {"params", {{"request", {{"remove", {"Content-Length"}}}}}}}}}}}}};
  try {
    (void)rproxy::scenario_from_json(doc);
    FAIL("expected ConfigError");
  } catch (const rproxy::ConfigError& e) {
    CHECK(Problems(e.problems()) ==
          Problems{
              "stages[0].params.response.set.X-A: value contains CR/LF/NUL",
              "routes[0].stages[0].params.request.remove[0]: Content-Length is managed by "
              "the proxy (framing and "
              "connection headers cannot be edited)",
          });
  }
}
