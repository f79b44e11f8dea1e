#include "stages/shadow_diff.hpp"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <variant>

namespace rproxy::stages {

namespace {

using nlohmann::json;

constexpr std::string_view kAbsent = "(absent)";
constexpr std::size_t kMaxRendering = 80;
constexpr std::size_t kExcerptChars = 32;
// The structural walk, nlohmann's == and dump all recurse; bodies nested deeper than this (a megabyte of
// '[' would be half a million frames) compare as bytes instead of risking the worker's stack.
constexpr int kMaxJsonDepth = 128;

// ---- ignore entries ----

struct Segment {
  enum class Kind { Key, AnyKey, Index, AnyIndex } kind = Kind::Key;
  std::string key;
  std::size_t index = 0;
};

// parse_path parses a "$..." ignore path into segments; on failure returns nullopt and sets error.
std::optional<std::vector<Segment>> parse_path(std::string_view path, std::string& error) {
  std::vector<Segment> segments;
  std::size_t i = 1;  // past '$'
  auto fail = [&](std::string what, std::size_t at) {
    error = "ignore path \"" + std::string(path) + "\": " + what + " at offset " + std::to_string(at);
    return std::nullopt;
  };
  while (i < path.size()) {
    char c = path[i];
    if (c == '.') {
      ++i;
      std::size_t end = path.find_first_of(".[]", i);
      if (end == std::string_view::npos) end = path.size();
      if (end == i) return fail("expected a field name after '.'", i);
      if (end < path.size() && path[end] == ']') return fail("unexpected ']'", end);
      std::string_view name = path.substr(i, end - i);
      if (name == "*")
        segments.push_back({Segment::Kind::AnyKey, {}, 0});
      else
        segments.push_back({Segment::Kind::Key, std::string(name), 0});
      i = end;
    } else if (c == '[') {
      ++i;
      if (i < path.size() && path[i] == '*') {
        segments.push_back({Segment::Kind::AnyIndex, {}, 0});
        ++i;
      } else if (i < path.size() && path[i] == '"') {
        std::size_t close = path.find('"', i + 1);
        if (close == std::string_view::npos) return fail("unterminated quoted name", i);
        segments.push_back({Segment::Kind::Key, std::string(path.substr(i + 1, close - i - 1)), 0});
        i = close + 1;
      } else {
        std::size_t start = i;
        std::size_t index = 0;
        while (i < path.size() && path[i] >= '0' && path[i] <= '9') {
          if (i - start >= 18) return fail("index too large", start);
          index = index * 10 + static_cast<std::size_t>(path[i] - '0');
          ++i;
        }
        if (i == start) return fail("expected an index, * or a quoted name after '['", i);
        segments.push_back({Segment::Kind::Index, {}, index});
      }
      if (i >= path.size() || path[i] != ']') return fail("expected ']'", i);
      ++i;
    } else {
      return fail("expected '.' or '['", i);
    }
  }
  return segments;
}

using Step = std::variant<std::string_view, std::size_t>;  // object key or array index

// Ignores is DiffOptions::ignore compiled once per comparison.
struct Ignores {
  std::vector<std::string_view> names;
  std::vector<std::vector<Segment>> paths;

  explicit Ignores(const std::vector<std::string>& entries) {
    std::string unused;
    for (const auto& e : entries) {
      // Entries are validated at config time; one that slipped through is skipped rather than guessed at.
      if (check_ignore_entry(e)) continue;
      if (e[0] != '$') {
        names.push_back(e);
      } else if (auto p = parse_path(e, unused)) {
        paths.push_back(std::move(*p));
      }
    }
  }

  bool covers_name(std::string_view key) const {
    return std::find(names.begin(), names.end(), key) != names.end();
  }

