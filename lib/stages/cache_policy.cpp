#include "stages/cache_policy.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <limits>

namespace rproxy::stages {

namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// RFC 9111 §1.2.2: a delta-seconds too large to represent is taken as 2^31.
constexpr std::int64_t kDeltaMax = std::int64_t{1} << 31;

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}
std::string lowercase(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = lower(c);
  return out;
}
bool is_ows(char c) {
  return c == ' ' || c == '\t';
}
std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// delta-seconds: 1*DIGIT, clamped.
std::optional<std::int64_t> parse_delta(std::string_view s) {
  if (s.empty()) return std::nullopt;
  std::int64_t n = 0;
  for (char c : s) {
    if (!is_digit(c)) return std::nullopt;
    n = std::min(kDeltaMax, n * 10 + (c - '0'));
  }
  return n;
}

// ---- HTTP dates ----------------------------------------------------------------------------------------

constexpr std::array<const char*, 12> kMonths{"jan", "feb", "mar", "apr", "may", "jun",
                                              "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr std::array<const char*, 7> kDays{"mon", "tue", "wed", "thu", "fri", "sat", "sun"};
constexpr std::array<const char*, 7> kLongDays{"monday", "tuesday",  "wednesday", "thursday",
                                               "friday", "saturday", "sunday"};

// Cursor walks a date string; every step fails softly (ok turns false) so parsers read straight through.
struct Cursor {
  std::string_view s;
  bool ok = true;
  std::string_view letters() {
    std::size_t n = 0;
    while (n < s.size() && ((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z'))) ++n;
    auto out = s.substr(0, n);
    s.remove_prefix(n);
    ok = ok && n > 0;
    return out;
  }
  void expect(char c) {
    if (!s.empty() && s.front() == c)
      s.remove_prefix(1);
    else
      ok = false;
  }
  // between min and max digits
  int digits(std::size_t min, std::size_t max) {
    std::size_t n = 0;
    int v = 0;
    while (n < max && n < s.size() && is_digit(s[n])) v = v * 10 + (s[n++] - '0');
    ok = ok && n >= min;
    s.remove_prefix(n);
    return v;
  }
  int month() {
    auto name = lowercase(letters());
    for (std::size_t i = 0; i < kMonths.size(); ++i)
      if (name == kMonths[i]) return static_cast<int>(i) + 1;
    ok = false;
    return 0;
  }
  template <std::size_t N>
  void one_of(const std::array<const char*, N>& names) {
    auto name = lowercase(letters());
    ok = ok && std::find(names.begin(), names.end(), name) != names.end();
  }
  // time-of-day = hour ":" minute ":" second
  void time(int& h, int& m, int& sec) {
    h = digits(2, 2);
    expect(':');
    m = digits(2, 2);
    expect(':');
    sec = digits(2, 2);
  }
  void gmt() { ok = ok && iequals(letters(), "GMT"); }
};

std::optional<SysTime> make_time(int y, int mo, int d, int h, int mi, int s) {
  using namespace std::chrono;
  year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)}, day{static_cast<unsigned>(d)}};
  // second 60 is a leap second (RFC 9110 §5.6.7 allows it); it lands on the next minute.
  if (!ymd.ok() || h > 23 || mi > 59 || s > 60) return std::nullopt;
  return SysTime(sys_days(ymd)) + hours(h) + minutes(mi) + seconds(s);
}

int current_year() {
  using namespace std::chrono;
  return static_cast<int>(year_month_day(floor<days>(system_clock::now())).year());
}

}  // namespace

