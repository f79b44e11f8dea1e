// Unit tests for lib/stages/shadow_diff: what counts as a difference between a primary and a shadow
// response, and how each difference is named and rendered.
#include "stages/shadow_diff.hpp"

#include <doctest/doctest.h>

#include <cstdio>
#include <string>
#include <vector>

using rproxy::CapturedResponse;
using rproxy::stages::check_ignore_entry;
using rproxy::stages::compare_responses;
using rproxy::stages::Difference;
using rproxy::stages::DiffOptions;
using rproxy::stages::Fnv1a64;

namespace {

std::uint64_t fnv(std::string_view s) {
  Fnv1a64 h;
  h.update(s);
  return h.value();
}

// response captures body the way the engine does: at most cap bytes kept, all of it sized and hashed.
CapturedResponse response(int status, std::string content_type, std::string body, std::size_t cap = 1 << 20) {
  CapturedResponse r;
  r.status = status;
  if (!content_type.empty()) r.headers.add("Content-Type", content_type);
  r.body_size = body.size();
  r.body_hash = fnv(body);
  r.body_complete = body.size() <= cap;
  r.body = body.substr(0, cap);
  return r;
}

CapturedResponse json_response(std::string body) {
  return response(200, "application/json", std::move(body));
}

// show renders differences for failure messages.
std::string show(const std::vector<Difference>& diffs) {
  std::string out;
  for (const auto& d : diffs) out += "\n  [" + d.where + "] " + d.primary + " | " + d.shadow;
  return out;
}

std::vector<Difference> diff(const CapturedResponse& p, const CapturedResponse& s,
                             const DiffOptions& opts = {}) {
  return compare_responses(p, s, opts);
}

}  // namespace

TEST_CASE("shadow_diff: Fnv1a64 matches the reference values and streams") {
  CHECK(fnv("") == 0xcbf29ce484222325ULL);
  CHECK(fnv("a") == 0xaf63dc4c8601ec8cULL);
  CHECK(fnv("foobar") == 0x85944171f73967e8ULL);
  Fnv1a64 h;
  h.update("foo");
  h.update("");
  h.update("bar");
  CHECK(h.value() == fnv("foobar"));
}

TEST_CASE("shadow_diff: identical responses have no differences") {
  CHECK(diff(json_response(R"({"a":1})"), json_response(R"({"a":1})")).empty());
  CHECK(diff(response(200, "text/plain", "hello"), response(200, "text/plain", "hello")).empty());
  CHECK(diff(response(204, "", ""), response(204, "", "")).empty());
  auto big = std::string(5000, 'x');
  CHECK(diff(response(200, "text/plain", big, 100), response(200, "text/plain", big, 100)).empty());
}

TEST_CASE("shadow_diff: status difference") {
  auto d = diff(response(200, "text/plain", "ok"), response(500, "text/plain", "ok"));
  CAPTURE(show(d));
  REQUIRE(d.size() == 1);
  CHECK(d[0] == Difference{"status", "200", "500"});
}

TEST_CASE("shadow_diff: headers compare case-insensitively, joined, and absent counts") {
  auto p = response(200, "text/plain", "ok");
  auto s = response(200, "text/plain; charset=utf-8", "ok");
  p.headers.add("cache-control", "no-store");
  p.headers.add("Cache-Control", "private");
  s.headers.add("CACHE-CONTROL", "no-store, private");
  p.headers.add("ETag", "\"1\"");
  DiffOptions opts;
  opts.headers = {"Content-Type", "Cache-Control", "ETag", "X-Missing-Both"};
  auto d = diff(p, s, opts);
  CAPTURE(show(d));
  REQUIRE(d.size() == 2);
  CHECK(d[0] == Difference{"header Content-Type", "text/plain", "text/plain; charset=utf-8"});
  CHECK(d[1] == Difference{"header ETag", "\"1\"", "(absent)"});
  // Unlisted headers are not compared.
  CHECK(diff(p, s, DiffOptions{{"Cache-Control"}, {}, 10}).empty());
}

TEST_CASE("shadow_diff: JSON key order and whitespace are ignored") {
  auto d = diff(json_response(R"({"a":1,"b":{"x":[1,2],"y":null}})"),
                json_response("{ \"b\" : { \"y\": null, \"x\": [1, 2] },\n \"a\": 1 }"));
  CAPTURE(show(d));
  CHECK(d.empty());
}

