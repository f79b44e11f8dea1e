#include "stages/replay_match.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string_view>
#include <utility>

#include "stages/shadow_diff.hpp"

namespace rproxy::stages {

namespace {

using nlohmann::json;

constexpr std::string_view kAbsent = "(absent)";
constexpr std::size_t kMaxRendering = 80;
// One JSON body can differ in thousands of leaves; a few name the problem and keep reports readable.
constexpr std::size_t kMaxBodyDifferences = 10;
// nearest: a recording for another path or method is almost never the one meant, however many query or body
// details it shares; path outweighs method because the same resource under another verb is the likelier
// near-miss (PUT recorded, PATCH sent) than the same verb on another resource.
constexpr std::uint64_t kPathWeight = 2000;
constexpr std::uint64_t kMethodWeight = 1000;

// ---- text ----

// utf8_sequence returns the length of the valid UTF-8 sequence at s[i] (0 when there is none) and sets cp.
std::size_t utf8_sequence(std::string_view s, std::size_t i, char32_t& cp) {
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  std::size_t n = 0;
  char32_t min = 0;
  if (c < 0x80) {
    cp = c;
    return 1;
  } else if ((c & 0xE0) == 0xC0) {
    n = 2, cp = c & 0x1F, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3, cp = c & 0x0F, min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4, cp = c & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (s.size() - i < n) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  // Overlong forms and surrogates are invalid UTF-8 and would smuggle characters past later checks.
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

void append_hex_escape(std::string& out, unsigned char c) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += "\\x";
  out += kHex[c >> 4];
  out += kHex[c & 0xF];
}

// show renders request text for a mismatch: control bytes, backslashes and invalid UTF-8 escaped (so the
// result is printable, valid UTF-8 and safe in the JSON verdict), cut to about kMaxRendering bytes.
std::string show(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    if (out.size() >= kMaxRendering) {
      out += "…";
      break;
    }
    char32_t cp = 0;
    std::size_t n = utf8_sequence(s, i, cp);
    if (n == 0 || cp < 0x20 || cp == 0x7F) {
      append_hex_escape(out, static_cast<unsigned char>(s[i]));
      ++i;
    } else if (cp == '\\') {
      out += "\\\\";
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string_view path_of(std::string_view target) {
  return target.substr(0, target.find('?'));
}

std::string_view query_of(std::string_view target) {
  auto q = target.find('?');
  return q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
}

bool is_form_type(const Headers& headers) {
  auto value = headers.get("Content-Type");
  if (!value) return false;
  std::string_view v = value->substr(0, value->find(';'));
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return iequals(v, "application/x-www-form-urlencoded");
}

// ---- urlencoded pairs (query strings and form bodies) ----

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// percent_decode decodes %XX and '+' (space); a '%' not followed by two hex digits stays as it is, the
// lenient reading servers give such input.
std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && hex_digit(s[i + 1]) >= 0 && hex_digit(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_digit(s[i + 1]) * 16 + hex_digit(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// key_escape percent-encodes everything but a few unambiguous characters. '%', '&', '=', spaces and line
// breaks are always encoded, so joined key parts can never be confused with one another.
std::string key_escape(std::string_view s) {
  static constexpr std::string_view kSafe = "-._~!$'()*+,;:@/";
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (alnum || kSafe.find(c) != std::string_view::npos) {
      out += c;
    } else {
      auto u = static_cast<unsigned char>(c);
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 0xF];
    }
  }
  return out;
}

using Pairs = std::vector<std::pair<std::string, std::string>>;

// parse_pairs reads an urlencoded list into decoded (name, value) pairs, sorted (so two lists compare as
// multisets), leaving out names listed in ignore. "a" and "a=" both give ("a", "").
Pairs parse_pairs(std::string_view text, const std::vector<std::string>& ignore) {
  Pairs pairs;
  while (!text.empty()) {
    auto amp = text.find('&');
    std::string_view item = text.substr(0, amp);
    text = amp == std::string_view::npos ? std::string_view() : text.substr(amp + 1);
    if (item.empty()) continue;  // "a=1&&b=2", a trailing '&'
    auto eq = item.find('=');
    std::string name = percent_decode(item.substr(0, eq));
    if (std::find(ignore.begin(), ignore.end(), name) != ignore.end()) continue;
    std::string value = eq == std::string_view::npos ? std::string() : percent_decode(item.substr(eq + 1));
    pairs.emplace_back(std::move(name), std::move(value));
  }
  std::sort(pairs.begin(), pairs.end());
  return pairs;
}

std::string canonical_pairs(const Pairs& pairs) {
  std::string out;
  for (const auto& [name, value] : pairs) {
    if (!out.empty()) out += '&';
    out += key_escape(name) + "=" + key_escape(value);
  }
  return out;
}

// ---- comparison ----

// Out collects mismatches up to a limit (matches() needs only the first).
class Out {
 public:
  explicit Out(std::size_t limit) : limit_(std::max<std::size_t>(limit, 1)) {}
  bool full() const { return list.size() >= limit_; }
  std::size_t room() const { return full() ? 0 : limit_ - list.size(); }
  void add(std::string field, std::string recorded, std::string live) {
    if (!full()) list.push_back({std::move(field), std::move(recorded), std::move(live)});
  }
  std::vector<Mismatch> list;

 private:
  std::size_t limit_;
};

std::string show_values(const Pairs& pairs, std::size_t begin, std::size_t end) {
  if (begin == end) return std::string(kAbsent);
  std::string joined;
  for (std::size_t i = begin; i < end; ++i) {
    if (i > begin) joined += ", ";
    joined += pairs[i].second;
  }
  return show(joined);
}

// compare_pairs reports, per name in sorted order, each name whose multiset of values differs.
void compare_pairs(const Pairs& recorded, const Pairs& live, std::string_view prefix, Out& out) {
  std::size_t r = 0;
  std::size_t l = 0;
  while ((r < recorded.size() || l < live.size()) && !out.full()) {
    const std::string& name = l == live.size() || (r < recorded.size() && recorded[r].first <= live[l].first)
                                  ? recorded[r].first
                                  : live[l].first;
    std::size_t r_end = r;
    while (r_end < recorded.size() && recorded[r_end].first == name) ++r_end;
    std::size_t l_end = l;
    while (l_end < live.size() && live[l_end].first == name) ++l_end;
    bool same = r_end - r == l_end - l && std::equal(recorded.begin() + static_cast<std::ptrdiff_t>(r),
                                                     recorded.begin() + static_cast<std::ptrdiff_t>(r_end),
                                                     live.begin() + static_cast<std::ptrdiff_t>(l));
    if (!same)
      out.add(std::string(prefix) + show(name), show_values(recorded, r, r_end), show_values(live, l, l_end));
    r = r_end;
    l = l_end;
  }
}

// BodySide is one side's body as matching sees it: all bytes at hand (complete), or only size and digest.
struct BodySide {
  const Headers& headers;
  std::string_view bytes;
  std::uint64_t size = 0;
  bool complete = false;
  std::string sha256;  // lowercase hex of the whole body when incomplete ("" = unknown)

  // digest is computed only on demand: most comparisons never need it, and hashing every candidate's
  // inline body for every live request would dominate matching.
  std::string digest() const {
    // The bytes are authoritative when all of them are here; a stated digest only stands in for the rest.
    if (complete) return store::sha256_hex(bytes);
    return sha256;
  }
};

BodySide live_side(const LiveRequest& live) {
  std::uint64_t size = std::max<std::uint64_t>(live.body_size, live.body.size());
  return {live.headers, live.body, size, live.body.size() >= size, lower(live.body_sha256)};
}

BodySide recorded_side(const store::Interaction& rec) {
  const auto& b = rec.request_body;
  if (!b.file.empty()) return {rec.request_headers, {}, b.size, false, lower(b.file)};
  std::uint64_t size = std::max<std::uint64_t>(b.size, b.data.size());
  if (b.data.size() >= size) return {rec.request_headers, b.data, size, true, {}};
  // Inline data shorter than its size is a damaged recording: it can match nothing but the same damage.
  return {rec.request_headers, {}, size, false, store::sha256_hex(b.data)};
}

std::string show_digest(std::uint64_t size, const std::string& sha256) {
  std::string out = std::to_string(size) + " bytes";
  if (sha256.empty()) return out + ", sha256 unknown";
  out += ", sha256 " + show(std::string_view(sha256).substr(0, 16));
  if (sha256.size() > 16) out += "…";
  return out;
}

void compare_bodies(const BodySide& rec, const BodySide& live, const MatchRules& rules, Out& out) {
  if (rec.size == 0 && live.size == 0) return;
  if (!rec.complete || !live.complete) {
    // A file body was too large to keep inline, and a live body that large isn't kept whole either:
    // size and SHA-256 are all both sides have in common.
    std::string rd = rec.digest();
    std::string ld = live.digest();
    if (rec.size != live.size || rd.empty() || rd != ld)
      out.add("body", show_digest(rec.size, rd), show_digest(live.size, ld));
    return;
  }
  if (is_form_type(rec.headers) && is_form_type(live.headers)) {
    compare_pairs(parse_pairs(rec.bytes, {}), parse_pairs(live.bytes, {}), "body form ", out);
    return;
  }
  // JSON and bytes follow shadow_diff's rules exactly (both sides JSON and parsing, else bytes with the first
  // differing offset), so feed it the two bodies as captured responses that differ in nothing else.
  auto captured = [](const BodySide& side) {
    CapturedResponse r;
    if (auto type = side.headers.get("Content-Type")) r.headers.add("Content-Type", std::string(*type));
    r.body = std::string(side.bytes);
    r.body_size = side.size;
    r.body_complete = true;  // compared byte for byte, so body_hash is never consulted
    return r;
  };
  DiffOptions opts;
  opts.headers.clear();
  opts.ignore = rules.ignore_json;
  opts.max_differences = std::min(out.room(), kMaxBodyDifferences);
  for (auto& d : compare_responses(captured(rec), captured(live), opts))
    out.add(std::move(d.where), std::move(d.primary), std::move(d.shadow));
}

void compare_into(const LiveRequest& live, const store::Interaction& rec, const MatchRules& rules, Out& out) {
  if (rec.method != live.method) out.add("method", show(rec.method), show(live.method));
  std::string_view rec_path = path_of(rec.target);
  std::string_view live_path = path_of(live.target);
  if (rec_path != live_path) out.add("path", show(rec_path), show(live_path));
  if (out.full()) return;
  compare_pairs(parse_pairs(query_of(rec.target), rules.ignore_query),
                parse_pairs(query_of(live.target), rules.ignore_query), "query ", out);
  for (const auto& name : rules.match_headers) {
    if (out.full()) return;
    bool rh = rec.request_headers.has(name);
    bool lh = live.headers.has(name);
    std::string rv = rec.request_headers.joined(name);
    std::string lv = live.headers.joined(name);
    if (rh != lh || rv != lv)
      out.add("header " + name, rh ? show(rv) : std::string(kAbsent), lh ? show(lv) : std::string(kAbsent));
  }
  if (!out.full()) compare_bodies(recorded_side(rec), live_side(live), rules, out);
}

std::uint64_t weight(const std::vector<Mismatch>& mismatches) {
  std::uint64_t w = 0;
  for (const auto& m : mismatches) {
    if (m.field == "path")
      w += kPathWeight;
    else if (m.field == "method")
      w += kMethodWeight;
    else
      w += 1;
  }
  return w;
}

// ---- keys ----

// canonical_numbers rewrites numbers so that those nlohmann's == calls equal print the same: integral floats
// become integers (1.0 -> 1, -0.0 -> 0; signed and unsigned integers print alike), others stay doubles.
// Integers stay exact, so distinct 64-bit ids keep distinct keys. doc comes from parse_json_body, whose depth
// bound makes the recursion safe.
void canonical_numbers(json& doc) {
  if (doc.is_number_float()) {
    double d = doc.get<double>();
    constexpr double kTwo63 = 9223372036854775808.0;
    if (std::trunc(d) == d && d >= -kTwo63 && d < kTwo63)
      doc = static_cast<std::int64_t>(d);
    else if (std::trunc(d) == d && d >= 0 && d < 2 * kTwo63)
      doc = static_cast<std::uint64_t>(d);
  } else if (doc.is_structured()) {
    for (auto& child : doc) canonical_numbers(child);
  }
}

// body_key mirrors compare_bodies: each class of body keys the way that class compares.
std::string body_key(const BodySide& side, const MatchRules& rules) {
  if (side.size == 0) return "empty";
  if (side.complete) {
    if (is_form_type(side.headers))
      return "form:" + store::sha256_hex(canonical_pairs(parse_pairs(side.bytes, {})));
    if (is_json_content_type(side.headers)) {
      if (auto doc = parse_json_body(side.bytes)) {
        remove_ignored_json(*doc, rules.ignore_json);
        canonical_numbers(*doc);
        // object_t is a std::map, so keys come out sorted; parsed strings are valid UTF-8.
        return "json:" + store::sha256_hex(doc->dump(-1, ' ', false, json::error_handler_t::replace));
      }
    }
  }
  return "sha256:" + side.digest();
}

std::string key_of(std::string_view method, std::string_view target, const Headers& headers,
                   const BodySide& body, const MatchRules& rules) {
  std::string key = key_escape(method) + " " + key_escape(path_of(target));
  key += "\nquery " + canonical_pairs(parse_pairs(query_of(target), rules.ignore_query));
  std::vector<std::string> names;
  for (const auto& name : rules.match_headers) names.push_back(lower(name));
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  for (const auto& name : names) {
    key += "\nheader " + key_escape(name);
    key +=
        headers.has(name) ? "=" + key_escape(headers.joined(name)) : std::string(" ") + std::string(kAbsent);
  }
  key += "\nbody " + body_key(body, rules);
  return key;
}

// ---- JUnit ----

// xml_escape makes text safe in XML 1.0 content, or in a double-quoted attribute when attribute is set.
// Characters XML cannot carry at all (most control characters, invalid UTF-8, U+FFFE/U+FFFF) become \xNN or
// U+FFFD rather than breaking the document for every CI tool that reads it.
std::string xml_escape(std::string_view s, bool attribute) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    char32_t cp = 0;
    std::size_t n = utf8_sequence(s, i, cp);
    if (n == 0) {
      append_hex_escape(out, static_cast<unsigned char>(s[i]));
      ++i;
      continue;
    }
    switch (cp) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      // In attributes these are written as references, or attribute-value normalization turns them into
      // spaces; a raw CR anywhere would be read back as LF.
      case '\n':
        out += attribute ? "&#10;" : "\n";
        break;
      case '\r':
        out += "&#13;";
        break;
      case '\t':
        out += attribute ? "&#9;" : "\t";
        break;
      default:
        if (cp < 0x20)
          append_hex_escape(out, static_cast<unsigned char>(cp));
        else if (cp == 0xFFFE || cp == 0xFFFF)
          out += "\xEF\xBF\xBD";
        else
          out.append(s.substr(i, n));
    }
    i += n;
  }
  return out;
}

const json* member(const json& object, const char* name) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(name);
  return it == object.end() ? nullptr : &*it;
}

// text renders a verdict field: strings as they are, other scalars as JSON, missing or null as "".
std::string text(const json* value) {
  if (value == nullptr || value->is_null()) return "";
  if (value->is_string()) return value->get<std::string>();
  if (value->is_primitive()) return value->dump();
  return value->dump(-1, ' ', false, json::error_handler_t::replace);
}

// label is "#3 GET /y", or "GET /y" without an id.
std::string label(const json& entry) {
  std::string id = text(member(entry, "id"));
  std::string request = text(member(entry, "request"));
  if (id.empty()) return request;
  return "#" + id + " " + request;
}

const json& list(const json& verdict, const char* name) {
  static const json kEmpty = json::array();
  const json* value = member(verdict, name);
  return value && value->is_array() ? *value : kEmpty;
}

struct Case {
  std::string classname;
  std::string name;
  std::string type;
  std::string message;
  std::string details;
};

std::string miss_details(const json& miss, std::string& message) {
  std::string request = text(member(miss, "request"));
  message = "no recorded interaction matches " + request;
  const json* closest = member(miss, "closest");
  if (closest == nullptr || !closest->is_object()) {
    message += " (no recording to compare with)";
    return "request: " + request + "\nclosest recording: none\n";
  }
  const json* diffs = member(*closest, "differences");
  std::size_t count = diffs && diffs->is_array() ? diffs->size() : 0;
  message += " (closest: " + label(*closest) + ", " + std::to_string(count) +
             (count == 1 ? " difference)" : " differences)");
  std::string details = "request: " + request + "\nclosest recording: " + label(*closest) + "\n";
  if (count > 0) details += "differences:\n";
  for (std::size_t i = 0; i < count; ++i) {
    const json& d = (*diffs)[i];
    details += "  " + text(member(d, "field")) + ": recorded " + text(member(d, "recorded")) + " | live " +
               text(member(d, "live")) + "\n";
  }
  return details;
}

std::uint64_t count_of(const json* value) {
  if (value == nullptr) return 0;
  if (value->is_number_unsigned()) return value->get<std::uint64_t>();
  if (value->is_number_integer())
    return static_cast<std::uint64_t>(std::max<std::int64_t>(value->get<std::int64_t>(), 0));
  return 0;
}

}  // namespace

