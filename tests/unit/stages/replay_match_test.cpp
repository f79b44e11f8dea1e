// Unit tests for lib/stages/replay_match: when a live request matches a recorded one, how misses are
// explained, how identical requests are grouped, and the JUnit rendering of a replay verdict.
#include "stages/replay_match.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using rproxy::Headers;
using rproxy::stages::compare_request;
using rproxy::stages::junit_xml;
using rproxy::stages::LiveRequest;
using rproxy::stages::matches;
using rproxy::stages::MatchRules;
using rproxy::stages::Mismatch;
using rproxy::stages::nearest;
using rproxy::stages::request_key;
using rproxy::store::Interaction;
using rproxy::store::sha256_hex;

namespace {

LiveRequest live(std::string method, std::string target, std::string content_type = "",
                 std::string body = "") {
  LiveRequest r;
  r.method = std::move(method);
  r.target = std::move(target);
  r.headers.add("Host", "127.0.0.1:8080");
  if (!content_type.empty()) r.headers.add("Content-Type", content_type);
  r.body_size = body.size();
  r.body_sha256 = sha256_hex(body);
  r.body = std::move(body);
  return r;
}

Interaction recorded(std::uint64_t id, std::string method, std::string target, std::string content_type = "",
                     std::string body = "") {
  Interaction i;
  i.id = id;
  i.method = std::move(method);
  i.target = std::move(target);
  i.request_headers.add("Host", "api.example.com");
  if (!content_type.empty()) i.request_headers.add("Content-Type", content_type);
  i.request_body.size = body.size();
  i.request_body.data = std::move(body);
  i.status = 200;
  return i;
}

// show renders mismatches for failure messages.
std::string show(const std::vector<Mismatch>& list) {
  std::string out;
  for (const auto& m : list) out += "\n  [" + m.field + "] " + m.recorded + " | " + m.live;
  return out;
}

// count counts non-overlapping occurrences of needle in hay.
std::size_t count(const std::string& hay, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + needle.size())) ++n;
  return n;
}

}  // namespace

TEST_CASE("replay_match: method and path compare exactly, host and header order never count") {
  auto rec = recorded(1, "GET", "/a%2Fb?x=1");
  rec.request_headers.add("Accept", "*/*");
  auto req = live("GET", "/a%2Fb?x=1");
  req.headers.add("User-Agent", "curl");
  CHECK(matches(req, rec, {}));
  CHECK(compare_request(req, rec, {}).empty());

  auto d = compare_request(live("POST", "/a/b?x=1"), rec, {});
  CAPTURE(show(d));
  REQUIRE(d.size() == 2);
  CHECK(d[0] == Mismatch{"method", "GET", "POST"});
  CHECK(d[1] == Mismatch{"path", "/a%2Fb", "/a/b"});  // percent-encoding is compared as is
  CHECK_FALSE(matches(live("GET", "/A%2Fb?x=1"), rec, {}));
}

TEST_CASE("replay_match: query is order-free, percent-decoded, and ignored parameters drop out") {
  auto rec = recorded(1, "GET", "/search?q=red+shoes&page=2&ts=100&tag=a&tag=b");
  CHECK(matches(live("GET", "/search?tag=b&page=2&q=red%20shoes&ts=100&tag=a"), rec, {}));

  auto req = live("GET", "/search?page=2&tag=a&tag=b&q=red%20shoes&ts=999&nonce=x");
  auto d = compare_request(req, rec, {});
  CAPTURE(show(d));
  REQUIRE(d.size() == 2);
  CHECK(d[0] == Mismatch{"query nonce", "(absent)", "x"});
  CHECK(d[1] == Mismatch{"query ts", "100", "999"});

  MatchRules rules;
  rules.ignore_query = {"ts", "nonce"};
  CHECK(matches(req, rec, rules));
  CHECK(compare_request(req, rec, rules).empty());

  // A multiset: repeats count, and all values of a name are shown together.
  d = compare_request(live("GET", "/search?q=red+shoes&page=2&ts=100&tag=a&tag=a"), rec, {});
  CAPTURE(show(d));
  REQUIRE(d.size() == 1);
  CHECK(d[0] == Mismatch{"query tag", "a, b", "a, a"});
  // "a" and "a=" are the same parameter; an empty query equals none.
  CHECK(matches(live("GET", "/x?a&b=1"), recorded(2, "GET", "/x?b=1&a="), {}));
  CHECK(matches(live("GET", "/x?"), recorded(3, "GET", "/x"), {}));
}