  // covers tells whether a $ path matches the location steps lead to (exactly, not a prefix of it).
  bool covers(const std::vector<Step>& steps) const {
    for (const auto& segments : paths) {
      if (segments.size() != steps.size()) continue;
      bool match = true;
      for (std::size_t i = 0; i < segments.size() && match; ++i) {
        const auto& seg = segments[i];
        const auto* key = std::get_if<std::string_view>(&steps[i]);
        const auto* index = std::get_if<std::size_t>(&steps[i]);
        switch (seg.kind) {
          case Segment::Kind::Key:
            match = key && *key == seg.key;
            break;
          case Segment::Kind::AnyKey:
            match = key != nullptr;
            break;
          case Segment::Kind::Index:
            match = index && *index == seg.index;
            break;
          case Segment::Kind::AnyIndex:
            match = index != nullptr;
            break;
        }
      }
      if (match) return true;
    }
    return false;
  }
};

// ---- rendering ----

// cut shortens s to about kMaxRendering bytes, never splitting a UTF-8 sequence.
std::string cut(std::string s) {
  if (s.size() <= kMaxRendering) return s;
  std::size_t n = kMaxRendering - 3;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  s.resize(n);
  s += "…";
  return s;
}

void append_escaped(std::string& out, unsigned char c) {
  switch (c) {
    case '\n':
      out += "\\n";
      return;
    case '\r':
      out += "\\r";
      return;
    case '\t':
      out += "\\t";
      return;
    case '"':
      out += "\\\"";
      return;
    case '\\':
      out += "\\\\";
      return;
    default:
      break;
  }
  if (c >= 0x20 && c < 0x7F) {
    out += static_cast<char>(c);
    return;
  }
  char buf[8];
  std::snprintf(buf, sizeof buf, "\\x%02x", c);
  out += buf;
}

std::string hex64(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::uint64_t total_size(const CapturedResponse& r) {
  return std::max<std::uint64_t>(r.body_size, r.body.size());
}

// render_bytes describes one side's body at the first offset where the two differ.
std::string render_bytes(const CapturedResponse& r, std::size_t offset) {
  std::string size = " (" + std::to_string(total_size(r)) + " bytes)";
  if (offset < r.body.size()) {
    std::string out = "at byte " + std::to_string(offset) + ": \"";
    if (offset > 0) out += "…";
    std::size_t start = out.size();
    std::size_t i = offset;
    for (; i < r.body.size() && out.size() - start < kExcerptChars; ++i)
      append_escaped(out, static_cast<unsigned char>(r.body[i]));
    if (i < total_size(r)) out += "…";
    return cut(out + "\"" + size);
  }
  if (r.body_complete) return cut("at byte " + std::to_string(offset) + ": end of body" + size);
  return cut("past the first " + std::to_string(offset) + " bytes, fnv1a " + hex64(r.body_hash) + size);
}

std::string render_json(const json& j) {
  // The parser only accepts valid UTF-8, but replace rather than throw should anything else get here.
  return cut(j.dump(-1, ' ', false, json::error_handler_t::replace));
}

// ---- body classification ----

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool is_json_type(const Headers& headers) {
  auto value = headers.get("Content-Type");
  if (!value) return false;
  std::string_view v = *value;
  v = v.substr(0, v.find(';'));
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  std::string type = lower(v);
  auto slash = type.find('/');
  if (slash == std::string::npos || slash == 0) return false;
  return type == "application/json" || (type.size() > slash + 6 && type.ends_with("+json"));
}

// shallow_enough tells whether body nests no deeper than kMaxJsonDepth, scanning bytes (iteratively) so
// that nothing recursive ever sees a hostile body.
bool shallow_enough(std::string_view body) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : body) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

// ---- structural comparison ----

class Collector {
 public:
  Collector(std::vector<Difference>& out, std::size_t limit)
      : out_(out), limit_(std::max<std::size_t>(limit, 1)) {}
  bool full() const { return out_.size() >= limit_; }
  void add(std::string where, std::string primary, std::string shadow) {
    if (full()) return;
    out_.push_back({std::move(where), cut(std::move(primary)), cut(std::move(shadow))});
  }