std::optional<SysTime> parse_http_time(std::string_view text) {
  Cursor c{trim(text)};
  auto day_name = c.letters();
  if (!c.ok || c.s.empty()) return std::nullopt;
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  if (c.s.front() == ',' && day_name.size() == 3) {
    // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT (a one-digit day is tolerated, as RFC 1123 allowed)
    Cursor name{day_name, true};
    name.one_of(kDays);
    if (!name.ok) return std::nullopt;
    c.expect(',');
    c.expect(' ');
    d = c.digits(1, 2);
    c.expect(' ');
    mo = c.month();
    c.expect(' ');
    y = c.digits(4, 4);
    c.expect(' ');
    c.time(h, mi, s);
    c.expect(' ');
    c.gmt();
  } else if (c.s.front() == ',') {
    // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
    Cursor name{day_name, true};
    name.one_of(kLongDays);
    if (!name.ok) return std::nullopt;
    c.expect(',');
    c.expect(' ');
    d = c.digits(2, 2);
    c.expect('-');
    mo = c.month();
    c.expect('-');
    int yy = c.digits(2, 2);
    c.expect(' ');
    c.time(h, mi, s);
    c.expect(' ');
    c.gmt();
    // The year with these last two digits that lies within 50 years of now (RFC 9110 §5.6.7).
    const int now = current_year();
    y = now - now % 100 + yy;
    if (y > now + 50) y -= 100;
    if (y <= now - 50) y += 100;
  } else {
    // asctime: Sun Nov  6 08:49:37 1994
    Cursor name{day_name, true};
    name.one_of(kDays);
    if (!name.ok) return std::nullopt;
    c.expect(' ');
    mo = c.month();
    c.expect(' ');
    if (!c.s.empty() && c.s.front() == ' ') {
      c.s.remove_prefix(1);
      d = c.digits(1, 1);
    } else {
      d = c.digits(2, 2);
    }
    c.expect(' ');
    c.time(h, mi, s);
    c.expect(' ');
    y = c.digits(4, 4);
  }
  if (!c.ok || !c.s.empty()) return std::nullopt;
  return make_time(y, mo, d, h, mi, s);
}