TEST_CASE("replay_match: JSON bodies compare structurally, with ignore rules") {
  auto rec =
      recorded(1, "POST", "/orders", "application/json",
               R"({"items":[{"id":"a1","price":10},{"id":"b2","price":2.5}],"total":12.5,"updated_at":1})");
  auto same = live("POST", "/orders", "application/json; charset=utf-8",
                   R"({ "updated_at": 1, "total": 12.50, "items": [{"price": 10.0, "id": "a1"}, )"
                   R"({"price": 2.5, "id": "b2"}] })");
  CHECK(matches(same, rec, {}));

  auto other =
      live("POST", "/orders", "application/json",
           R"({"items":[{"id":"x9","price":10},{"id":"y8","price":3}],"total":12.5,"updated_at":2})");
  auto d = compare_request(other, rec, {});
  CAPTURE(show(d));
  REQUIRE(d.size() == 4);
  CHECK(d[0] == Mismatch{"body $.items[0].id", R"("a1")", R"("x9")"});
  CHECK(d[2] == Mismatch{"body $.items[1].price", "2.5", "3"});
  CHECK(d[3].field == "body $.updated_at");

  MatchRules rules;
  rules.ignore_json = {"updated_at", "$.items[*].id"};
  d = compare_request(other, rec, rules);
  CAPTURE(show(d));
  REQUIRE(d.size() == 1);
  CHECK(d[0].field == "body $.items[1].price");
  rules.ignore_json.push_back("$.items[1].price");
  CHECK(matches(other, rec, rules));

  // Only when both sides say JSON (+json counts); otherwise the bytes must be equal.
  CHECK(matches(live("POST", "/orders", "application/vnd.api+json", R"({"b":1,"a":2})"),
                recorded(2, "POST", "/orders", "application/json", R"({"a":2,"b":1})"), {}));
  d = compare_request(live("POST", "/orders", "text/plain", R"({"b":1,"a":2})"),
                      recorded(3, "POST", "/orders", "application/json", R"({"a":2,"b":1})"), {});
  REQUIRE(d.size() == 1);
  CHECK(d[0].field == "body");
}

TEST_CASE("replay_match: form bodies are order-free pairs") {
  const char* form = "application/x-www-form-urlencoded";
  auto rec = recorded(1, "POST", "/login", form, "user=ann+lee&remember=1&scope=a&scope=b");
  CHECK(matches(live("POST", "/login", "Application/X-WWW-Form-Urlencoded; charset=utf-8",
                     "scope=b&remember=1&user=ann%20lee&scope=a"),
                rec, {}));

  auto d = compare_request(live("POST", "/login", form, "scope=b&user=bob&scope=a"), rec, {});
  CAPTURE(show(d));
  REQUIRE(d.size() == 2);
  CHECK(d[0] == Mismatch{"body form remember", "1", "(absent)"});
  CHECK(d[1] == Mismatch{"body form user", "ann lee", "bob"});

  // Not a form on both sides: bytes.
  CHECK_FALSE(
      matches(live("POST", "/login", "text/plain", "remember=1&user=ann+lee&scope=a&scope=b"), rec, {}));
}