std::vector<Mismatch> compare_request(const LiveRequest& live, const store::Interaction& recorded,
                                      const MatchRules& rules) {
  Out out(std::numeric_limits<std::size_t>::max());
  compare_into(live, recorded, rules, out);
  return std::move(out.list);
}

bool matches(const LiveRequest& live, const store::Interaction& recorded, const MatchRules& rules) {
  Out out(1);
  compare_into(live, recorded, rules, out);
  return out.list.empty();
}

std::optional<std::size_t> nearest(const LiveRequest& live,
                                   const std::vector<const store::Interaction*>& candidates,
                                   const MatchRules& rules) {
  std::optional<std::size_t> best;
  std::uint64_t best_weight = 0;
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    if (candidates[i] == nullptr) continue;
    std::uint64_t w = weight(compare_request(live, *candidates[i], rules));
    if (!best || w < best_weight || (w == best_weight && candidates[i]->id < candidates[*best]->id)) {
      best = i;
      best_weight = w;
    }
  }
  return best;
}

std::string request_key(const LiveRequest& live, const MatchRules& rules) {
  return key_of(live.method, live.target, live.headers, live_side(live), rules);
}

std::string request_key(const store::Interaction& recorded, const MatchRules& rules) {
  return key_of(recorded.method, recorded.target, recorded.request_headers, recorded_side(recorded), rules);
}

