// Tests for the cache stage's RFC 9111 rules on their own: HTTP dates, Cache-Control parsing, freshness
// lifetime, age, storability, entity tags, Vary and 304 freshening.
#include "stages/cache_policy.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

using rproxy::Headers;
using rproxy::stages::CacheControl;
using rproxy::stages::FreshnessRules;
using rproxy::stages::StoreQuestion;
using rproxy::stages::SysTime;
using namespace std::chrono_literals;
namespace cache = rproxy::stages;

namespace {

// 1994-11-06 08:49:37 UTC, the RFC's own example date.
const SysTime kExample = SysTime(784111777s);

std::int64_t epoch_of(const std::optional<SysTime>& t) {
  REQUIRE(t.has_value());
  return std::chrono::duration_cast<std::chrono::seconds>(t->time_since_epoch()).count();
}

std::chrono::milliseconds lifetime(int status, const Headers& h, const FreshnessRules& rules = {}) {
  return cache::freshness_lifetime(status, h, cache::parse_cache_control(h), kExample, rules);
}

std::optional<std::string> storable(int status, const Headers& h, bool authorization = false,
                                    bool shared = true) {
  auto cc = cache::parse_cache_control(h);
  auto life = cache::freshness_lifetime(status, h, cc, kExample, FreshnessRules{shared, true, 0ms});
  return cache::why_not_storable(StoreQuestion{status, h, cc, authorization, shared, life});
}

}  // namespace

TEST_CASE("cache policy: HTTP dates are read in IMF-fixdate, RFC 850 and asctime form") {
  CHECK(epoch_of(cache::parse_http_time("Sun, 06 Nov 1994 08:49:37 GMT")) == 784111777);
  CHECK(epoch_of(cache::parse_http_time("Sunday, 06-Nov-94 08:49:37 GMT")) == 784111777);
  CHECK(epoch_of(cache::parse_http_time("Sun Nov  6 08:49:37 1994")) == 784111777);
  CHECK(epoch_of(cache::parse_http_time("Sun Nov 16 08:49:37 1994")) == 784111777 + 10 * 86400);
  // Leniency that costs nothing: surrounding whitespace, case, a one-digit day in the IMF form.
  CHECK(epoch_of(cache::parse_http_time("  sun, 06 NOV 1994 08:49:37 gmt ")) == 784111777);
  CHECK(epoch_of(cache::parse_http_time("Sun, 6 Nov 1994 08:49:37 GMT")) == 784111777);
  CHECK(epoch_of(cache::parse_http_time("Thu, 01 Jan 1970 00:00:00 GMT")) == 0);
  CHECK(epoch_of(cache::parse_http_time("Thu, 29 Feb 2024 23:59:59 GMT")) == 1709251199);
  // RFC 850's two-digit year: the one within 50 years ahead of now, else the past one ("94" above).
  CHECK(epoch_of(cache::parse_http_time("Tuesday, 01-Jan-30 00:00:00 GMT")) == 1893456000);
  // Printing is IMF-fixdate and reads back.
  CHECK(cache::format_http_time(kExample) == "Sun, 06 Nov 1994 08:49:37 GMT");
  CHECK(cache::format_http_time(kExample + 500ms) == "Sun, 06 Nov 1994 08:49:37 GMT");
  CHECK(cache::format_http_time(SysTime(1709251199s)) == "Thu, 29 Feb 2024 23:59:59 GMT");
  CHECK(cache::parse_http_time(cache::format_http_time(SysTime(1700000000s))) == SysTime(1700000000s));
}