std::string format_http_time(SysTime time) {
  using namespace std::chrono;
  const auto day = floor<days>(time);
  const year_month_day ymd(day);
  const hh_mm_ss hms(floor<seconds>(time - day));
  static constexpr std::array<const char*, 7> kWeekday{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr std::array<const char*, 12> kMonth{"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  char b[40];
  std::snprintf(b, sizeof b, "%s, %02u %s %04d %02d:%02d:%02d GMT", kWeekday[weekday(day).c_encoding()],
                static_cast<unsigned>(ymd.day()), kMonth[static_cast<unsigned>(ymd.month()) - 1],
                static_cast<int>(ymd.year()), static_cast<int>(hms.hours().count()),
                static_cast<int>(hms.minutes().count()), static_cast<int>(hms.seconds().count()));
  return b;
}

// ---- Cache-Control -------------------------------------------------------------------------------------

namespace {

std::vector<std::string> field_names(std::string_view list) {
  std::vector<std::string> out;
  for (auto name : split_list(list)) out.push_back(lowercase(name));
  return out;
}

// A seconds directive seen again: a different value is a conflict; the smaller value is kept.
void set_delta(std::optional<std::int64_t>& slot, std::optional<std::int64_t> value, bool* conflicting) {
  if (!value) return;
  if (slot && *slot != *value && conflicting) *conflicting = true;
  slot = slot ? std::min(*slot, *value) : *value;
}

void apply_directive(CacheControl& cc, const std::string& name, const std::optional<std::string>& arg) {
  if (name == "no-store") {
    cc.no_store = true;
  } else if (name == "no-cache") {
    if (arg && !trim(*arg).empty()) {
      for (auto& f : field_names(*arg)) cc.no_cache_fields.push_back(std::move(f));
    } else {
      cc.no_cache = true;
    }
  } else if (name == "private") {
    if (arg && !trim(*arg).empty()) {
      for (auto& f : field_names(*arg)) cc.private_fields.push_back(std::move(f));
    } else {
      cc.is_private = true;
    }
  } else if (name == "public") {
    cc.is_public = true;
  } else if (name == "must-revalidate") {
    cc.must_revalidate = true;
  } else if (name == "proxy-revalidate") {
    cc.proxy_revalidate = true;
  } else if (name == "only-if-cached") {
    cc.only_if_cached = true;
  } else if (name == "max-age" || name == "s-maxage") {
    auto& slot = name == "max-age" ? cc.max_age : cc.s_maxage;
    auto v = arg ? parse_delta(*arg) : std::nullopt;
    if (!v) {
      // Unreadable freshness: stale in a response (RFC 9111 §4.2.1), "revalidate" in a request.
      cc.conflicting = true;
      v = 0;
    }
    set_delta(slot, v, &cc.conflicting);
  } else if (name == "min-fresh") {
    set_delta(cc.min_fresh, arg ? parse_delta(*arg) : std::nullopt, nullptr);
  } else if (name == "max-stale") {
    if (!arg)
      cc.max_stale_any = true;
    else
      set_delta(cc.max_stale, parse_delta(*arg), nullptr);
  }
  // Unknown directives (immutable, stale-while-revalidate, extensions) are ignored (RFC 9111 §5.2.3).
}

}  // namespace

CacheControl parse_cache_control(std::string_view v) {
  CacheControl cc;
  std::size_t i = 0;
  const std::size_t n = v.size();
  auto skip_ows = [&] {
    while (i < n && is_ows(v[i])) ++i;
  };
  while (i < n) {
    while (i < n && (is_ows(v[i]) || v[i] == ',')) ++i;
    if (i >= n) break;
    const std::size_t start = i;
    while (i < n && v[i] != '=' && v[i] != ',' && !is_ows(v[i])) ++i;
    std::string name = lowercase(v.substr(start, i - start));
    skip_ows();
    std::optional<std::string> arg;
    if (i < n && v[i] == '=') {
      ++i;
      skip_ows();
      std::string value;
      if (i < n && v[i] == '"') {
        // quoted-string with quoted-pair (RFC 9110 §5.6.4)
        ++i;
        while (i < n && v[i] != '"') {
          if (v[i] == '\\' && i + 1 < n) ++i;
          value += v[i++];
        }
        if (i < n) ++i;  // the closing quote
      } else {
        while (i < n && v[i] != ',' && !is_ows(v[i])) value += v[i++];
      }
      arg = std::move(value);
    }
    // Whatever else stands before the next comma is junk; skip it (quotes included).
    bool quoted = false;
    while (i < n && (quoted || v[i] != ',')) {
      if (v[i] == '"') quoted = !quoted;
      ++i;
    }
    if (!name.empty()) apply_directive(cc, name, arg);
  }
  return cc;
}

CacheControl parse_cache_control(const Headers& headers) {
  return parse_cache_control(headers.joined("Cache-Control"));
}

CacheControl request_cache_control(const Headers& request) {
  auto cc = parse_cache_control(request);
  if (!request.has("Cache-Control") && request.has_token("Pragma", "no-cache")) cc.no_cache = true;
  return cc;
}

// ---- freshness and age ---------------------------------------------------------------------------------

bool cacheable_by_default(int status) {
  switch (status) {
    case 200:
    case 203:
    case 204:
    case 300:
    case 301:
    case 308:
    case 404:
    case 405:
    case 410:
    case 414:
    case 501:
      return true;
    default:
      return false;
  }
}

bool has_explicit_expiry(const Headers& response, const CacheControl& cc, bool shared) {
  return (shared && cc.s_maxage) || cc.max_age || response.has("Expires");
}

namespace {
SysTime date_value(const Headers& response, SysTime response_time) {
  if (auto d = response.get("Date"))
    if (auto t = parse_http_time(*d)) return *t;
  return response_time;
}
milliseconds ms_of(std::int64_t secs) {
  return std::chrono::duration_cast<milliseconds>(seconds(secs));
}
milliseconds non_negative(SysTime::duration d) {
  return std::max(milliseconds(0), std::chrono::floor<milliseconds>(d));
}
}  // namespace

milliseconds freshness_lifetime(int status, const Headers& response, const CacheControl& cc,
                                SysTime response_time, const FreshnessRules& rules) {
  if (cc.conflicting) return milliseconds(0);
  if (rules.shared && cc.s_maxage) return ms_of(*cc.s_maxage);
  if (cc.max_age) return ms_of(*cc.max_age);
  if (response.has("Expires")) {
    auto first = *response.get("Expires");
    for (const auto& h : response)
      if (iequals(h.name, "Expires") && trim(h.value) != trim(first)) return milliseconds(0);
    auto expires = parse_http_time(first);
    if (!expires) return milliseconds(0);  // "0", "-1" and friends: already expired
    return non_negative(*expires - date_value(response, response_time));
  }
  if (!cacheable_by_default(status) && !cc.is_public) return milliseconds(0);
  if (rules.default_ttl.count() > 0) return rules.default_ttl;
  if (!rules.heuristic) return milliseconds(0);
  auto lm = response.get("Last-Modified");
  auto modified = lm ? parse_http_time(*lm) : std::nullopt;
  if (!modified) return milliseconds(0);
  auto since = non_negative(date_value(response, response_time) - *modified);
  return std::min<milliseconds>(since / 10, kHeuristicCap);
}

milliseconds current_age(const Headers& response, SysTime request_time, SysTime response_time, SysTime now) {
  std::int64_t age_value = 0;
  if (auto a = response.get("Age"))
    if (auto v = parse_delta(trim(*a))) age_value = *v;
  const auto apparent_age = non_negative(response_time - date_value(response, response_time));
  const auto response_delay = non_negative(response_time - request_time);
  const auto corrected_age_value = ms_of(age_value) + response_delay;
  const auto corrected_initial_age = std::max(apparent_age, corrected_age_value);
  const auto resident_time = non_negative(now - response_time);
  return corrected_initial_age + resident_time;
}

// ---- storing -------------------------------------------------------------------------------------------

std::optional<std::string> why_not_storable(const StoreQuestion& q) {
  const auto& cc = q.cc;
  if (q.status < 200 || q.status == 206 || q.status == 304)
    return "status " + std::to_string(q.status) + " is never stored";
  if (cc.no_store) return std::string("no-store");
  if (q.shared && cc.is_private) return std::string("private");
  // RFC 9111 §3.5: what answered an authorized request is shared only when the response says so.
  if (q.shared && q.authorization && !cc.is_public && !cc.s_maxage && !cc.must_revalidate)
    return std::string("Authorization without public, s-maxage or must-revalidate");
  if (q.response.has_token("Vary", "*")) return std::string("Vary: *");
  if (!cacheable_by_default(q.status) && !cc.is_public && !has_explicit_expiry(q.response, cc, q.shared))
    return "status " + std::to_string(q.status) + " without explicit freshness";
  if (q.shared && q.response.has("Set-Cookie") && !cc.is_public) {
    auto named = [](const std::vector<std::string>& fields) {
      return std::find(fields.begin(), fields.end(), "set-cookie") != fields.end();
    };
    if (!named(cc.private_fields) && !named(cc.no_cache_fields))
      return std::string("Set-Cookie without public");
  }
  if (q.lifetime.count() <= 0 && !q.response.has("ETag") && !q.response.has("Last-Modified"))
    return std::string("neither fresh nor validatable");
  return std::nullopt;
}

bool is_hop_by_hop(std::string_view name) {
  for (const char* h : {"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Transfer-Encoding",
                        "Upgrade", "Proxy-Authenticate", "Proxy-Authentication-Info", "Proxy-Authorization"})
    if (iequals(name, h)) return true;
  return false;
}

void strip_hop_by_hop(Headers& headers) {
  std::vector<std::string> listed;
  for (const auto& h : headers)
    if (iequals(h.name, "Connection"))
      for (auto t : split_list(h.value)) listed.emplace_back(t);
  for (const auto& name : listed) headers.remove(name);
  auto& f = headers.fields();
  f.erase(std::remove_if(f.begin(), f.end(), [](const Header& h) { return is_hop_by_hop(h.name); }), f.end());
}

// ---- entity tags, Vary, 304 ----------------------------------------------------------------------------

namespace {
std::string_view opaque_tag(std::string_view tag) {
  tag = trim(tag);
  if (tag.size() >= 2 && tag[0] == 'W' && tag[1] == '/') tag.remove_prefix(2);
  return tag;
}
}  // namespace

bool weak_etag_equal(std::string_view a, std::string_view b) {
  auto x = opaque_tag(a);
  auto y = opaque_tag(b);
  return !x.empty() && x == y;
}

bool etag_list_matches(std::string_view list, std::string_view etag) {
  std::size_t i = 0;
  while (i < list.size()) {
    while (i < list.size() && (is_ows(list[i]) || list[i] == ',')) ++i;
    if (i >= list.size()) break;
    if (list[i] == '*') return true;
    const std::size_t start = i;
    if (list.compare(i, 2, "W/") == 0) i += 2;
    if (i < list.size() && list[i] == '"') {
      auto close = list.find('"', i + 1);
      if (close == std::string_view::npos) return false;  // unterminated: matches nothing
      i = close + 1;
    } else {
      while (i < list.size() && list[i] != ',') ++i;  // not a tag: skip it
    }
    if (weak_etag_equal(list.substr(start, i - start), etag)) return true;
  }
  return false;
}

std::vector<std::string> vary_names(const Headers& response) {
  std::vector<std::string> names;
  for (const auto& h : response) {
    if (!iequals(h.name, "Vary")) continue;
    for (auto n : split_list(h.value)) {
      auto name = lowercase(n);
      if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(std::move(name));
    }
  }
  return names;
}

namespace {
std::optional<std::string> normalized(const Headers& request, const std::string& name) {
  if (!request.has(name)) return std::nullopt;
  const std::string joined = request.joined(name);  // split_list's views point into it
  std::string out;
  for (auto item : split_list(joined)) {
    if (!out.empty()) out += ',';
    out += item;
  }
  return out;
}
}  // namespace

VaryKey vary_key(const Headers& response, const Headers& request) {
  VaryKey key;
  for (auto& name : vary_names(response)) {
    auto value = normalized(request, name);
    key.emplace_back(std::move(name), std::move(value));
  }
  return key;
}

bool vary_matches(const VaryKey& key, const Headers& request) {
  for (const auto& [name, value] : key)
    if (name == "*" || normalized(request, name) != value) return false;
  return true;
}

Headers freshen_headers(const Headers& stored, const Headers& not_modified) {
  Headers update = not_modified;
  strip_hop_by_hop(update);
  update.remove("Content-Length");
  Headers out = stored;
  std::vector<std::string> done;
  for (const auto& h : update) {
    if (std::any_of(done.begin(), done.end(), [&](const std::string& d) { return iequals(d, h.name); }))
      continue;
    done.push_back(h.name);
    out.remove(h.name);
    for (const auto& same : update)
      if (iequals(same.name, h.name)) out.add(same.name, same.value);
  }
  return out;
}

bool validators_select(const Headers& stored, const Headers& not_modified) {
  if (auto tag = not_modified.get("ETag")) {
    auto mine = stored.get("ETag");
    return mine && weak_etag_equal(*tag, *mine);
  }
  if (auto lm = not_modified.get("Last-Modified")) {
    auto mine = stored.get("Last-Modified");
    if (!mine) return false;
    auto a = parse_http_time(*lm);
    auto b = parse_http_time(*mine);
    return a && b ? *a == *b : trim(*lm) == trim(*mine);
  }
  return !stored.has("ETag") && !stored.has("Last-Modified");
}

}  // namespace rproxy::stages