TEST_CASE("replay_match: other bodies are byte-exact and a difference shows its offset") {
  std::string bytes("\x00\x01GIF89a\xff\xfe", 10);
  auto rec = recorded(1, "PUT", "/img", "image/gif", bytes);
  CHECK(matches(live("PUT", "/img", "image/gif", bytes), rec, {}));

  std::string changed = bytes;
  changed[8] = '\x7f';
  auto d = compare_request(live("PUT", "/img", "image/gif", changed), rec, {});
  CAPTURE(show(d));
  REQUIRE(d.size() == 1);
  CHECK(d[0] ==
        Mismatch{"body", R"(at byte 8: "…\xff\xfe" (10 bytes))", R"(at byte 8: "…\x7f\xfe" (10 bytes))"});

  d = compare_request(live("PUT", "/img", "image/gif", bytes + "!"), rec, {});
  REQUIRE(d.size() == 1);
  CHECK(d[0].recorded == "at byte 10: end of body (10 bytes)");

  // Empty equals empty whatever the types say; empty against something is a difference.
  CHECK(matches(live("POST", "/e", "application/json"), recorded(2, "POST", "/e", "text/plain"), {}));
  CHECK_FALSE(matches(live("POST", "/e", "", "x"), recorded(3, "POST", "/e"), {}));
}

TEST_CASE("replay_match: file bodies compare by size and sha256") {
  std::string big(100000, 'z');
  big[777] = 'q';
  auto rec = recorded(1, "POST", "/upload", "application/json");
  rec.request_body = {};
  rec.request_body.file = sha256_hex(big);
  rec.request_body.size = big.size();

  // The live side of a large body has only its size and digest.
  LiveRequest req = live("POST", "/upload", "application/json");
  req.body_size = big.size();
  req.body_sha256 = sha256_hex(big);
  CHECK(matches(req, rec, {}));

  std::string other = big;
  other[5] = 'y';
  req.body_sha256 = sha256_hex(other);
  auto d = compare_request(req, rec, {});
  CAPTURE(show(d));
  REQUIRE(d.size() == 1);
  CHECK(d[0].field == "body");
  CHECK(d[0].recorded == "100000 bytes, sha256 " + rec.request_body.file.substr(0, 16) + "…");
  CHECK(d[0].live == "100000 bytes, sha256 " + req.body_sha256.substr(0, 16) + "…");

  // Same digest claimed but another size: still a difference.
  req.body_sha256 = sha256_hex(big);
  req.body_size = big.size() + 1;
  CHECK_FALSE(matches(req, rec, {}));

  // A whole live body of the same bytes matches too (digest computed from the bytes).
  auto whole = live("POST", "/upload", "application/json", big);
  CHECK(matches(whole, rec, {}));
}

TEST_CASE("replay_match: headers count only when listed, case-insensitively and joined") {
  auto rec = recorded(1, "GET", "/h");
  rec.request_headers.add("Accept", "text/html");
  rec.request_headers.add("accept", "application/json");
  auto req = live("GET", "/h");
  req.headers.add("X-Trace", "1");
  CHECK(matches(req, rec, {}));  // Accept missing live: not compared by default

  MatchRules rules;
  rules.match_headers = {"ACCEPT", "X-Trace"};
  auto d = compare_request(req, rec, rules);
  CAPTURE(show(d));
  REQUIRE(d.size() == 2);
  CHECK(d[0] == Mismatch{"header ACCEPT", "text/html, application/json", "(absent)"});
  CHECK(d[1] == Mismatch{"header X-Trace", "(absent)", "1"});

  req.headers.add("ACCEPT", "text/html, application/json");
  rec.request_headers.add("x-trace", "1");
  CHECK(matches(req, rec, rules));
}

TEST_CASE("replay_match: nearest prefers the same method and path, ties to the lowest id") {
  auto req = live("POST", "/users?role=admin", "application/json", R"({"name":"ann"})");
  auto same_route = recorded(7, "POST", "/users?role=guest", "application/json", R"({"name":"bob"})");
  auto other_path = recorded(2, "POST", "/accounts?role=admin", "application/json", R"({"name":"ann"})");
  auto other_method = recorded(3, "PUT", "/users?role=admin", "application/json", R"({"name":"ann"})");
  std::vector<const Interaction*> all{&other_path, &same_route, &other_method};
  CHECK(nearest(req, all, {}) == 1u);
  // Path weighs more than method.
  CHECK(nearest(req, {&other_path, &other_method}, {}) == 1u);

  auto twin_a = recorded(9, "POST", "/users?role=x", "application/json", R"({"name":"ann"})");
  auto twin_b = recorded(4, "POST", "/users?role=y", "application/json", R"({"name":"ann"})");
  CHECK(nearest(req, {&twin_a, &twin_b}, {}) == 1u);
  CHECK(nearest(req, {nullptr, &twin_a}, {}) == 1u);
  CHECK_FALSE(nearest(req, {}, {}).has_value());
  CHECK_FALSE(nearest(req, {nullptr}, {}).has_value());
}

