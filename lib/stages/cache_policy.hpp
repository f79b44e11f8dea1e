// The rules of HTTP caching (RFC 9111) the cache stage applies, as pure functions: HTTP dates,
// Cache-Control, freshness lifetime, age, whether a response may be stored, Vary, and how a 304 updates a
// stored response. Nothing here keeps state or reads a clock (the caller passes every time it needs), so
// each rule is tested on its own in cache_policy_test.cpp.
//
// Choices where the RFC leaves one (documented again where they are made):
//   - max-age or s-maxage given twice with different values, or with a value that is not a number, makes
//     a response stale on arrival (RFC 9111 §4.2.1 allows "first occurrence" or "stale"; stale is safe).
//     In a request the smallest value wins, and an unreadable max-age counts as max-age=0.
//   - Two Expires fields with different values, or an Expires that is not a date, mean "already expired".
//   - Arguments are read in token and quoted form alike ("max-age=\"60\"" is 60), names case-insensitively.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rproxy/http.hpp"

namespace rproxy::stages {

using SysTime = std::chrono::system_clock::time_point;

// parse_http_time reads an HTTP date in any of the three formats RFC 9110 §5.6.7 obliges recipients to
// accept, without locale or time zone: IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", RFC 850
// "Sunday, 06-Nov-94 08:49:37 GMT" (a two-digit year is the one within 50 years of now, the past one when
// both are) and asctime "Sun Nov  6 08:49:37 1994". Names are compared case-insensitively; anything else
// (a bad day of the month, trailing text, a missing GMT) is nullopt.
std::optional<SysTime> parse_http_time(std::string_view text);
// format_http_time prints IMF-fixdate (whole seconds).
std::string format_http_time(SysTime time);

// CacheControl is a parsed Cache-Control field (request or response directives alike). Seconds values are
// clamped to 2^31 (RFC 9111 §1.2.2).
struct CacheControl {
  bool no_store = false;
  bool no_cache = false;                     // unqualified no-cache
  std::vector<std::string> no_cache_fields;  // no-cache="Set-Cookie, ..." (lowercase names)
  bool is_private = false;                   // unqualified private
  std::vector<std::string> private_fields;   // private="..." (lowercase names)
  bool is_public = false;
  bool must_revalidate = false;
  bool proxy_revalidate = false;
  bool only_if_cached = false;
  std::optional<std::int64_t> max_age;
  std::optional<std::int64_t> s_maxage;
  std::optional<std::int64_t> min_fresh;
  bool max_stale_any = false;  // max-stale without a value: any staleness is fine
  std::optional<std::int64_t> max_stale;
  // conflicting: max-age or s-maxage came twice with different values or with an unreadable value.
  bool conflicting = false;
};

// parse_cache_control reads one field value; the Headers form joins every Cache-Control field line.
CacheControl parse_cache_control(std::string_view value);
CacheControl parse_cache_control(const Headers& headers);
// request_cache_control adds the HTTP/1.0 "Pragma: no-cache" when the request has no Cache-Control
// (RFC 9111 §5.4).
CacheControl request_cache_control(const Headers& request);

// FreshnessRules are the cache's settings that the freshness rules depend on.
struct FreshnessRules {
  bool shared = true;                        // a shared cache honours s-maxage and proxy-revalidate
  bool heuristic = true;                     // RFC 9111 §4.2.2, from Last-Modified
  std::chrono::milliseconds default_ttl{0};  // > 0: used instead of the heuristic
};
inline constexpr std::chrono::seconds kHeuristicCap{86400};

// cacheable_by_default: the statuses RFC 9110 §15.1 calls heuristically cacheable, less 206 (partial
// content is never stored here).
bool cacheable_by_default(int status);
// has_explicit_expiry: s-maxage (shared cache), max-age or Expires.
bool has_explicit_expiry(const Headers& response, const CacheControl& cc, bool shared);
// freshness_lifetime (RFC 9111 §4.2.1): s-maxage, then max-age, then Expires - Date; without any of them,
// for a status cacheable by default or a public response, default_ttl when set, else the heuristic
// (10% of Date - Last-Modified, at most a day), else 0. response_time stands in for a missing Date.
std::chrono::milliseconds freshness_lifetime(int status, const Headers& response, const CacheControl& cc,
                                             SysTime response_time, const FreshnessRules& rules);
// current_age (RFC 9111 §4.2.3): the corrected initial age (Age header, Date, the response delay between
// request_time and response_time) plus the time the response spent in the cache since response_time.
std::chrono::milliseconds current_age(const Headers& response, SysTime request_time, SysTime response_time,
                                      SysTime now);

// StoreQuestion is what decides whether a response to a GET may be stored (RFC 9111 §3).
struct StoreQuestion {
  int status = 200;
  const Headers& response;
  const CacheControl& cc;
  bool authorization = false;  // the request carried Authorization
  bool shared = true;
  std::chrono::milliseconds lifetime{0};  // freshness_lifetime, 0 when the response says no-cache
};
// why_not_storable returns nullopt when the response may be stored, else a short reason. Beyond RFC 9111
// §3, a shared cache does not store a response that sets a cookie unless it says public or names
// Set-Cookie in private="..." or no-cache="..." (one user's session must never reach another), and a
// response that is neither fresh nor has a validator is not worth storing.
std::optional<std::string> why_not_storable(const StoreQuestion& q);

// Hop-by-hop fields (RFC 9110 §7.6.1) and those a cache must not store (RFC 9111 §3.1), plus every field
// named in Connection.
bool is_hop_by_hop(std::string_view name);
void strip_hop_by_hop(Headers& headers);

// Entity tags. weak_etag_equal is the weak comparison of RFC 9110 §8.8.3.2; etag_list_matches reads an
// If-None-Match value ("*" or a list of tags, commas inside quotes allowed) against one tag.
bool weak_etag_equal(std::string_view a, std::string_view b);
bool etag_list_matches(std::string_view list, std::string_view etag);

// VaryKey: the request header values a stored variant was selected by, one per name in the response's
// Vary (lowercase name; nullopt when the request had no such field). Values are the field lines joined and
// normalised around commas, so "gzip,br" and "gzip, br" select the same variant.
using VaryKey = std::vector<std::pair<std::string, std::optional<std::string>>>;
// vary_names lists the response's Vary names, lowercase and once each ("*" included when present).
std::vector<std::string> vary_names(const Headers& response);
VaryKey vary_key(const Headers& response, const Headers& request);
bool vary_matches(const VaryKey& key, const Headers& request);

// freshen_headers (RFC 9111 §3.2, §4.3.4): the stored fields updated from a 304's: every field the 304
// carries replaces the stored ones of that name, except hop-by-hop fields and Content-Length.
Headers freshen_headers(const Headers& stored, const Headers& not_modified);
// validators_select (RFC 9111 §4.3.4): whether a 304 that answered someone else's conditional (the
// client's) is about this stored response: same entity tag (weakly), else same Last-Modified, else
// neither side has a validator.
bool validators_select(const Headers& stored, const Headers& not_modified);

}  // namespace rproxy::stages