 private:
  std::vector<Difference>& out_;
  std::size_t limit_;
};

bool plain_key(std::string_view key) {
  if (key.empty()) return false;
  for (unsigned char c : key) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-' || c >= 0x80;
    if (!ok) return false;
  }
  return true;
}

class JsonDiff {
 public:
  JsonDiff(const Ignores& ignores, Collector& out) : ignores_(ignores), out_(out) {}

  void walk(const json& p, const json& s) {
    if (out_.full() || ignored()) return;
    if (p.is_object() && s.is_object()) {
      walk_objects(p.get_ref<const json::object_t&>(), s.get_ref<const json::object_t&>());
    } else if (p.is_array() && s.is_array()) {
      walk_arrays(p.get_ref<const json::array_t&>(), s.get_ref<const json::array_t&>());
    } else if (p != s) {  // nlohmann compares numbers by value across integer and float types
      out_.add("body " + path(), render_json(p), render_json(s));
    }
  }

 private:
  void walk_objects(const json::object_t& p, const json::object_t& s) {
    // object_t is a std::map, so both sides iterate in sorted key order and merge like sorted lists.
    auto pi = p.begin();
    auto si = s.begin();
    while ((pi != p.end() || si != s.end()) && !out_.full()) {
      bool take_p = si == s.end() || (pi != p.end() && pi->first <= si->first);
      bool take_s = pi == p.end() || (si != s.end() && si->first <= pi->first);
      const std::string& key = take_p ? pi->first : si->first;
      if (!ignored_name(key)) {
        steps_.push_back(std::string_view(key));
        if (take_p && take_s)
          walk(pi->second, si->second);
        else if (!ignored())
          out_.add("body " + path(), take_p ? render_json(pi->second) : std::string(kAbsent),
                   take_s ? render_json(si->second) : std::string(kAbsent));
        steps_.pop_back();
      }
      if (take_p) ++pi;
      if (take_s) ++si;
    }
  }

  void walk_arrays(const json::array_t& p, const json::array_t& s) {
    // Length first: after an insertion every later element differs, and those would crowd it out.
    if (p.size() != s.size())
      out_.add("body " + path() + " length", std::to_string(p.size()), std::to_string(s.size()));
    for (std::size_t i = 0; i < std::min(p.size(), s.size()) && !out_.full(); ++i) {
      steps_.push_back(i);
      walk(p[i], s[i]);
      steps_.pop_back();
    }
  }

  bool ignored_name(std::string_view key) const { return ignores_.covers_name(key); }
  bool ignored() const { return ignores_.covers(steps_); }

  // path renders the current location so that it reads back as an ignore path for the same spot.
  std::string path() const {
    std::string out = "$";
    for (const auto& step : steps_) {
      if (const auto* index = std::get_if<std::size_t>(&step)) {
        out += "[" + std::to_string(*index) + "]";
        continue;
      }
      auto key = std::get<std::string_view>(step);
      if (plain_key(key)) {
        out += ".";
        out += key;
      } else {
        out += "[";
        out += json(key).dump(-1, ' ', false, json::error_handler_t::replace);
        out += "]";
      }
    }
    return out;
  }

