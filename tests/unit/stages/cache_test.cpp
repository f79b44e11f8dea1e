// Tests for the cache stage: exchanges built by hand and driven the way the engine drives them
// (on_request, the upstream's head to the tees, on_response, the body to the tees, the outcome,
// on_complete) with a fake clock, so freshness and Age need no sleeping.
#include "stages/cache.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "rproxy/scenario.hpp"
#include "rproxy/stage.hpp"
#include "stages/cache_policy.hpp"
#include "support/problems.hpp"

using nlohmann::json;
using rproxy::Decision;
using rproxy::Exchange;
using rproxy::Headers;
using rproxy::ResponseHead;
using rproxy::stages::CachedResponse;
using rproxy::stages::CacheSettings;
using rproxy::stages::CacheStage;
using rproxy::stages::CacheStore;
using rproxy::stages::format_http_time;
using rproxy::stages::SysTime;
using rproxy::test::Problems;
using namespace std::chrono_literals;

namespace {

constexpr const char* kPath = "stages[0].params";

// FakeClock is moved by the test; the stage reads it through a std::function.
struct FakeClock {
  SysTime now = SysTime(std::chrono::seconds(1'700'000'000));
  CacheStage::Clock fn() {
    return [this] { return now; };
  }
  std::string date() const { return format_http_time(now); }
};

// Upstream is what the upstream answers to one exchange (when the stage lets the request through).
struct Upstream {
  int status = 200;
  Headers headers;
  std::string body;
  std::chrono::seconds delay{0};         // between the request and the response head
  std::optional<std::string> delivered;  // body bytes that actually arrive (default: body)
  std::string error;                     // Outcome::error
  bool content_length = true;            // add Content-Length for the body
};

// Run is one exchange as the client saw it.
struct Run {
  Exchange ex;
  bool forwarded = false;  // the upstream was asked
  rproxy::RequestHead upstream_request;
  int status = 0;
  Headers headers;
  std::string body;
  std::string cache() const { return std::string(headers.get("X-Rproxy-Cache").value_or("")); }
  std::string header(const char* name) const { return std::string(headers.get(name).value_or("")); }
};

Exchange request(const std::string& method, const std::string& target, Headers extra = {}) {
  Exchange ex;
  ex.route = "api";
  ex.request.method = method;
  ex.request.target = target;
  ex.request.headers.add("Host", "App.Test:8080");
  for (const auto& h : extra) ex.request.headers.add(h.name, h.value);
  return ex;
}

// Drives one exchange through the stage the way the engine does.
Run run(CacheStage& stage, FakeClock& clock, Exchange ex, const Upstream& up = {}) {
  Run r;
  r.ex = std::move(ex);
  const bool head_request = r.ex.request.method == "HEAD";
  auto d = stage.on_request(r.ex);
  if (d.kind == Decision::Kind::Respond) {
    // Answered locally: response stages still run (the cache's own on_response among them).
    REQUIRE(d.response.has_value());
    r.ex.response = ResponseHead{1, d.response->status, "", d.response->headers};
    CHECK(stage.on_response(r.ex).kind == Decision::Kind::Continue);
    r.status = r.ex.response->status;
    r.headers = r.ex.response->headers;
    r.body = head_request ? "" : d.response->body;
    r.ex.outcome.status = r.status;
    r.ex.outcome.bytes_out = r.body.size();
    stage.on_complete(r.ex);
    return r;
  }
  REQUIRE(d.kind == Decision::Kind::Continue);
  r.forwarded = true;
  r.upstream_request = r.ex.request;
  clock.now += up.delay;
  ResponseHead head{1, up.status, "", up.headers};
  const bool bodyless = head_request || up.status == 204 || up.status == 304;
  if (up.content_length && !bodyless) head.headers.add("Content-Length", std::to_string(up.body.size()));
  for (auto& t : r.ex.tees) t->response_head(head);
  r.ex.response = head;
  auto d2 = stage.on_response(r.ex);
  if (d2.kind == Decision::Kind::Respond) {
    // The upstream is dropped; the stage's answer is sent.
    REQUIRE(d2.response.has_value());
    r.status = d2.response->status;
    r.headers = d2.response->headers;
    r.body = head_request ? "" : d2.response->body;
  } else {
    const std::string sent = bodyless ? "" : up.delivered.value_or(up.body);
    // Two pieces, as a body usually arrives.
    for (auto& t : r.ex.tees) {
      t->response_body(std::string_view(sent).substr(0, sent.size() / 2));
      t->response_body(std::string_view(sent).substr(sent.size() / 2));
    }
    r.status = r.ex.response->status;
    r.headers = r.ex.response->headers;
    r.body = sent;
  }
  r.ex.outcome.status = r.status;
  r.ex.outcome.error = up.error;
  r.ex.outcome.bytes_out = r.body.size();
  stage.on_complete(r.ex);
  return r;
}

Upstream ok(const std::string& body, Headers headers) {
  Upstream up;
  up.body = body;
  up.headers = std::move(headers);
  return up;
}

CacheSettings settings_with(std::function<void(CacheSettings&)> edit = {}) {
  CacheSettings s;
  if (edit) edit(s);
  return s;
}

json report_of(const CacheStage& stage) {
  return stage.report();
}

Problems problems_of(const json& params) {
  return rproxy::test::stage_problems<CacheStage>(params, kPath);
}

}  // namespace

TEST_CASE("cache: a miss is stored and the next request is a hit with Age") {
  FakeClock clock;
  CacheStage stage(CacheSettings{}, clock.fn());
  auto up =
      ok("hello", {{"Date", clock.date()}, {"Cache-Control", "max-age=60"}, {"Content-Type", "text/plain"}});
  auto first = run(stage, clock, request("GET", "/a"), up);
  CHECK(first.forwarded);
  CHECK(first.cache() == "MISS");
  CHECK(first.ex.tags["cache"] == "miss");

  clock.now += 10s;
  auto second = run(stage, clock, request("GET", "/a"), up);
  CHECK_FALSE(second.forwarded);
  CHECK(second.status == 200);
  CHECK(second.body == "hello");
  CHECK(second.cache() == "HIT");
  CHECK(second.header("Age") == "10");
  CHECK(second.header("Content-Type") == "text/plain");
  CHECK_FALSE(second.headers.has("Content-Length"));  // the engine sets it from the body
  // The host is compared case-insensitively; another target or route is another entry.
  auto lower_host = request("GET", "/a");
  lower_host.request.headers.set("Host", "app.test:8080");
  CHECK(run(stage, clock, lower_host, up).cache() == "HIT");
  CHECK(run(stage, clock, request("GET", "/a?x=1"), up).cache() == "MISS");
  auto other_route = request("GET", "/a");
  other_route.route = "web";
  CHECK(run(stage, clock, other_route, up).cache() == "MISS");
  auto https = request("GET", "/a");
  https.scheme = "https";  // a redirect to https must not be served to https
  CHECK(run(stage, clock, https, up).cache() == "MISS");

  auto r = report_of(stage);
  CHECK(r["hits"] == 2);
  CHECK(r["misses"] == 4);
  CHECK(r["stored"] == 4);
  CHECK(r["entries"] == 4);
  CHECK(r["bytes"].get<std::uint64_t>() > 4 * 5);
}

TEST_CASE("cache: Age counts the upstream's Age, the response delay and the time stored") {
  FakeClock clock;
  CacheStage stage(CacheSettings{}, clock.fn());
  auto up = ok("x", {{"Date", clock.date()}, {"Age", "5"}, {"Cache-Control", "max-age=60"}});
  up.delay = 2s;
  run(stage, clock, request("GET", "/aged"), up);
  clock.now += 10s;
  auto hit = run(stage, clock, request("GET", "/aged"));
  CHECK(hit.cache() == "HIT");
  CHECK(hit.header("Age") == "17");  // Age 5 + delay 2 + resident 10
  CHECK(hit.headers.count("Age") == 1);
  clock.now += 44s;  // age 61 > 60: stale, no validator: a plain miss
  CHECK(run(stage, clock, request("GET", "/aged"), up).cache() == "MISS");

  // No Date from the upstream: the cache records when the response arrived (RFC 9110 §6.6.1).
  run(stage, clock, request("GET", "/nodate"), ok("n", {{"Cache-Control", "max-age=60"}}));
  const auto stored_at = clock.date();
  clock.now += 3s;
  auto undated = run(stage, clock, request("GET", "/nodate"));
  CHECK(undated.header("Date") == stored_at);
  CHECK(undated.header("Age") == "3");
}

TEST_CASE("cache: an expired entry is revalidated with If-None-Match and a 304 serves the stored body") {
  FakeClock clock;
  CacheStage stage(CacheSettings{}, clock.fn());
  const auto lm = format_http_time(clock.now - 24h);
  run(stage, clock, request("GET", "/r"),
      ok("stored body", {{"Date", clock.date()},
                         {"Cache-Control", "max-age=10"},
                         {"ETag", "\"v1\""},
                         {"Last-Modified", lm},
                         {"X-Version", "1"}}));
  clock.now += 11s;
  Upstream not_modified;
  not_modified.status = 304;
  not_modified.headers = {
      {"Date", clock.date()}, {"Cache-Control", "max-age=10"}, {"ETag", "\"v1\""}, {"X-Version", "2"}};
  auto r = run(stage, clock, request("GET", "/r"), not_modified);
  REQUIRE(r.forwarded);
  CHECK(r.upstream_request.headers.get("If-None-Match") == "\"v1\"");
  CHECK(r.upstream_request.headers.get("If-Modified-Since") == lm);
  CHECK(r.status == 200);
  CHECK(r.body == "stored body");
  CHECK(r.cache() == "REVALIDATED");
  CHECK(r.header("X-Version") == "2");  // updated from the 304
  CHECK(r.header("Age") == "0");

  // Refreshed: fresh again for 10 s from the 304.
  clock.now += 5s;
  auto hit = run(stage, clock, request("GET", "/r"));
  CHECK(hit.cache() == "HIT");
  CHECK(hit.body == "stored body");
  CHECK(hit.header("Age") == "5");
  CHECK(hit.header("X-Version") == "2");
  auto rep = report_of(stage);
  CHECK(rep["revalidated"] == 1);
  CHECK(rep["entries"] == 1);
}

TEST_CASE("cache: a 200 answering a revalidation replaces the entry") {
  FakeClock clock;
  CacheStage stage(CacheSettings{}, clock.fn());
  run(stage, clock, request("GET", "/p"),
      ok("old", {{"Date", clock.date()}, {"Cache-Control", "max-age=10"}, {"ETag", "\"v1\""}}));
  clock.now += 20s;
  auto r = run(stage, clock, request("GET", "/p"),
               ok("new", {{"Date", clock.date()}, {"Cache-Control", "max-age=10"}, {"ETag", "\"v2\""}}));
  CHECK(r.upstream_request.headers.get("If-None-Match") == "\"v1\"");
  CHECK(r.cache() == "MISS");
  CHECK(r.body == "new");
  auto hit = run(stage, clock, request("GET", "/p"));
  CHECK(hit.cache() == "HIT");
  CHECK(hit.body == "new");
  CHECK(hit.header("ETag") == "\"v2\"");
  CHECK(report_of(stage)["entries"] == 1);

  // A revalidation answered with something not storable drops the outdated copy.
  clock.now += 20s;
  run(stage, clock, request("GET", "/p"), ok("gone", {{"Cache-Control", "no-store"}}));
  CHECK(report_of(stage)["entries"] == 0);
}

TEST_CASE("cache: s-maxage beats max-age in a shared cache and is ignored by a private one") {
  FakeClock clock;
  CacheStage shared(CacheSettings{}, clock.fn());
  CacheStage priv(settings_with([](CacheSettings& s) { s.private_cache = true; }), clock.fn());
  auto up = ok("s", {{"Date", clock.date()}, {"Cache-Control", "max-age=10, s-maxage=100"}});
  run(shared, clock, request("GET", "/s"), up);
  run(priv, clock, request("GET", "/s"), up);
  clock.now += 50s;
  CHECK(run(shared, clock, request("GET", "/s")).cache() == "HIT");
  CHECK(run(priv, clock, request("GET", "/s"), up).cache() == "MISS");
}

TEST_CASE("cache: Expires gives the lifetime, an invalid or past Expires is stale at once") {
  FakeClock clock;
  CacheStage stage(CacheSettings{}, clock.fn());
  run(stage, clock, request("GET", "/e"),
      ok("e", {{"Date", clock.date()}, {"Expires", format_http_time(clock.now + 30s)}}));
  clock.now += 20s;
  CHECK(run(stage, clock, request("GET", "/e")).cache() == "HIT");
  clock.now += 11s;
  CHECK(run(stage, clock, request("GET", "/e"), ok("e", {})).cache() == "MISS");

  // Expires: 0 with a validator: stored, but revalidated on every use.
  run(stage, clock, request("GET", "/zero"),
      ok("z", {{"Date", clock.date()}, {"Expires", "0"}, {"ETag", "\"z\""}}));
  Upstream nm;
  nm.status = 304;
  nm.headers = {{"ETag", "\"z\""}};
  auto r = run(stage, clock, request("GET", "/zero"), nm);
  CHECK(r.upstream_request.headers.get("If-None-Match") == "\"z\"");
  CHECK(r.cache() == "REVALIDATED");
  // Without a validator it is not worth storing.
  run(stage, clock, request("GET", "/past"),
      ok("p", {{"Date", clock.date()}, {"Expires", format_http_time(clock.now - 1h)}}));
  CHECK(run(stage, clock, request("GET", "/past"), ok("p", {})).cache() == "MISS");
  CHECK(report_of(stage)["stored"] == 2);  // /e and /zero
}

TEST_CASE("cache: heuristic freshness is 10% of the time since Last-Modified") {
  FakeClock clock;
  CacheStage stage(CacheSettings{}, clock.fn());
  auto up = ok("h", {{"Date", clock.date()}, {"Last-Modified", format_http_time(clock.now - 10h)}});
  run(stage, clock, request("GET", "/h"), up);
  clock.now += 59min;
  CHECK(run(stage, clock, request("GET", "/h")).cache() == "HIT");
  clock.now += 2min;
  auto r = run(stage, clock, request("GET", "/h"), up);
  CHECK(r.forwarded);
  CHECK(r.upstream_request.headers.has("If-Modified-Since"));

  // heuristic off: stored for revalidation only; default_ttl replaces the heuristic.
  CacheStage strict(settings_with([](CacheSettings& s) { s.heuristic = false; }), clock.fn());
  auto up2 = ok("h", {{"Date", clock.date()}, {"Last-Modified", format_http_time(clock.now - 10h)}});
  run(strict, clock, request("GET", "/h"), up2);
  CHECK(run(strict, clock, request("GET", "/h"), up2).forwarded);
  CacheStage ttl(settings_with([](CacheSettings& s) { s.default_ttl = 5s; }), clock.fn());
  run(ttl, clock, request("GET", "/t"), ok("t", {{"Date", clock.date()}}));
  clock.now += 4s;
  CHECK(run(ttl, clock, request("GET", "/t")).cache() == "HIT");
  clock.now += 2s;
  CHECK(run(ttl, clock, request("GET", "/t"), ok("t", {})).cache() == "MISS");
  // default_ttl is for statuses cacheable by default only: a 302 needs explicit freshness.
  run(ttl, clock, request("GET", "/redirect"), [&] {
    auto u = ok("", {{"Location", "/t"}});
    u.status = 302;
    return u;
  }());
  CHECK(run(ttl, clock, request("GET", "/redirect"), ok("", {})).cache() == "MISS");
}

TEST_CASE("cache: no-store in the request bypasses, in the response nothing is stored") {
  FakeClock clock;
  CacheStage stage(CacheSettings{}, clock.fn());
  auto cacheable = ok("n", {{"Date", clock.date()}, {"Cache-Control", "max-age=60"}});
  auto r = run(stage, clock, request("GET", "/n", {{"Cache-Control", "no-store"}}), cacheable);
  CHECK(r.cache() == "BYPASS");
  CHECK(r.ex.tees.empty());
  CHECK(run(stage, clock, request("GET", "/n"), cacheable).cache() == "MISS");  // nothing was stored
  CHECK(run(stage, clock, request("GET", "/n", {{"Cache-Control", "no-store"}}), cacheable).cache() ==
        "BYPASS");

  run(stage, clock, request("GET", "/ns"),
      ok("n", {{"Cache-Control", "max-age=60, no-store"}, {"ETag", "\"a\""}}));
  CHECK(run(stage, clock, request("GET", "/ns"), cacheable).cache() == "MISS");
  auto rep = report_of(stage);
  CHECK(rep["bypass"] == 2);
  CHECK(rep["stored"] == 2);  // /n once, then /ns's second answer
}

TEST_CASE("cache: private responses are stored only by a private cache") {
  FakeClock clock;
  auto up = ok("mine", {{"Date", clock.date()}, {"Cache-Control", "private, max-age=60"}});
  CacheStage shared(CacheSettings{}, clock.fn());
  run(shared, clock, request("GET", "/me"), up);
  CHECK(run(shared, clock, request("GET", "/me"), up).cache() == "MISS");
  CacheStage priv(settings_with([](CacheSettings& s) { s.private_cache = true; }), clock.fn());
  run(priv, clock, request("GET", "/me"), up);
  CHECK(run(priv, clock, request("GET", "/me")).cache() == "HIT");
}

TEST_CASE("cache: a response setting a cookie is stored only when public or the cookie is excluded") {
  FakeClock clock;
  CacheStage stage(CacheSettings{}, clock.fn());
  auto cookie = ok("c", {{"Date", clock.date()}, {"Cache-Control", "max-age=60"}, {"Set-Cookie", "sid=1"}});
  run(stage, clock, request("GET", "/c"), cookie);
  CHECK(run(stage, clock, request("GET", "/c"), cookie).cache() == "MISS");

  run(stage, clock, request("GET", "/pub"),
      ok("c", {{"Date", clock.date()}, {"Cache-Control", "public, max-age=60"}, {"Set-Cookie", "sid=1"}}));
  auto pub = run(stage, clock, request("GET", "/pub"));
  CHECK(pub.cache() == "HIT");
  CHECK(pub.header("Set-Cookie") == "sid=1");  // public: the upstream said it is the same for everyone

  // private="Set-Cookie": stored without the cookie.
  run(stage, clock, request("GET", "/pc"),
      ok("c", {{"Date", clock.date()},
               {"Cache-Control", "max-age=60, private=\"Set-Cookie\""},
               {"Set-Cookie", "a=1"}}));
  auto pc = run(stage, clock, request("GET", "/pc"));
  CHECK(pc.cache() == "HIT");
  CHECK_FALSE(pc.headers.has("Set-Cookie"));

  // no-cache="Set-Cookie": stored without the cookie (RFC 9111 would allow sending it after a
  // revalidation; it would then reach another user). A cookie the 304 sets goes to its own client only.
  auto first = run(stage, clock, request("GET", "/nc"),
                   ok("c", {{"Date", clock.date()},
                            {"Cache-Control", "max-age=60, no-cache=\"Set-Cookie\""},
                            {"ETag", "\"n\""},
                            {"Set-Cookie", "b=1"}}));
  CHECK(first.header("Set-Cookie") == "b=1");
  auto nc = run(stage, clock, request("GET", "/nc"));
  CHECK(nc.cache() == "HIT");
  CHECK_FALSE(nc.headers.has("Set-Cookie"));
  Upstream nm;
  nm.status = 304;
  nm.headers = {{"ETag", "\"n\""}};
  auto revalidated = run(stage, clock, request("GET", "/nc", {{"Cache-Control", "no-cache"}}), nm);
  CHECK(revalidated.cache() == "REVALIDATED");
  CHECK_FALSE(revalidated.headers.has("Set-Cookie"));
  nm.headers.add("Set-Cookie", "c=3");
  revalidated = run(stage, clock, request("GET", "/nc", {{"Cache-Control", "no-cache"}}), nm);
  CHECK(revalidated.header("Set-Cookie") == "c=3");
  auto after = run(stage, clock, request("GET", "/nc"));
  CHECK(after.cache() == "HIT");
  CHECK_FALSE(after.headers.has("Set-Cookie"));
  // A generic no-cache="X-Debug" field is hidden from unvalidated hits only.
  run(stage, clock, request("GET", "/dbg"),
      ok("d", {{"Date", clock.date()},
               {"Cache-Control", "max-age=60, no-cache=\"X-Debug\""},
               {"ETag", "\"d\""},
               {"X-Debug", "1"}}));
  CHECK_FALSE(run(stage, clock, request("GET", "/dbg")).headers.has("X-Debug"));
  nm.headers = {{"ETag", "\"d\""}};
  CHECK(run(stage, clock, request("GET", "/dbg", {{"Pragma", "no-cache"}}), nm).header("X-Debug") == "1");
}

TEST_CASE("cache: requests with Authorization are not answered from the store") {
  FakeClock clock;
  CacheStage stage(CacheSettings{}, clock.fn());
  auto up = ok("public data", {{"Date", clock.date()}, {"Cache-Control", "max-age=60"}});
  run(stage, clock, request("GET", "/x"), up);
  auto authed = run(stage, clock, request("GET", "/x", {{"Authorization", "Bearer a"}}), up);
  CHECK(authed.forwarded);
  CHECK(authed.cache() == "BYPASS");

  // Its response is stored only when it allows sharing (RFC 9111 §3.5).
  run(stage, clock, request("GET", "/secret", {{"Authorization", "Bearer a"}}),
      ok("alice's", {{"Date", clock.date()}, {"Cache-Control", "max-age=60"}}));
  CHECK(run(stage, clock, request("GET", "/secret"), up).cache() == "MISS");
  auto shared = run(stage, clock, request("GET", "/shared", {{"Authorization", "Bearer a"}}),
                    ok("for all", {{"Date", clock.date()}, {"Cache-Control", "public, max-age=60"}}));
  CHECK(shared.cache() == "MISS");
  CHECK(run(stage, clock, request("GET", "/shared")).body == "for all");

  // A private cache answers them like any other request.
  CacheStage priv(settings_with([](CacheSettings& s) { s.private_cache = true; }), clock.fn());
  run(priv, clock, request("GET", "/secret", {{"Authorization", "Bearer a"}}),
      ok("alice's", {{"Date", clock.date()}, {"Cache-Control", "max-age=60"}}));
  CHECK(run(priv, clock, request("GET", "/secret", {{"Authorization", "Bearer a"}})).cache() == "HIT");
}

TEST_CASE("cache: Vary keeps a variant per Accept-Encoding and Vary: * is never served") {
  FakeClock clock;
  CacheStage stage(CacheSettings{}, clock.fn());
  auto gz = ok("GZ", {{"Date", clock.date()}, {"Cache-Control", "max-age=60"}, {"Vary", "Accept-Encoding"}});
  auto br = ok("BR", {{"Date", clock.date()}, {"Cache-Control", "max-age=60"}, {"Vary", "Accept-Encoding"}});
  auto plain =
      ok("PLAIN", {{"Date", clock.date()}, {"Cache-Control", "max-age=60"}, {"Vary", "Accept-Encoding"}});
  run(stage, clock, request("GET", "/v", {{"Accept-Encoding", "gzip, deflate"}}), gz);
  run(stage, clock, request("GET", "/v", {{"Accept-Encoding", "br"}}), br);
  run(stage, clock, request("GET", "/v"), plain);
  CHECK(report_of(stage)["entries"] == 3);
  auto a = run(stage, clock, request("GET", "/v", {{"Accept-Encoding", "gzip,deflate"}}));
  CHECK(a.cache() == "HIT");
  CHECK(a.body == "GZ");
  auto b = run(stage, clock, request("GET", "/v", {{"Accept-Encoding", "br"}}));
  CHECK(b.body == "BR");
  CHECK(run(stage, clock, request("GET", "/v")).body == "PLAIN");
  CHECK(run(stage, clock, request("GET", "/v", {{"Accept-Encoding", "identity"}}), plain).cache() == "MISS");
  CHECK(report_of(stage)["entries"] == 4);
  // A new answer for one variant replaces only that variant.
  clock.now += 61s;
  run(stage, clock, request("GET", "/v", {{"Accept-Encoding", "br"}}),
      ok("BR2", {{"Date", clock.date()}, {"Cache-Control", "max-age=60"}, {"Vary", "Accept-Encoding"}}));
  CHECK(report_of(stage)["entries"] == 4);
  CHECK(run(stage, clock, request("GET", "/v", {{"Accept-Encoding", "br"}})).body == "BR2");

  auto star = ok("*", {{"Date", clock.date()}, {"Cache-Control", "max-age=60"}, {"Vary", "*"}});
  run(stage, clock, request("GET", "/star"), star);
  CHECK(run(stage, clock, request("GET", "/star"), star).cache() == "MISS");
}

TEST_CASE("cache: HEAD is answered from a stored GET but a HEAD miss is not stored") {
  FakeClock clock;
  CacheStage stage(CacheSettings{}, clock.fn());
  auto up = ok("0123456789", {{"Date", clock.date()}, {"Cache-Control", "max-age=60"}});
  auto head_miss = run(stage, clock, request("HEAD", "/h"), up);
  CHECK(head_miss.cache() == "MISS");
  CHECK(report_of(stage)["stored"] == 0);
  run(stage, clock, request("GET", "/h"), up);
  auto ex = request("HEAD", "/h");
  auto d = stage.on_request(ex);
  REQUIRE(d.kind == Decision::Kind::Respond);
  CHECK(d.response->status == 200);
  CHECK(d.response->body == "0123456789");  // the engine sends none for HEAD, and its length
  CHECK(d.response->headers.get("X-Rproxy-Cache") == "HIT");

  // methods: ["GET"] leaves HEAD alone.
  CacheStage get_only(settings_with([](CacheSettings& s) { s.head = false; }), clock.fn());
  run(get_only, clock, request("GET", "/h"), up);
  CHECK(run(get_only, clock, request("HEAD", "/h"), up).cache() == "BYPASS");
}

TEST_CASE("cache: a successful POST invalidates the target and its same-host Location") {
  FakeClock clock;
  CacheStage stage(CacheSettings{}, clock.fn());
  auto up = ok("list", {{"Date", clock.date()}, {"Cache-Control", "max-age=600"}});
  for (const char* t : {"/items", "/items/7", "/items/8", "/other"}) run(stage, clock, request("GET", t), up);
  CHECK(report_of(stage)["entries"] == 4);

  Upstream failed;
  failed.status = 500;
  auto post = run(stage, clock, request("POST", "/items"), failed);
  CHECK(post.cache() == "BYPASS");
  CHECK(report_of(stage)["entries"] == 4);  // an error changes nothing

  Upstream created;
  created.status = 201;
  created.headers = {{"Location", "/items/7"}, {"Content-Location", "http://elsewhere.test/items/8"}};
  run(stage, clock, request("POST", "/items"), created);
  CHECK(report_of(stage)["entries"] == 2);
  CHECK(run(stage, clock, request("GET", "/items"), up).cache() == "MISS");
  CHECK(run(stage, clock, request("GET", "/items/7"), up).cache() == "MISS");
  CHECK(run(stage, clock, request("GET", "/items/8")).cache() == "HIT");  // another host's URL

  Upstream deleted;
  deleted.status = 204;
  deleted.headers = {{"Content-Location", "http://app.test:8080/other"}};
  run(stage, clock, request("DELETE", "/items/8"), deleted);
  CHECK(run(stage, clock, request("GET", "/items/8"), up).cache() == "MISS");
  CHECK(run(stage, clock, request("GET", "/other"), up).cache() == "MISS");
  // Safe methods invalidate nothing.
  run(stage, clock, request("OPTIONS", "/items"), created);
  CHECK(run(stage, clock, request("GET", "/items")).cache() == "HIT");
}

TEST_CASE("cache: only-if-cached gets 504 when nothing usable is stored") {
  FakeClock clock;
  CacheStage stage(CacheSettings{}, clock.fn());
  auto r = run(stage, clock, request("GET", "/o", {{"Cache-Control", "only-if-cached"}}));
  CHECK_FALSE(r.forwarded);
  CHECK(r.status == 504);
  CHECK(r.header("X-Rproxy-Error") == "cache_only_if_cached");
  CHECK(r.cache() == "MISS");
  run(stage, clock, request("GET", "/o"),
      ok("o", {{"Date", clock.date()}, {"Cache-Control", "max-age=10"}, {"ETag", "\"o\""}}));
  CHECK(run(stage, clock, request("GET", "/o", {{"Cache-Control", "only-if-cached"}})).cache() == "HIT");
  clock.now += 11s;  // stale: it would need the upstream
  CHECK(run(stage, clock, request("GET", "/o", {{"Cache-Control", "only-if-cached"}})).status == 504);
  CHECK(run(stage, clock, request("GET", "/o", {{"Cache-Control", "only-if-cached, max-stale"}})).status ==
        200);
}

TEST_CASE("cache: a client conditional on a fresh entry gets 304 from the cache") {
  FakeClock clock;
  CacheStage stage(CacheSettings{}, clock.fn());
  const auto lm = format_http_time(clock.now - 1h);
  run(stage, clock, request("GET", "/c"),
      ok("body", {{"Date", clock.date()},
                  {"Cache-Control", "max-age=60"},
                  {"ETag", "W/\"c1\""},
                  {"Last-Modified", lm},
                  {"Content-Type", "text/plain"},
                  {"Vary", "Origin"}}));
  auto r = run(stage, clock, request("GET", "/c", {{"If-None-Match", "\"zz\", \"c1\""}}));
  CHECK(r.status == 304);
  CHECK(r.body.empty());
  CHECK(r.cache() == "HIT");
  CHECK(r.header("ETag") == "W/\"c1\"");
  CHECK(r.header("Cache-Control") == "max-age=60");
  CHECK(r.header("Last-Modified") == lm);
  CHECK(r.header("Vary") == "Origin");
  CHECK(r.headers.has("Date"));
  CHECK_FALSE(r.headers.has("Content-Type"));
  // Another tag: the full response.
  CHECK(run(stage, clock, request("GET", "/c", {{"If-None-Match", "\"zz\""}})).status == 200);
  // If-Modified-Since, only without If-None-Match.
  CHECK(run(stage, clock, request("GET", "/c", {{"If-Modified-Since", lm}})).status == 304);
  CHECK(run(stage, clock, request("GET", "/c", {{"If-Modified-Since", format_http_time(clock.now - 2h)}}))
            .status == 200);
  CHECK(run(stage, clock, request("GET", "/c", {{"If-Modified-Since", "garbage"}})).status == 200);
  CHECK(run(stage, clock, request("GET", "/c", {{"If-None-Match", "\"zz\""}, {"If-Modified-Since", lm}}))
            .status == 200);
}

TEST_CASE(
    "cache: a client conditional on a stale entry passes the upstream's 304 on and freshens the entry") {
  FakeClock clock;
  CacheStage stage(CacheSettings{}, clock.fn());
  run(stage, clock, request("GET", "/cc"),
      ok("body", {{"Date", clock.date()}, {"Cache-Control", "max-age=10"}, {"ETag", "\"k\""}}));
  clock.now += 30s;
  Upstream nm;
  nm.status = 304;
  nm.headers = {{"Date", clock.date()}, {"Cache-Control", "max-age=10"}, {"ETag", "\"k\""}};
  auto r = run(stage, clock, request("GET", "/cc", {{"If-None-Match", "\"k\""}}), nm);
  CHECK(r.forwarded);
  CHECK(r.upstream_request.headers.get("If-None-Match") == "\"k\"");
  CHECK_FALSE(r.upstream_request.headers.has("If-Modified-Since"));
  CHECK(r.status == 304);
  CHECK(r.cache() == "REVALIDATED");
  CHECK(run(stage, clock, request("GET", "/cc")).cache() == "HIT");
  // A 304 about another representation (the client's tag, not ours) does not touch the entry.
  clock.now += 30s;
  nm.headers = {{"Date", clock.date()}, {"Cache-Control", "max-age=10"}, {"ETag", "\"other\""}};
  auto other = run(stage, clock, request("GET", "/cc", {{"If-None-Match", "\"other\""}}), nm);
  CHECK(other.status == 304);
  CHECK(other.cache() == "MISS");
  CHECK(run(stage, clock, request("GET", "/cc", {{"Cache-Control", "only-if-cached"}})).status == 504);
}

TEST_CASE("cache: request no-cache, Pragma and max-age=0 revalidate, max-age, min-fresh, max-stale apply") {
  FakeClock clock;
  CacheStage stage(CacheSettings{}, clock.fn());
  run(stage, clock, request("GET", "/q"),
      ok("q", {{"Date", clock.date()}, {"Cache-Control", "max-age=100"}, {"ETag", "\"q\""}}));
  Upstream nm;
  nm.status = 304;
  nm.headers = {{"ETag", "\"q\""}};
  for (auto h : {Headers{{"Cache-Control", "no-cache"}}, Headers{{"Pragma", "no-cache"}},
                 Headers{{"Cache-Control", "max-age=0"}}}) {
    auto r = run(stage, clock, request("GET", "/q", h), nm);
    CHECK(r.forwarded);
    CHECK(r.upstream_request.headers.get("If-None-Match") == "\"q\"");
    CHECK(r.cache() == "REVALIDATED");
  }
  // Pragma does not count next to Cache-Control.
  CHECK(run(stage, clock, request("GET", "/q", {{"Pragma", "no-cache"}, {"Cache-Control", "max-stale"}}))
            .cache() == "HIT");
  clock.now += 50s;  // age 50 of 100
  CHECK_FALSE(run(stage, clock, request("GET", "/q", {{"Cache-Control", "min-fresh=40"}}), nm).forwarded);
  CHECK_FALSE(run(stage, clock, request("GET", "/q", {{"Cache-Control", "max-age=51"}}), nm).forwarded);
  CHECK(
      run(stage, clock, request("GET", "/q", {{"Cache-Control", "max-age=49"}}), nm).forwarded);  // refreshed
  CHECK(run(stage, clock, request("GET", "/q", {{"Cache-Control", "min-fresh=101"}}), nm).forwarded);
  clock.now += 120s;  // 20 s past its lifetime (refreshed by the last 304)
  CHECK(run(stage, clock, request("GET", "/q", {{"Cache-Control", "max-stale=30"}}), nm).cache() == "HIT");
  CHECK(run(stage, clock, request("GET", "/q", {{"Cache-Control", "max-stale=10"}}), nm).cache() ==
        "REVALIDATED");

  // must-revalidate forbids serving stale, whatever the client accepts; so does a response no-cache.
  run(stage, clock, request("GET", "/m"),
      ok("m", {{"Date", clock.date()}, {"Cache-Control", "max-age=1, must-revalidate"}, {"ETag", "\"m\""}}));
  run(stage, clock, request("GET", "/nc"),
      ok("n", {{"Date", clock.date()}, {"Cache-Control", "no-cache"}, {"ETag", "\"n\""}}));
  clock.now += 5s;
  nm.headers = {{"ETag", "\"m\""}};
  CHECK(run(stage, clock, request("GET", "/m", {{"Cache-Control", "max-stale"}}), nm).cache() ==
        "REVALIDATED");
  nm.headers = {{"ETag", "\"n\""}};
  auto nc = run(stage, clock, request("GET", "/nc"), nm);
  CHECK(nc.cache() == "REVALIDATED");
  CHECK(nc.body == "n");
  CHECK(run(stage, clock, request("GET", "/nc"), nm).cache() == "REVALIDATED");  // every time
}

TEST_CASE("cache: the LRU evicts by bytes and keeps what was used recently") {
  FakeClock clock;
  // Three 1000-byte bodies do not fit in 2500 bytes; two do.
  CacheStage stage(settings_with([](CacheSettings& s) { s.max_size = 2500; }), clock.fn());
  auto up = ok(std::string(1000, 'x'), {{"Cache-Control", "max-age=600"}});
  run(stage, clock, request("GET", "/1"), up);
  run(stage, clock, request("GET", "/2"), up);
  CHECK(report_of(stage)["entries"] == 2);
  CHECK(run(stage, clock, request("GET", "/1")).cache() == "HIT");  // /1 is now the most recent
  run(stage, clock, request("GET", "/3"), up);
  auto rep = report_of(stage);
  CHECK(rep["entries"] == 2);
  CHECK(rep["evicted"] == 1);
  CHECK(rep["bytes"].get<std::uint64_t>() <= 2500);
  CHECK(run(stage, clock, request("GET", "/1")).cache() == "HIT");
  CHECK(run(stage, clock, request("GET", "/3")).cache() == "HIT");
  CHECK(run(stage, clock, request("GET", "/2"), up).cache() == "MISS");
  // An entry larger than the whole cache is never stored (and evicts nothing).
  const auto before = report_of(stage)["entries"];
  run(stage, clock, request("GET", "/huge"), ok(std::string(3000, 'y'), {{"Cache-Control", "max-age=600"}}));
  CHECK(report_of(stage)["entries"] == before);
  CHECK(run(stage, clock, request("GET", "/huge"), up).cache() == "MISS");
}

TEST_CASE("cache: bodies over max_entry stream through without being stored") {
  FakeClock clock;
  CacheStage stage(settings_with([](CacheSettings& s) { s.max_entry = 100; }), clock.fn());
  auto big = ok(std::string(101, 'b'), {{"Cache-Control", "max-age=600"}});
  auto r = run(stage, clock, request("GET", "/big"), big);
  CHECK(r.body.size() == 101);  // the client got all of it
  CHECK(run(stage, clock, request("GET", "/big"), big).cache() == "MISS");
  run(stage, clock, request("GET", "/fits"), ok(std::string(100, 'f'), {{"Cache-Control", "max-age=600"}}));
  CHECK(run(stage, clock, request("GET", "/fits")).cache() == "HIT");
}

TEST_CASE("cache: a failed, truncated or altered response is not stored") {
  FakeClock clock;
  CacheStage stage(CacheSettings{}, clock.fn());
  auto up = ok("complete body", {{"Cache-Control", "max-age=600"}});
  auto failed = up;
  failed.error = "upstream_closed";
  run(stage, clock, request("GET", "/f"), failed);
  auto shorter = up;
  shorter.delivered = "complete";  // fewer bytes than Content-Length
  run(stage, clock, request("GET", "/s"), shorter);
  // Chunked (no Content-Length) cut short by a fault stage: the client got fewer bytes than were teed.
  auto ex = request("GET", "/t");
  REQUIRE(stage.on_request(ex).kind == Decision::Kind::Continue);
  ResponseHead head{1, 200, "OK", {{"Cache-Control", "max-age=600"}, {"Transfer-Encoding", "chunked"}}};
  for (auto& t : ex.tees) t->response_head(head);
  ex.response = head;
  stage.on_response(ex);
  for (auto& t : ex.tees) t->response_body("0123456789");
  ex.outcome.status = 200;
  ex.outcome.bytes_out = 4;
  stage.on_complete(ex);
  // A later stage turned the response into another status.
  auto ex2 = request("GET", "/x");
  REQUIRE(stage.on_request(ex2).kind == Decision::Kind::Continue);
  for (auto& t : ex2.tees) t->response_head(ResponseHead{1, 200, "OK", {{"Cache-Control", "max-age=600"}}});
  ex2.response = ResponseHead{1, 503, "", {}};
  stage.on_response(ex2);
  ex2.outcome.status = 503;
  stage.on_complete(ex2);

  CHECK(report_of(stage)["stored"] == 0);
  for (const char* t : {"/f", "/s", "/t", "/x"})
    CHECK(run(stage, clock, request("GET", t), up).cache() == "MISS");
  // The same chunked response complete is stored, without its framing fields.
  auto ex3 = request("GET", "/chunked");
  REQUIRE(stage.on_request(ex3).kind == Decision::Kind::Continue);
  for (auto& t : ex3.tees) t->response_head(head);
  ex3.response = head;
  stage.on_response(ex3);
  for (auto& t : ex3.tees) t->response_body("0123456789");
  ex3.outcome.status = 200;
  ex3.outcome.bytes_out = 10;
  stage.on_complete(ex3);
  auto hit = run(stage, clock, request("GET", "/chunked"));
  CHECK(hit.cache() == "HIT");
  CHECK(hit.body == "0123456789");
  CHECK_FALSE(hit.headers.has("Transfer-Encoding"));
}

TEST_CASE("cache: statuses other than the default-cacheable ones need explicit freshness") {
  FakeClock clock;
  CacheStage stage(CacheSettings{}, clock.fn());
  auto with = [&](int status, Headers h) {
    auto u = ok("s", std::move(h));
    u.status = status;
    return u;
  };
  const auto lm = format_http_time(clock.now - 100h);
  run(stage, clock, request("GET", "/404"), with(404, {{"Date", clock.date()}, {"Last-Modified", lm}}));
  CHECK(run(stage, clock, request("GET", "/404")).status == 404);
  run(stage, clock, request("GET", "/302"), with(302, {{"Date", clock.date()}, {"Last-Modified", lm}}));
  CHECK(run(stage, clock, request("GET", "/302"), with(302, {})).cache() == "MISS");
  run(stage, clock, request("GET", "/503"), with(503, {{"Cache-Control", "max-age=5"}}));
  CHECK(run(stage, clock, request("GET", "/503")).status == 503);
  run(stage, clock, request("GET", "/206"), with(206, {{"Cache-Control", "max-age=5"}}));
  CHECK(run(stage, clock, request("GET", "/206"), with(206, {})).cache() == "MISS");
}

TEST_CASE("cache: other methods and preconditions bypass the cache") {
  FakeClock clock;
  CacheStage stage(CacheSettings{}, clock.fn());
  auto up = ok("b", {{"Cache-Control", "max-age=600"}, {"ETag", "\"b\""}});
  run(stage, clock, request("GET", "/b"), up);
  CHECK(run(stage, clock, request("OPTIONS", "/b"), up).cache() == "BYPASS");
  CHECK(run(stage, clock, request("GET", "/b", {{"If-Match", "\"b\""}}), up).cache() == "BYPASS");
  CHECK(run(stage, clock, request("GET", "/b", {{"If-Unmodified-Since", clock.date()}}), up).cache() ==
        "BYPASS");
  CHECK(run(stage, clock, request("GET", "/b")).cache() == "HIT");
  // The label survives rproxy's own error responses too (no upstream head reached the tee).
  auto ex = request("GET", "/down");
  REQUIRE(stage.on_request(ex).kind == Decision::Kind::Continue);
  ex.response = ResponseHead{1, 502, "", {{"X-Rproxy-Error", "connect_refused"}}};
  stage.on_response(ex);
  CHECK(ex.response->headers.get("X-Rproxy-Cache") == "MISS");
  ex.outcome.status = 502;
  ex.outcome.error = "connect_refused";
  stage.on_complete(ex);
}

TEST_CASE("cache: report and summary count every outcome") {
  FakeClock clock;
  CacheStage stage(CacheSettings{}, clock.fn());
  auto up = ok("r", {{"Date", clock.date()}, {"Cache-Control", "max-age=10"}, {"ETag", "\"r\""}});
  run(stage, clock, request("GET", "/r"), up);
  run(stage, clock, request("GET", "/r"));
  run(stage, clock, request("POST", "/x"), Upstream{});
  clock.now += 11s;
  Upstream nm;
  nm.status = 304;
  run(stage, clock, request("GET", "/r"), nm);
  auto rep = report_of(stage);
  CHECK(rep == json{{"hits", 1},
                    {"misses", 1},
                    {"revalidated", 1},
                    {"bypass", 1},
                    {"stored", 1},
                    {"evicted", 0},
                    {"entries", 1},
                    {"bytes", rep["bytes"]}});
  CHECK(stage.summary() ==
        "cache: 1 hits, 1 misses, 1 revalidated, 1 bypass, 1 stored, 0 evicted, 1 entries, " +
            rep["bytes"].dump() + " bytes\n");
}

TEST_CASE("cache: params are checked with their paths") {
  CHECK(problems_of({{"max_size", 0},
                     {"max_entry", "lots"},
                     {"default_ttl", "soon"},
                     {"heuristic", "yes"},
                     {"methods", {"GET", "POST"}},
                     {"private", 1},
                     {"maxsize", "1MiB"}}) ==
        Problems{
            "stages[0].params.maxsize: unknown key (known: max_size, max_entry, default_ttl, heuristic, "
            "methods, "
            "private)",
            "stages[0].params.max_size: must be above 0",
            "stages[0].params.max_entry: expected a size like \"10MiB\", got \"lots\"",
            "stages[0].params.default_ttl: expected a duration like \"250ms\", got \"soon\"",
            "stages[0].params.heuristic: expected true or false, got \"yes\"",
            "stages[0].params.private: expected true or false, got 1",
            "stages[0].params.methods[1]: only GET and HEAD are cached, got \"POST\"",
        });
  CHECK(problems_of({{"methods", json::array()}}) ==
        Problems{"stages[0].params.methods: at least one method (GET, HEAD) is required"});
  CHECK(
      problems_of({{"methods", {"HEAD"}}}) ==
      Problems{"stages[0].params.methods: HEAD is answered from stored GET responses, so it needs GET too"});
  CHECK(problems_of({{"methods", "GET"}}) ==
        Problems{"stages[0].params.methods: expected an array of strings, got \"GET\""});
  CHECK(problems_of(json::array()) == Problems{"stages[0].params: expected an object, got an array"});

  auto stage = rproxy::test::build_stage_ok<CacheStage>(json::object(), kPath);
  const auto& s = static_cast<CacheStage&>(*stage).settings();
  CHECK(s.max_size == 64ull << 20);
  CHECK(s.max_entry == 8ull << 20);
  CHECK(s.default_ttl == 0ms);
  CHECK(s.heuristic);
  CHECK(s.get);
  CHECK(s.head);
  CHECK_FALSE(s.private_cache);
  stage = rproxy::test::build_stage_ok<CacheStage>({{"max_size", "1MiB"},
                                                    {"max_entry", 4096},
                                                    {"default_ttl", "5m"},
                                                    {"methods", {"get"}},
                                                    {"private", true}},
                                                   kPath);
  const auto& t = static_cast<CacheStage&>(*stage).settings();
  CHECK(t.max_size == 1u << 20);
  CHECK(t.max_entry == 4096);
  CHECK(t.default_ttl == 5min);
  CHECK(t.get);
  CHECK_FALSE(t.head);
  CHECK(t.private_cache);
}

TEST_CASE("cache: the store replaces superseded variants and survives readers of evicted entries") {
  CacheStore store(300);
  auto entry = [](std::string body, std::string vary_value) {
    auto e = std::make_shared<CachedResponse>();
    e->body = std::move(body);
    e->vary = {{"accept", std::move(vary_value)}};
    return e;
  };
  auto by = [](const std::string& v) {
    return [v](const CachedResponse& e) { return e.vary[0].second == v; };
  };
  CHECK(store.put("k", entry(std::string(100, 'a'), "a"), by("a")));
  CHECK(store.put("k", entry(std::string(100, 'b'), "b"), by("b")));
  auto held = store.find("k", by("a"));
  REQUIRE(held);
  CHECK(store.put("k", entry(std::string(100, 'a'), "a"), by("a")));  // replaces, no eviction
  CHECK(store.stats().entries == 2);
  CHECK(store.stats().evicted == 0);
  CHECK(store.put("j", entry(std::string(100, 'c'), "c"), by("c")));  // evicts k/b (least recent)
  CHECK(store.stats().evicted == 1);
  CHECK_FALSE(store.find("k", by("b")));
  CHECK(held->body == std::string(100, 'a'));  // still readable
  CHECK(store.erase("k") == 1);
  CHECK(store.stats().entries == 1);
  CHECK_FALSE(store.put("big", entry(std::string(400, 'x'), "x"), by("x")));
  CHECK(store.stats().entries == 1);
}

TEST_CASE("cache: four threads hitting, storing and evicting at once") {
  std::atomic<std::int64_t> now_s{1'700'000'000};
  CacheSettings s;
  s.max_size = 16 * 1024;  // small: constant eviction
  CacheStage stage(s, [&] { return SysTime(std::chrono::seconds(now_s.load())); });
  auto worker = [&](int id) {
    FakeClock unused;
    for (int i = 0; i < 5000; ++i) {
      const int n = (i * 7 + id * 13) % 97;
      const std::string target = "/k" + std::to_string(n);
      Upstream up =
          ok(std::string(100 + n * 3, 'z'), {{"Cache-Control", n % 5 == 0 ? "no-cache" : "max-age=2"},
                                             {"ETag", "\"" + std::to_string(n) + "\""},
                                             {"Vary", "Accept-Encoding"}});
      if (i % 11 == 0) up.status = 304;
      Headers h;
      if (n % 3 == 0) h.add("Accept-Encoding", id % 2 ? "gzip" : "br");
      const char* method = i % 50 == 0 ? "POST" : (i % 7 == 0 ? "HEAD" : "GET");
      // run() moves a private clock; freshness here follows the shared one.
      auto r = run(stage, unused, request(method, target, h), up);
      CHECK(r.status != 0);
      if (i % 100 == 0) now_s += 1;
      if (i % 500 == 0) (void)stage.report();
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back(worker, t);
  for (auto& t : threads) t.join();
  auto rep = stage.report();
  CHECK(rep["bytes"].get<std::uint64_t>() <= s.max_size);
  CHECK(rep["hits"].get<std::uint64_t>() + rep["misses"].get<std::uint64_t>() +
            rep["revalidated"].get<std::uint64_t>() + rep["bypass"].get<std::uint64_t>() ==
        20000);
  CHECK(rep["evicted"].get<std::uint64_t>() > 0);
}
