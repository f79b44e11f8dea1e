// Unit tests for lib/store/redact: header, cookie, query and JSON body redaction.
#include "store/redact.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace rproxy;
using namespace rproxy::store;
using Fields = std::vector<Header>;

TEST_CASE("redact: default headers are replaced, case-insensitively, keeping order") {
  Headers h{{"Host", "api"},
            {"authorization", "Bearer abc"},
            {"PROXY-AUTHORIZATION", "Basic xyz"},
            {"X-Api-Key", "k1"},
            {"x-api-key", "k2"},
            {"Accept", "*/*"}};
  redact_headers(h, RedactionRules{});
  CHECK(h.fields() == Fields{{"Host", "api"},
                             {"authorization", "REDACTED"},
                             {"PROXY-AUTHORIZATION", "REDACTED"},
                             {"X-Api-Key", "REDACTED"},
                             {"x-api-key", "REDACTED"},
                             {"Accept", "*/*"}});
}

TEST_CASE("redact: Cookie keeps every cookie name, Set-Cookie keeps name and attributes") {
  Headers h{{"Cookie", "a=1; b=2"},       {"cookie", "solo"},
            {"Cookie", "x=; y=a=b;z=3 "}, {"Set-Cookie", "sid=abc; Path=/; HttpOnly"},
            {"set-cookie", "theme=dark"}, {"Set-Cookie", "bare; Secure"}};
  redact_headers(h, RedactionRules{});
  CHECK(h.fields() == Fields{{"Cookie", "a=REDACTED; b=REDACTED"},
                             {"cookie", "REDACTED"},
                             {"Cookie", "x=REDACTED; y=REDACTED;z=REDACTED "},
                             {"Set-Cookie", "sid=REDACTED; Path=/; HttpOnly"},
                             {"set-cookie", "theme=REDACTED"},
                             {"Set-Cookie", "REDACTED; Secure"}});
  // Redacting twice changes nothing more (recordings are redacted again at replay time).
  Headers again = h;
  redact_headers(again, RedactionRules{});
  CHECK(again.fields() == h.fields());
}

TEST_CASE("redact: user header lists add to the defaults") {
  RedactionRules rules;
  rules.headers = {"x-session"};  // replaces the vector, but the defaults still apply
  Headers h{{"X-Session", "s"}, {"Authorization", "t"}, {"X-Other", "o"}};
  redact_headers(h, rules);
  CHECK(h.fields() == Fields{{"X-Session", "REDACTED"}, {"Authorization", "REDACTED"}, {"X-Other", "o"}});
}

TEST_CASE("redact: query values are replaced keeping names, order and other bytes") {
  RedactionRules rules;
  rules.query = {"token", "api_key"};
  CHECK(redact_target("/p?a=1&token=xyz&b=2&token=again", rules) ==
        "/p?a=1&token=REDACTED&b=2&token=REDACTED");
  CHECK(redact_target("/p?TOKEN=x&api%5Fkey=y&&flag&token", rules) ==
        "/p?TOKEN=REDACTED&api%5Fkey=REDACTED&&flag&token");
  CHECK(redact_target("/p?x=token&token=a%20b#frag", rules) == "/p?x=token&token=REDACTED#frag");
  CHECK(redact_target("/token=1", rules) == "/token=1");
  CHECK(redact_target("/p?", rules) == "/p?");
  CHECK(redact_target("/p?a=1&token=x", RedactionRules{}) == "/p?a=1&token=x");
}

TEST_CASE("redact: JSON body keys are replaced at any depth") {
  RedactionRules rules;
  rules.json_fields = {"password", "token"};
  std::string body = R"({"user": "u", "password": "p", "nested": {"list": [{"token": {"deep": 1}}, 2]},
                        "Token": [1, 2]})";
  CHECK(redact_json_body(body, rules));
  CHECK(
      body ==
      R"({"Token":"REDACTED","nested":{"list":[{"token":"REDACTED"},2]},"password":"REDACTED","user":"u"})");

  std::string array = R"([{"password": 1}, "password"])";
  CHECK(redact_json_body(array, rules));
  CHECK(array == R"([{"password":"REDACTED"},"password"])");
}

TEST_CASE("redact: JSON bodies without listed keys keep their bytes") {
  RedactionRules rules;
  rules.json_fields = {"password"};
  std::string body = "{ \"user\" : \"u\" }";
  CHECK(redact_json_body(body, rules));
  CHECK(body == "{ \"user\" : \"u\" }");
}

TEST_CASE("redact: non-JSON, scalar and over-deep bodies are left alone") {
  RedactionRules rules;
  rules.json_fields = {"password"};
  for (std::string body : {std::string("password=1"), std::string("\"password\""), std::string("42"),
                           std::string("{\"password\": "), std::string()}) {
    CAPTURE(body);
    std::string before = body;
    CHECK(!redact_json_body(body, rules));
    CHECK(body == before);
  }
  std::string deep = std::string(10000, '[') + "{\"password\": 1}" + std::string(10000, ']');
  std::string before = deep;
  CHECK(!redact_json_body(deep, rules));
  CHECK(deep == before);
  std::string no_rules = R"({"password": 1})";
  CHECK(!redact_json_body(no_rules, RedactionRules{}));
  CHECK(no_rules == R"({"password": 1})");
}