  const Ignores& ignores_;
  Collector& out_;
  std::vector<Step> steps_;
};

// ---- removing ignored fields ----

// strip erases what ignores cover below doc (located by steps), mirroring JsonDiff's checks exactly so that
// documents JsonDiff finds equal come out ==: ignored members go, ignored array elements become null
// (a difference in array length still counts there).
void strip(json& doc, const Ignores& ignores, std::vector<Step>& steps) {
  if (doc.is_object()) {
    auto& object = doc.get_ref<json::object_t&>();
    for (auto it = object.begin(); it != object.end();) {
      bool covered = ignores.covers_name(it->first);
      if (!covered) {
        steps.push_back(std::string_view(it->first));
        covered = ignores.covers(steps);
        if (!covered) strip(it->second, ignores, steps);
        steps.pop_back();
      }
      it = covered ? object.erase(it) : std::next(it);
    }
  } else if (doc.is_array()) {
    auto& array = doc.get_ref<json::array_t&>();
    for (std::size_t i = 0; i < array.size(); ++i) {
      steps.push_back(i);
      if (ignores.covers(steps))
        array[i] = nullptr;
      else
        strip(array[i], ignores, steps);
      steps.pop_back();
    }
  }
}

// ---- byte comparison ----

void compare_bytes(const CapturedResponse& p, const CapturedResponse& s, Collector& out) {
  bool complete = p.body_complete && s.body_complete;
  bool size_differs = total_size(p) != total_size(s);
  // A complete body is all there is, so compare it directly; the hash only stands in for bytes not kept.
  bool differs = size_differs || (complete ? p.body != s.body : p.body_hash != s.body_hash);
  if (!differs) return;
  auto first = std::mismatch(p.body.begin(), p.body.end(), s.body.begin(), s.body.end()).first;
  auto offset = static_cast<std::size_t>(first - p.body.begin());
  out.add(!complete && size_differs ? "body size" : "body", render_bytes(p, offset), render_bytes(s, offset));
}

void compare_bodies(const CapturedResponse& p, const CapturedResponse& s, const DiffOptions& opts,
                    Collector& out) {
  if (p.body_complete && s.body_complete && is_json_type(p.headers) && is_json_type(s.headers)) {
    auto pj = parse_json_body(p.body);
    auto sj = parse_json_body(s.body);
    if (pj && sj) {
      Ignores ignores(opts.ignore);
      JsonDiff(ignores, out).walk(*pj, *sj);
      return;
    }
  }
  compare_bytes(p, s, out);
}

}  // namespace

std::vector<Difference> compare_responses(const CapturedResponse& primary, const CapturedResponse& shadow,
                                          const DiffOptions& opts) {
  std::vector<Difference> out;
  // Runs on an engine thread: a failure here (only allocation can fail) must cost the comparison, not the
  // worker, so whatever was found so far is returned.
  try {
    Collector collector(out, opts.max_differences);
    if (primary.error != shadow.error)
      collector.add("error", primary.error.empty() ? std::string(kAbsent) : primary.error,
                    shadow.error.empty() ? std::string(kAbsent) : shadow.error);
    // A failed exchange has no meaningful status or body to hold against the other side.
    if (!primary.error.empty() || !shadow.error.empty()) return out;

    if (primary.status != shadow.status)
      collector.add("status", std::to_string(primary.status), std::to_string(shadow.status));
    for (const auto& name : opts.headers) {
      bool ph = primary.headers.has(name);
      bool sh = shadow.headers.has(name);
      std::string pv = ph ? primary.headers.joined(name) : std::string(kAbsent);
      std::string sv = sh ? shadow.headers.joined(name) : std::string(kAbsent);
      if (ph != sh || pv != sv) collector.add("header " + name, std::move(pv), std::move(sv));
    }
    if (!collector.full()) compare_bodies(primary, shadow, opts, collector);
  } catch (...) {
  }
  return out;
}

std::optional<std::string> check_ignore_entry(std::string_view entry) {
  if (entry.empty()) return std::string("ignore entry is empty");
  if (entry[0] != '$') {
    if (entry.find_first_of(".[]") != std::string_view::npos)
      return "ignore name \"" + std::string(entry) +
             "\": a bare name cannot contain '.', '[' or ']' (use a $ path)";
    return std::nullopt;
  }
  std::string error;
  if (!parse_path(entry, error)) return error;
  return std::nullopt;
}

bool is_json_content_type(const Headers& headers) {
  return is_json_type(headers);
}

std::optional<nlohmann::json> parse_json_body(std::string_view body) {
  if (!shallow_enough(body)) return std::nullopt;
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

void remove_ignored_json(nlohmann::json& doc, const std::vector<std::string>& ignore) {
  Ignores ignores(ignore);
  std::vector<Step> steps;
  if (ignores.covers(steps))
    doc = nullptr;
  else
    strip(doc, ignores, steps);
}

}  // namespace rproxy::stages