std::string junit_xml(const nlohmann::json& verdict) {
  std::vector<Case> failures;
  std::size_t ordinal = 0;
  for (const auto& miss : list(verdict, "misses")) {
    Case c{"rproxy.replay.miss",
           "unmatched request " + std::to_string(++ordinal) + ": " + text(member(miss, "request")), "miss",
           "", ""};
    c.details = miss_details(miss, c.message);
    failures.push_back(std::move(c));
  }
  for (const auto& unused : list(verdict, "unused")) {
    std::string what = label(unused);
    failures.push_back({"rproxy.replay.unused", "unused recording " + what, "unused",
                        "recorded interaction " + what + " was never requested",
                        "recording: " + what + "\n"});
  }
  for (const auto& entry : list(verdict, "out_of_order")) {
    std::string what = label(entry);
    std::string note = text(member(entry, "note"));
    std::string message = what + (note.empty() ? " was requested out of recorded order" : ": " + note);
    failures.push_back({"rproxy.replay.out_of_order", "out of order " + what, "out_of_order", message,
                        "recording: " + what + "\n" + (note.empty() ? "" : note + "\n")});
  }

  std::uint64_t hits = count_of(member(verdict, "hits"));
  std::string xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  xml += "<testsuite name=\"rproxy replay\" tests=\"" + std::to_string(failures.size() + 1) +
         "\" failures=\"" + std::to_string(failures.size()) + "\" errors=\"0\" skipped=\"0\">\n";
  xml += "  <testcase classname=\"rproxy.replay\" name=\"recorded interactions replayed\">\n";
  xml += "    <system-out>" + std::to_string(hits) + (hits == 1 ? " request" : " requests") +
         " answered from the recording</system-out>\n";
  xml += "  </testcase>\n";
  for (const auto& c : failures) {
    xml += "  <testcase classname=\"" + c.classname + "\" name=\"" + xml_escape(c.name, true) + "\">\n";
    xml += "    <failure type=\"" + c.type + "\" message=\"" + xml_escape(c.message, true) + "\">" +
           xml_escape(c.details, false) + "</failure>\n";
    xml += "  </testcase>\n";
  }
  xml += "</testsuite>\n";
  return xml;
}

}  // namespace rproxy::stages