TEST_CASE("replay_match: request_key is equal for matching requests and different otherwise") {
  MatchRules rules;
  rules.ignore_query = {"ts"};
  rules.ignore_json = {"nonce", "$.meta.sent"};
  rules.match_headers = {"X-Tenant"};

  auto rec = recorded(1, "POST", "/q?b=2&a=1+2&ts=5", "application/json",
                      R"({"x":1,"y":[1.0,{"z":null}],"nonce":"abc","meta":{"sent":3,"v":"1"}})");
  rec.request_headers.add("x-tenant", "acme");
  auto req = live("POST", "/q?a=1%202&ts=6&b=2", "application/json",
                  R"({"meta":{"v":"1","sent":4},"y":[1,{"z":null}],"x":1.0})");
  req.headers.add("X-Tenant", "acme");
  REQUIRE(matches(req, rec, rules));
  CHECK(request_key(req, rules) == request_key(rec, rules));

  auto differs = [&](LiveRequest other) {
    CHECK_FALSE(matches(other, rec, rules));
    CHECK(request_key(other, rules) != request_key(rec, rules));
  };
  auto changed = req;
  changed.method = "PUT";
  differs(changed);
  changed = req;
  changed.target = "/q2?a=1%202&b=2";
  differs(changed);
  changed = req;
  changed.target = "/q?a=1&b=2";
  differs(changed);
  changed = req;
  changed.headers.set("X-Tenant", "other");
  differs(changed);
  changed = req;
  changed.headers.remove("X-Tenant");
  differs(changed);
  differs(
      live("POST", "/q?a=1%202&b=2", "application/json", R"({"x":2,"y":[1,{"z":null}],"meta":{"v":"1"}})"));
  // Large integers stay exact: distinct ids are distinct keys.
  CHECK(request_key(live("POST", "/n", "application/json", R"({"id":9007199254740993})"), {}) !=
        request_key(live("POST", "/n", "application/json", R"({"id":9007199254740992})"), {}));

  // Form bodies order-free; byte bodies by digest; file bodies as "sha256:<file>" like large live bodies.
  const char* form = "application/x-www-form-urlencoded";
  CHECK(request_key(live("POST", "/f", form, "a=1&b=2"), {}) ==
        request_key(recorded(2, "POST", "/f", form, "b=2&a=1"), {}));
  CHECK(request_key(live("POST", "/f", "text/plain", "a=1&b=2"), {}) ==
        request_key(recorded(2, "POST", "/f", "text/plain", "a=1&b=2"), {}));
  CHECK(request_key(live("POST", "/f", "text/plain", "a=1&b=2"), {}) !=
        request_key(recorded(2, "POST", "/f", "text/plain", "b=2&a=1"), {}));
  auto file = recorded(3, "POST", "/big");
  file.request_body.file = sha256_hex("pretend large");
  file.request_body.size = 200000;
  auto big = live("POST", "/big");
  big.body_size = 200000;
  big.body_sha256 = file.request_body.file;
  CHECK(request_key(file, {}).ends_with("sha256:" + file.request_body.file));
  CHECK(request_key(big, {}) == request_key(file, {}));

  // Parts can't run into each other: a path holding what looks like a query is not that query.
  CHECK(request_key(live("GET", "/a%3Fb=1"), {}) != request_key(live("GET", "/a?b=1"), {}));
  CHECK(request_key(live("GET", "/a?b=1%26c%3D2"), {}) != request_key(live("GET", "/a?b=1&c=2"), {}));
}