TEST_CASE("cache policy: malformed HTTP dates are refused") {
  for (const char* bad : {
           "",
           "0",
           "-1",
           "yesterday",
           "Sun, 06 Nov 1994 08:49:37",         // no zone
           "Sun, 06 Nov 1994 08:49:37 UTC",     // only GMT
           "Sun, 06 Nov 1994 08:49:37 GMT x",   // trailing text
           "Sun, 31 Feb 1994 08:49:37 GMT",     // no such day
           "Sun, 29 Feb 2023 08:49:37 GMT",     // not a leap year
           "Sun, 06 Nov 1994 24:00:00 GMT",     // hour
           "Sun, 06 Nov 1994 08:60:00 GMT",     // minute
           "Sun, 06 Foo 1994 08:49:37 GMT",     // month
           "Xyz, 06 Nov 1994 08:49:37 GMT",     // day name
           "Sun, 06 Nov 94 08:49:37 GMT",       // two-digit year in the IMF form
           "Sun 06 Nov 1994 08:49:37 GMT",      // no comma
           "Sunday, 06-Nov-1994 08:49:37 GMT",  // four-digit year in the RFC 850 form
           "Sun, 06-Nov-94 08:49:37 GMT",       // RFC 850 needs the long day name
           "Sun Nov 6 08:49:37 1994",           // asctime pads the day with a space
           "Sun Nov  6 08:49:37 94",            // asctime year
           "Sun, 06 Nov 1994 8:49:37 GMT",      // one-digit hour
       }) {
    CAPTURE(bad);
    CHECK_FALSE(cache::parse_http_time(bad).has_value());
  }
}