TEST_CASE("shadow_diff: JSON numbers compare by value") {
  CHECK(diff(json_response(R"({"n":1})"), json_response(R"({"n":1.0})")).empty());
  CHECK(diff(json_response(R"({"n":-0})"), json_response(R"({"n":0})")).empty());
  CHECK(diff(json_response(R"({"n":1e2})"), json_response(R"({"n":100})")).empty());
  auto d = diff(json_response(R"({"n":1})"), json_response(R"({"n":"1"})"));
  REQUIRE(d.size() == 1);
  CHECK(d[0] == Difference{"body $.n", "1", "\"1\""});
  d = diff(json_response(R"({"n":1})"), json_response(R"({"n":1.5})"));
  REQUIRE(d.size() == 1);
  CHECK(d[0] == Difference{"body $.n", "1", "1.5"});
}

TEST_CASE("shadow_diff: a nested array element difference names its exact path") {
  auto d = diff(json_response(R"({"items":[{"id":1,"price":10},{"id":2,"price":20},{"id":3,"price":30}]})"),
                json_response(R"({"items":[{"id":1,"price":10},{"id":2,"price":20},{"id":3,"price":31}]})"));
  CAPTURE(show(d));
  REQUIRE(d.size() == 1);
  CHECK(d[0] == Difference{"body $.items[2].price", "30", "31"});
}

TEST_CASE("shadow_diff: array length difference comes first, then element differences") {
  auto d = diff(json_response(R"({"items":[1,2,3]})"), json_response(R"({"items":[1,5,3,4]})"));
  CAPTURE(show(d));
  REQUIRE(d.size() == 2);
  CHECK(d[0] == Difference{"body $.items length", "3", "4"});
  CHECK(d[1] == Difference{"body $.items[1]", "2", "5"});
}

TEST_CASE("shadow_diff: missing keys, type changes and the root") {
  auto d = diff(json_response(R"({"a":1,"c":{"d":true}})"), json_response(R"({"b":2,"c":[true]})"));
  CAPTURE(show(d));
  REQUIRE(d.size() == 3);  // keys in sorted order
  CHECK(d[0] == Difference{"body $.a", "1", "(absent)"});
  CHECK(d[1] == Difference{"body $.b", "(absent)", "2"});
  CHECK(d[2] == Difference{"body $.c", R"({"d":true})", "[true]"});
  d = diff(json_response("[1]"), json_response("{}"));
  REQUIRE(d.size() == 1);
  CHECK(d[0] == Difference{"body $", "[1]", "{}"});
}

TEST_CASE("shadow_diff: keys that are not plain names render in brackets and can be ignored so") {
  auto p = json_response(R"({"a.b":{"x y":1}})");
  auto s = json_response(R"({"a.b":{"x y":2}})");
  auto d = diff(p, s);
  REQUIRE(d.size() == 1);
  CHECK(d[0].where == R"(body $["a.b"]["x y"])");
  DiffOptions opts;
  opts.ignore = {R"($["a.b"]["x y"])"};
  CHECK(diff(p, s, opts).empty());
}

TEST_CASE("shadow_diff: ignore by bare name applies at any depth") {
  auto p = json_response(
      R"({"updated_at":1,"items":[{"id":1,"updated_at":"x"}],"meta":{"deep":{"updated_at":5}}})");
  auto s = json_response(R"({"updated_at":2,"items":[{"id":1}],"meta":{"deep":{"updated_at":6}}})");
  DiffOptions opts;
  opts.ignore = {"updated_at"};
  auto d = diff(p, s, opts);
  CAPTURE(show(d));
  CHECK(d.empty());
  CHECK(diff(p, s).size() == 3);
}

TEST_CASE("shadow_diff: ignore by $ path applies at exactly that location") {
  auto p = json_response(
      R"({"meta":{"request_id":"a"},"request_id":"a","items":[{"id":1,"v":1},{"id":2,"v":2}]})");
  auto s = json_response(
      R"({"meta":{"request_id":"b"},"request_id":"b","items":[{"id":8,"v":1},{"id":9,"v":3}]})");
  DiffOptions opts;
  opts.ignore = {"$.meta.request_id", "$.items[*].id"};
  auto d = diff(p, s, opts);
  CAPTURE(show(d));
  REQUIRE(d.size() == 2);
  CHECK(d[0] == Difference{"body $.items[1].v", "2", "3"});
  CHECK(d[1] == Difference{"body $.request_id", "\"a\"", "\"b\""});

  opts.ignore = {"$.items[1]", "$.*.request_id", "$.request_id"};
  d = diff(p, s, opts);
  CAPTURE(show(d));
  REQUIRE(d.size() == 1);
  CHECK(d[0].where == "body $.items[0].id");

  opts.ignore = {"$"};  // the whole document
  CHECK(diff(p, s, opts).empty());
}