TEST_CASE("replay_match: hostile input neither throws nor leaks unprintable text") {
  std::string deep(200000, '[');
  deep += std::string(200000, ']');
  auto rec = recorded(1, "POST", "/d", "application/json", deep);
  CHECK(matches(live("POST", "/d", "application/json", deep), rec, {}));
  CHECK(request_key(live("POST", "/d", "application/json", deep), {}) == request_key(rec, {}));
  std::string other = deep;
  other[100000] = '{';
  auto d = compare_request(live("POST", "/d", "application/json", other), rec, {});
  REQUIRE(d.size() == 1);
  CHECK(d[0].field == "body");

  d = compare_request(live("GET", "/x?a=%ff%00%zz\\&b=%", "application/json", "{\"a\":"),
                      recorded(2, "GET", "/x?b=%25", "application/json", "{}"), {});
  CAPTURE(show(d));
  REQUIRE(d.size() == 2);
  CHECK(d[0] == Mismatch{"query a", "(absent)", R"(\xff\x00%zz\\)"});
  CHECK(d[1].field == "body");
  CHECK(nlohmann::json(d[0].live).dump().size() > 0);  // valid UTF-8: would throw otherwise
}

TEST_CASE("replay_match: junit_xml escapes text and counts cases") {
  auto verdict = nlohmann::json::parse(R"json({
    "hits": 5,
    "misses": [
      {"request": "GET /x?a=1&b=<2>",
       "closest": {"id": 3, "request": "GET /x?a=1",
                   "differences": [{"field": "query b", "recorded": "(absent)", "live": "<2>"}]}},
      {"request": "POST /\"quoted\"", "closest": null}],
    "unused": [{"id": 4, "request": "DELETE /z?x=1&y=2"}],
    "out_of_order": [{"id": 2, "request": "GET /a", "note": "answered before #1 \"GET /b\""}]})json");
  std::string xml = junit_xml(verdict);
  CAPTURE(xml);
  CHECK(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"));
  CHECK(xml.find("<testsuite name=\"rproxy replay\" tests=\"5\" failures=\"4\"") != std::string::npos);
  CHECK(count(xml, "<testcase ") == 5);
  CHECK(count(xml, "<failure ") == 4);
  CHECK(xml.find("name=\"recorded interactions replayed\"") != std::string::npos);
  CHECK(xml.find("5 requests answered") != std::string::npos);
  CHECK(xml.find("name=\"unmatched request 1: GET /x?a=1&amp;b=&lt;2&gt;\"") != std::string::npos);
  CHECK(xml.find("closest recording: #3 GET /x?a=1\n") != std::string::npos);
  CHECK(xml.find("  query b: recorded (absent) | live &lt;2&gt;\n") != std::string::npos);
  CHECK(xml.find("(closest: #3 GET /x?a=1, 1 difference)") != std::string::npos);
  CHECK(xml.find("no recorded interaction matches POST /&quot;quoted&quot; (no recording to compare with)") !=
        std::string::npos);
  CHECK(xml.find("name=\"unused recording #4 DELETE /z?x=1&amp;y=2\"") != std::string::npos);
  CHECK(xml.find("message=\"#2 GET /a: answered before #1 &quot;GET /b&quot;\"") != std::string::npos);
  // Nothing unescaped slipped through.
  CHECK(xml.find("<2>") == std::string::npos);
  CHECK(xml.find("&b") == std::string::npos);
  CHECK(xml.find("\"quoted") == std::string::npos);
  CHECK(junit_xml(verdict) == xml);

  // Control characters and invalid UTF-8 can't appear in XML 1.0 at all; missing fields are tolerated.
  nlohmann::json odd = {{"unused", 3}, {"misses", nlohmann::json::array()}};
  odd["misses"].push_back({{"request", std::string("GET /\x01\xff", 7)}});
  xml = junit_xml(odd);
  CAPTURE(xml);
  CHECK(xml.find("tests=\"2\" failures=\"1\"") != std::string::npos);
  CHECK(xml.find("GET /\\x01\\xff") != std::string::npos);
  CHECK(xml.find("0 requests answered") != std::string::npos);
  CHECK(junit_xml(nlohmann::json()).find("tests=\"1\" failures=\"0\"") != std::string::npos);
}