TEST_CASE("cache policy: Cache-Control directives in any case, spacing and quoting") {
  auto cc = cache::parse_cache_control("MAX-AGE=60, Public ,must-revalidate");
  CHECK(cc.max_age == 60);
  CHECK(cc.is_public);
  CHECK(cc.must_revalidate);
  CHECK_FALSE(cc.no_cache);

  CHECK(cache::parse_cache_control("max-age=\"60\"").max_age == 60);  // recipients accept both forms
  CHECK(cache::parse_cache_control("  ,, max-age = 60 ,").max_age == 60);
  CHECK(cache::parse_cache_control("s-maxage=99999999999999999999").s_maxage == (std::int64_t{1} << 31));

  cc = cache::parse_cache_control("no-cache=\"Set-Cookie, X-Debug\", private=\"Authorization-Info\"");
  CHECK_FALSE(cc.no_cache);  // qualified: only the fields
  CHECK(cc.no_cache_fields == std::vector<std::string>{"set-cookie", "x-debug"});
  CHECK_FALSE(cc.is_private);
  CHECK(cc.private_fields == std::vector<std::string>{"authorization-info"});
  CHECK(cache::parse_cache_control("no-cache").no_cache);
  CHECK(cache::parse_cache_control("no-cache=\"\"").no_cache);
  CHECK(cache::parse_cache_control("private").is_private);

  // A comma inside a quoted argument does not end the directive; junk before the next comma is skipped.
  cc = cache::parse_cache_control("ext=\"a, max-age=5\", max-age=7 junk \"x,y\", no-store");
  CHECK(cc.max_age == 7);
  CHECK(cc.no_store);
  // Escapes in quoted strings.
  CHECK(cache::parse_cache_control(R"(foo="a\"b", max-age=3)").max_age == 3);

  // Request directives.
  cc = cache::parse_cache_control("max-stale, min-fresh=5, only-if-cached");
  CHECK(cc.max_stale_any);
  CHECK_FALSE(cc.max_stale.has_value());
  CHECK(cc.min_fresh == 5);
  CHECK(cc.only_if_cached);
  CHECK(cache::parse_cache_control("max-stale=30").max_stale == 30);

  // Several field lines are one list.
  Headers h{{"Cache-Control", "public"}, {"cache-control", "max-age=5"}};
  cc = cache::parse_cache_control(h);
  CHECK(cc.is_public);
  CHECK(cc.max_age == 5);

  // Pragma: no-cache counts only without Cache-Control.
  CHECK(cache::request_cache_control(Headers{{"Pragma", "no-cache"}}).no_cache);
  CHECK_FALSE(
      cache::request_cache_control(Headers{{"Pragma", "no-cache"}, {"Cache-Control", "max-age=5"}}).no_cache);
}

TEST_CASE("cache policy: conflicting or unreadable max-age makes a response stale (RFC 9111 4.2.1)") {
  // Choice: differing duplicates are "stale", not "first wins"; identical duplicates are harmless.
  auto cc = cache::parse_cache_control("max-age=60, max-age=120");
  CHECK(cc.conflicting);
  CHECK(cc.max_age == 60);  // a request gets the smaller one
  CHECK_FALSE(cache::parse_cache_control("max-age=60, MAX-AGE=\"60\"").conflicting);
  CHECK(cache::parse_cache_control("max-age=abc").conflicting);
  CHECK(cache::parse_cache_control("max-age=abc").max_age == 0);
  CHECK(cache::parse_cache_control("max-age").conflicting);
  CHECK(cache::parse_cache_control("s-maxage=1, s-maxage=2").conflicting);
  CHECK(cache::parse_cache_control("max-age=-1").conflicting);

  CHECK(lifetime(200, {{"Cache-Control", "max-age=60, max-age=120"}}) == 0ms);
  CHECK(lifetime(200, {{"Cache-Control", "max-age=60, max-age=60"}}) == 60s);
  CHECK(lifetime(200, {{"Cache-Control", "max-age=1.5"}}) == 0ms);
}

TEST_CASE(
    "cache policy: freshness lifetime takes s-maxage, max-age, Expires, then default_ttl or heuristic") {
  const auto date = cache::format_http_time(kExample);
  CHECK(lifetime(200, {{"Cache-Control", "max-age=10, s-maxage=100"}}) == 100s);
  CHECK(lifetime(200, {{"Cache-Control", "max-age=10, s-maxage=100"}}, FreshnessRules{false, true, 0ms}) ==
        10s);
  CHECK(lifetime(200, {{"Cache-Control", "max-age=10"},
                       {"Expires", cache::format_http_time(kExample + 1h)}}) == 10s);
  CHECK(lifetime(200, {{"Date", date}, {"Expires", cache::format_http_time(kExample + 1h)}}) == 1h);
  CHECK(lifetime(200, {{"Expires", cache::format_http_time(kExample + 30s)}}) ==
        30s);  // no Date: received time
  CHECK(lifetime(200, {{"Date", date}, {"Expires", cache::format_http_time(kExample - 1h)}}) == 0ms);
  CHECK(lifetime(200, {{"Date", date}, {"Expires", "0"}}) == 0ms);
  CHECK(lifetime(200, {{"Date", date},
                       {"Expires", cache::format_http_time(kExample + 1h)},
                       {"Expires", cache::format_http_time(kExample + 2h)}}) == 0ms);
  // An explicit expiry turns off the heuristic, even an expired one.
  CHECK(lifetime(200, {{"Date", date},
                       {"Expires", "0"},
                       {"Last-Modified", cache::format_http_time(kExample - 100h)}}) == 0ms);
  // Heuristic: 10% of Date - Last-Modified, at most a day; only for statuses cacheable by default or public.
  Headers lm{{"Date", date}, {"Last-Modified", cache::format_http_time(kExample - 10h)}};
  CHECK(lifetime(200, lm) == 1h);
  CHECK(lifetime(404, lm) == 1h);
  CHECK(lifetime(302, lm) == 0ms);
  Headers lm_public = lm;
  lm_public.add("Cache-Control", "public");
  CHECK(lifetime(302, lm_public) == 1h);
  CHECK(lifetime(200, {{"Date", date}, {"Last-Modified", cache::format_http_time(kExample - 24 * 30h)}}) ==
        cache::kHeuristicCap);
  CHECK(lifetime(200, {{"Date", date}, {"Last-Modified", cache::format_http_time(kExample + 1h)}}) == 0ms);
  CHECK(lifetime(200, lm, FreshnessRules{true, false, 0ms}) == 0ms);
  // default_ttl replaces the heuristic, with or without Last-Modified, and never beats explicit values.
  CHECK(lifetime(200, lm, FreshnessRules{true, true, 5min}) == 5min);
  CHECK(lifetime(200, {}, FreshnessRules{true, true, 5min}) == 5min);
  CHECK(lifetime(500, {}, FreshnessRules{true, true, 5min}) == 0ms);
  CHECK(lifetime(200, {{"Cache-Control", "max-age=7"}}, FreshnessRules{true, true, 5min}) == 7s);
}

TEST_CASE("cache policy: current age follows RFC 9111 4.2.3") {
  const auto request_time = kExample;
  const auto response_time = kExample + 2s;  // two seconds on the way
  // Date at the request: apparent age 2 s; Age 5 + delay 2 = 7 wins; plus 10 s resident.
  Headers h{{"Date", cache::format_http_time(kExample)}, {"Age", "5"}};
  CHECK(cache::current_age(h, request_time, response_time, response_time + 10s) == 17s);
  // A clock-skewed Date far in the past dominates.
  Headers old{{"Date", cache::format_http_time(kExample - 100s)}};
  CHECK(cache::current_age(old, request_time, response_time, response_time) == 102s);
  // A Date in the future counts as 0; bad Age counts as 0.
  Headers future{{"Date", cache::format_http_time(kExample + 1h)}, {"Age", "x"}};
  CHECK(cache::current_age(future, request_time, response_time, response_time + 1s) == 3s);
  CHECK(cache::current_age({}, request_time, request_time, request_time) == 0ms);
}

TEST_CASE("cache policy: what may be stored and why not") {
  CHECK(storable(200, {{"Cache-Control", "max-age=60"}}) == std::nullopt);
  CHECK(storable(206, {{"Cache-Control", "max-age=60"}}) == "status 206 is never stored");
  CHECK(storable(304, {{"Cache-Control", "max-age=60"}}) == "status 304 is never stored");
  CHECK(storable(200, {{"Cache-Control", "max-age=60, no-store"}}) == "no-store");
  CHECK(storable(200, {{"Cache-Control", "max-age=60, private"}}) == "private");
  CHECK(storable(200, {{"Cache-Control", "max-age=60, private"}}, false, false) == std::nullopt);
  CHECK(storable(200, {{"Cache-Control", "max-age=60"}}, true) ==
        "Authorization without public, s-maxage or must-revalidate");
  CHECK(storable(200, {{"Cache-Control", "max-age=60, public"}}, true) == std::nullopt);
  CHECK(storable(200, {{"Cache-Control", "s-maxage=60"}}, true) == std::nullopt);
  CHECK(storable(200, {{"Cache-Control", "max-age=60, must-revalidate"}}, true) == std::nullopt);
  CHECK(storable(200, {{"Cache-Control", "max-age=60"}}, true, false) == std::nullopt);
  CHECK(storable(200, {{"Cache-Control", "max-age=60"}, {"Vary", "Accept, *"}}) == "Vary: *");
  CHECK(storable(302, {{"ETag", "\"a\""}}) == "status 302 without explicit freshness");
  CHECK(storable(302, {{"Cache-Control", "max-age=60"}}) == std::nullopt);
  CHECK(storable(503, {{"Cache-Control", "max-age=5"}}) == std::nullopt);
  // Set-Cookie: only public, or with the cookie named in private= / no-cache=; a private cache keeps it.
  Headers cookie{{"Cache-Control", "max-age=60"}, {"Set-Cookie", "sid=1"}};
  CHECK(storable(200, cookie) == "Set-Cookie without public");
  CHECK(storable(200, cookie, false, false) == std::nullopt);
  CHECK(storable(200, {{"Cache-Control", "max-age=60, public"}, {"Set-Cookie", "sid=1"}}) == std::nullopt);
  CHECK(storable(200, {{"Cache-Control", "max-age=60, private=\"Set-Cookie\""}, {"Set-Cookie", "sid=1"}}) ==
        std::nullopt);
  CHECK(storable(200, {{"Cache-Control", "max-age=60, no-cache=set-cookie"}, {"Set-Cookie", "sid=1"}}) ==
        std::nullopt);
  // Stale on arrival: worth storing only with a validator.
  CHECK(storable(200, {}) == "neither fresh nor validatable");
  CHECK(storable(200, {{"Cache-Control", "max-age=0"}}) == "neither fresh nor validatable");
  CHECK(storable(200, {{"Cache-Control", "max-age=0"}, {"ETag", "\"v\""}}) == std::nullopt);
}

TEST_CASE("cache policy: entity tags compare weakly, lists may hold commas inside tags") {
  CHECK(cache::weak_etag_equal("\"a\"", "\"a\""));
  CHECK(cache::weak_etag_equal("W/\"a\"", "\"a\""));
  CHECK(cache::weak_etag_equal("W/\"a\"", "W/\"a\""));
  CHECK_FALSE(cache::weak_etag_equal("\"a\"", "\"b\""));
  CHECK_FALSE(cache::weak_etag_equal("", ""));
  CHECK(cache::etag_list_matches("\"x\", W/\"a\"", "\"a\""));
  CHECK(cache::etag_list_matches("*", "\"a\""));
  CHECK(cache::etag_list_matches("\"a,b\"", "\"a,b\""));
  CHECK_FALSE(cache::etag_list_matches("\"a,b\"", "\"a\""));
  CHECK_FALSE(cache::etag_list_matches("\"x\"", "\"a\""));
  CHECK_FALSE(cache::etag_list_matches("\"a", "\"a\""));
  CHECK_FALSE(cache::etag_list_matches("\"a\"", ""));
}

TEST_CASE("cache policy: Vary keys normalise list spacing and tell absent from empty") {
  Headers response{{"Vary", "Accept-Encoding, origin"}, {"vary", "accept-encoding"}};
  CHECK(cache::vary_names(response) == std::vector<std::string>{"accept-encoding", "origin"});
  auto key = cache::vary_key(response, Headers{{"Accept-Encoding", "gzip,  br"}});
  REQUIRE(key.size() == 2);
  CHECK(key[0].second == "gzip,br");
  CHECK_FALSE(key[1].second.has_value());
  CHECK(cache::vary_matches(key, Headers{{"accept-encoding", "gzip , br"}}));
  CHECK(cache::vary_matches(key, Headers{{"Accept-Encoding", "gzip"}, {"Accept-Encoding", "br"}}));
  CHECK_FALSE(cache::vary_matches(key, Headers{{"Accept-Encoding", "br, gzip"}}));
  CHECK_FALSE(cache::vary_matches(key, Headers{{"Accept-Encoding", "gzip, br"}, {"Origin", "http://a"}}));
  CHECK_FALSE(cache::vary_matches(key, Headers{{"Accept-Encoding", "gzip, br"}, {"Origin", ""}}));
  CHECK(cache::vary_matches({}, Headers{{"Anything", "x"}}));
  CHECK_FALSE(cache::vary_matches(cache::vary_key(Headers{{"Vary", "*"}}, {}), {}));
}

TEST_CASE("cache policy: a 304 updates stored fields except framing and hop-by-hop ones") {
  Headers stored{{"Content-Type", "text/plain"},  {"Content-Length", "5"}, {"ETag", "\"v1\""},
                 {"Cache-Control", "max-age=10"}, {"X-Multi", "a"},        {"X-Multi", "b"}};
  Headers nm{{"Cache-Control", "max-age=99"},
             {"Content-Length", "0"},
             {"Connection", "X-Hop"},
             {"X-Hop", "1"},
             {"Keep-Alive", "5"},
             {"x-multi", "c"}};
  auto out = cache::freshen_headers(stored, nm);
  CHECK(out.get("Cache-Control") == "max-age=99");
  CHECK(out.get("Content-Length") == "5");
  CHECK(out.joined("X-Multi") == "c");
  CHECK_FALSE(out.has("X-Hop"));
  CHECK_FALSE(out.has("Keep-Alive"));
  CHECK_FALSE(out.has("Connection"));
  CHECK(out.get("ETag") == "\"v1\"");

  CHECK(cache::validators_select(stored, {{"ETag", "W/\"v1\""}}));
  CHECK_FALSE(cache::validators_select(stored, {{"ETag", "\"v2\""}}));
  CHECK_FALSE(cache::validators_select(stored, {}));
  const auto lm = cache::format_http_time(kExample);
  CHECK(cache::validators_select({{"Last-Modified", lm}}, {{"Last-Modified", lm}}));
  CHECK_FALSE(cache::validators_select({{"Last-Modified", lm}}, {{"ETag", "\"v1\""}}));
  CHECK(cache::validators_select({}, {}));

  Headers hop{{"Connection", "close, X-Secret"},
              {"X-Secret", "1"},
              {"Transfer-Encoding", "chunked"},
              {"TE", "trailers"},
              {"Content-Type", "a"}};
  cache::strip_hop_by_hop(hop);
  CHECK(hop.fields() == std::vector<rproxy::Header>{{"Content-Type", "a"}});
}