TEST_CASE("shadow_diff: +json media types compare structurally, others by bytes") {
  auto p = response(200, "application/problem+json; charset=utf-8", R"({"a":1,"b":2})");
  auto s = response(200, "Application/Problem+JSON; charset=utf-8", R"({"b":2,"a":1})");
  DiffOptions no_headers{{}, {}, 10};
  CHECK(diff(p, s, no_headers).empty());

  p = response(200, "text/plain", R"({"a":1,"b":2})");
  s = response(200, "text/plain", R"({"b":2,"a":1})");
  auto d = diff(p, s);
  REQUIRE(d.size() == 1);
  CHECK(d[0].where == "body");

  // Both sides must be JSON.
  p = response(200, "application/json", R"({"a":1,"b":2})");
  d = diff(p, s, no_headers);
  REQUIRE(d.size() == 1);
  CHECK(d[0].where == "body");
}

TEST_CASE("shadow_diff: invalid JSON falls back to a byte comparison") {
  auto d = diff(json_response(R"({"a":1,"b":)"), json_response(R"({"a":1,"b":2})"));
  CAPTURE(show(d));
  REQUIRE(d.size() == 1);
  CHECK(d[0] == Difference{"body", "at byte 11: end of body (11 bytes)", "at byte 11: \"…2}\" (13 bytes)"});
  // Unparseable but identical is equal.
  CHECK(diff(json_response("{oops"), json_response("{oops")).empty());
}

TEST_CASE("shadow_diff: too deeply nested JSON is compared as bytes, without recursion") {
  std::string deep_p(100000, '[');
  deep_p += std::string(100000, ']');
  std::string deep_s = deep_p;
  deep_s[50000] = '{';
  auto d = diff(json_response(deep_p), json_response(deep_s));
  REQUIRE(d.size() == 1);
  CHECK(d[0].where == "body");
  CHECK(d[0].primary.starts_with("at byte 50000: \"…[[["));
  CHECK(diff(json_response(deep_p), json_response(deep_p)).empty());
}

TEST_CASE("shadow_diff: binary bodies show the first differing offset, escaped") {
  std::string p_body("\x00\x01GIF89a\xff\xfe\r\n\"tail", 17);
  std::string s_body = p_body;
  s_body[8] = '\x7f';
  auto d = diff(response(200, "image/gif", p_body), response(200, "image/gif", s_body));
  CAPTURE(show(d));
  REQUIRE(d.size() == 1);
  CHECK(d[0] == Difference{"body", R"(at byte 8: "…\xff\xfe\r\n\"tail" (17 bytes))",
                           R"(at byte 8: "…\x7f\xfe\r\n\"tail" (17 bytes))"});

  // A long excerpt is cut short and the rendering stays within the limit.
  std::string long_p(1000, '\x01');
  std::string long_s = long_p;
  long_s[0] = '\x02';
  d = diff(response(200, "", long_p), response(200, "", long_s));
  REQUIRE(d.size() == 1);
  CHECK(d[0].primary.starts_with(R"(at byte 0: "\x01\x01)"));
  CHECK(d[0].primary.ends_with("…\" (1000 bytes)"));
  CHECK(d[0].primary.size() <= 90);
}

TEST_CASE("shadow_diff: bodies over the capture cap compare by size and hash") {
  std::string a(5000, 'a');
  std::string b = a;
  b[4000] = 'b';  // past the 100 captured bytes
  DiffOptions opts;

  auto d = diff(response(200, "text/plain", a, 100), response(200, "text/plain", b, 100), opts);
  CAPTURE(show(d));
  REQUIRE(d.size() == 1);
  CHECK(d[0].where == "body");
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(fnv(a)));
  CHECK(d[0].primary == "past the first 100 bytes, fnv1a " + std::string(hex) + " (5000 bytes)");
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(fnv(b)));
  CHECK(d[0].shadow == "past the first 100 bytes, fnv1a " + std::string(hex) + " (5000 bytes)");

  d = diff(response(200, "text/plain", a, 100), response(200, "text/plain", a + "a", 100), opts);
  REQUIRE(d.size() == 1);
  CHECK(d[0].where == "body size");
  CHECK(d[0].primary.ends_with("(5000 bytes)"));
  CHECK(d[0].shadow.ends_with("(5001 bytes)"));

  // A difference inside the captured prefix is shown at its offset.
  b = a;
  b[10] = 'z';
  d = diff(response(200, "text/plain", a, 100), response(200, "text/plain", b, 100), opts);
  REQUIRE(d.size() == 1);
  CHECK(d[0].shadow.starts_with("at byte 10: \"…zaaa"));

  // JSON over the cap cannot be parsed, so equal size and hash mean equal even if keys were reordered.
  std::string big_json = R"({"pad":")" + std::string(200, 'p') + R"("})";
  CHECK(
      diff(response(200, "application/json", big_json, 100), response(200, "application/json", big_json, 100))
          .empty());

  // One side complete, the other over the cap.
  d = diff(response(200, "text/plain", a.substr(0, 50), 100), response(200, "text/plain", a, 100), opts);
  REQUIRE(d.size() == 1);
  CHECK(d[0] == Difference{"body size", "at byte 50: end of body (50 bytes)",
                           "at byte 50: \"…" + std::string(32, 'a') + "…\" (5000 bytes)"});
}

TEST_CASE("shadow_diff: a failed exchange is compared by its error only") {
  CapturedResponse failed;
  failed.error = "connect refused";
  auto ok = response(200, "application/json", R"({"a":1})");

  auto d = diff(ok, failed);
  REQUIRE(d.size() == 1);
  CHECK(d[0] == Difference{"error", "(absent)", "connect refused"});

  d = diff(failed, ok);
  REQUIRE(d.size() == 1);
  CHECK(d[0] == Difference{"error", "connect refused", "(absent)"});

  CapturedResponse timeout;
  timeout.error = "timeout";
  d = diff(failed, timeout);
  REQUIRE(d.size() == 1);
  CHECK(d[0] == Difference{"error", "connect refused", "timeout"});

  CHECK(diff(failed, failed).empty());
}

TEST_CASE("shadow_diff: max_differences caps the whole list") {
  std::string p = "{", s = "{";
  for (int i = 0; i < 30; ++i) {
    std::string key = "k" + std::string(i < 10 ? "0" : "") + std::to_string(i);
    p += (i ? "," : "") + ("\"" + key + "\":1");
    s += (i ? "," : "") + ("\"" + key + "\":2");
  }
  p += "}";
  s += "}";
  auto pr = response(200, "application/json", p);
  auto sr = response(201, "application/json", s);
  CHECK(diff(pr, sr).size() == 10);
  DiffOptions opts;
  opts.max_differences = 3;
  auto d = diff(pr, sr, opts);
  REQUIRE(d.size() == 3);
  CHECK(d[0].where == "status");
  CHECK(d[1].where == "body $.k00");
  CHECK(d[2].where == "body $.k01");
  opts.max_differences = 100;
  CHECK(diff(pr, sr, opts).size() == 31);
  opts.max_differences = 0;  // behaves as 1
  CHECK(diff(pr, sr, opts).size() == 1);
}

TEST_CASE("shadow_diff: long renderings are cut without splitting UTF-8") {
  std::string long_value(200, 'v');
  auto d =
      diff(json_response(R"({"s":")" + long_value + "\"}"), json_response(R"({"s":"é)" + long_value + "\"}"));
  REQUIRE(d.size() == 1);
  CHECK(d[0].primary.size() <= 80);
  CHECK(d[0].primary.ends_with("…"));
  CHECK(d[0].shadow.starts_with("\"é"));
  std::string multibyte;
  for (int i = 0; i < 100; ++i) multibyte += "é";
  d = diff(json_response(R"({"s":"x)" + multibyte + "\"}"), json_response(R"({"s":"x"})"));
  REQUIRE(d.size() == 1);
  auto cut = d[0].primary.substr(0, d[0].primary.size() - std::string("…").size());
  CHECK(cut.size() % 2 == 0);  // '"x' plus whole two-byte characters
}

TEST_CASE("shadow_diff: check_ignore_entry accepts names and paths, rejects malformed ones") {
  for (const char* ok : {"updated_at", "x-request-id", "$", "$.meta.request_id", "$.items[*].id",
                         "$.items[0]", "$[3]", "$.*.id", R"($["a.b"].c)", R"($[""])"}) {
    CAPTURE(ok);
    CHECK_FALSE(check_ignore_entry(ok).has_value());
  }
  for (const char* bad : {"", "$.", "$..a", "$.a[", "$.a[1", "$.a[x]", "$.a]", "$a", "$.a[*", R"($[")", "a.b",
                          "a[0]", "$.a[99999999999999999999]"}) {
    CAPTURE(bad);
    auto error = check_ignore_entry(bad);
    REQUIRE(error.has_value());
    CHECK_FALSE(error->empty());
  }
  CHECK(*check_ignore_entry("$..a") == "ignore path \"$..a\": expected a field name after '.' at offset 2");
  CHECK(*check_ignore_entry("$.a[") ==
        "ignore path \"$.a[\": expected an index, * or a quoted name after '[' at offset 4");
  CHECK(*check_ignore_entry("") == "ignore entry is empty");
}

TEST_CASE("shadow_diff: malformed ignore entries in options are skipped, not guessed at") {
  DiffOptions opts;
  opts.ignore = {"$..a", "", "$.b"};
  auto d = diff(json_response(R"({"a":1,"b":1})"), json_response(R"({"a":2,"b":2})"), opts);
  REQUIRE(d.size() == 1);
  CHECK(d[0].where == "body $.a");
}
