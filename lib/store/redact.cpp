// Redaction rules. Names are compared ASCII case-insensitively everywhere (headers by definition; query
// parameters and JSON keys too, because a secret that slips through on a spelling difference is worse than
// an over-redacted field). Query names are compared after percent-decoding for the same reason.
#include "store/redact.hpp"

#include <array>
#include <nlohmann/json.hpp>
#include <string_view>

namespace rproxy::store {

namespace {

// Mirrors RedactionRules' initializer: these stay redacted even when a caller replaces the list.
constexpr std::array<std::string_view, 5> kDefaultHeaders = {"Authorization", "Proxy-Authorization", "Cookie",
                                                             "Set-Cookie", "X-Api-Key"};

// JSON nesting beyond this is not re-serialized: nlohmann's dump recurses, and live request bodies are
// attacker-controlled. Real payloads are nowhere near it.
constexpr int kMaxJsonDepth = 512;

bool listed(std::string_view name, const std::vector<std::string>& list) {
  for (const auto& entry : list) {
    if (iequals(name, entry)) return true;
  }
  return false;
}

bool header_listed(std::string_view name, const RedactionRules& rules) {
  for (auto d : kDefaultHeaders) {
    if (iequals(name, d)) return true;
  }
  return listed(name, rules.headers);
}

bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

// redact_pairs replaces the values of the first max_pairs "name=value" elements of a ';'-separated list
// (all when max_pairs is npos), keeping names, separators and spacing. An element without '=' is a bare
// value and is replaced whole.
std::string redact_pairs(std::string_view value, std::size_t max_pairs) {
  std::string out;
  std::size_t index = 0;
  for (;;) {
    auto semi = value.find(';');
    auto element = value.substr(0, semi);
    if (index++ < max_pairs) {
      std::size_t begin = 0;
      std::size_t end = element.size();
      while (begin < end && is_ows(element[begin])) ++begin;
      while (end > begin && is_ows(element[end - 1])) --end;
      if (begin == end) {
        out += element;
      } else {
        auto eq = element.substr(begin, end - begin).find('=');
        std::size_t keep = eq == std::string_view::npos ? begin : begin + eq + 1;
        out += element.substr(0, keep);
        out += kRedacted;
        out += element.substr(end);
      }
    } else {
      out += element;
    }
    if (semi == std::string_view::npos) break;
    out += ';';
    value.remove_prefix(semi + 1);
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Form-style decoding ('+' is a space), so "api%5Fkey" and "api_key" are the same parameter.
std::string decode_query_name(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// Nesting depth of a JSON text, ignoring brackets inside strings (stops counting once past limit).
bool deeper_than(std::string_view text, int limit) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

}  // namespace

void redact_headers(Headers& headers, const RedactionRules& rules) {
  for (auto& h : headers.fields()) {
    if (!header_listed(h.name, rules)) continue;
    if (iequals(h.name, "Cookie")) {
      h.value = redact_pairs(h.value, std::string_view::npos);
    } else if (iequals(h.name, "Set-Cookie")) {
      h.value = redact_pairs(h.value, 1);  // the rest are attributes (Path, HttpOnly, ...), not secrets
    } else {
      h.value = kRedacted;
    }
  }
}

std::string redact_target(const std::string& target, const RedactionRules& rules) {
  auto q = target.find('?');
  if (rules.query.empty() || q == std::string::npos) return target;
  auto end = target.find('#', q);
  if (end == std::string::npos) end = target.size();
  std::string out = target.substr(0, q + 1);
  std::string_view query(target.data() + q + 1, end - q - 1);
  for (;;) {
    auto amp = query.find('&');
    auto param = query.substr(0, amp);
    auto eq = param.find('=');
    if (eq != std::string_view::npos && listed(decode_query_name(param.substr(0, eq)), rules.query)) {
      out += param.substr(0, eq + 1);
      out += kRedacted;
    } else {
      out += param;
    }
    if (amp == std::string_view::npos) break;
    out += '&';
    query.remove_prefix(amp + 1);
  }
  out += target.substr(end);
  return out;
}

// With no json_fields there is nothing to do: false, body untouched (no parse).
bool redact_json_body(std::string& body, const RedactionRules& rules) {
  if (rules.json_fields.empty() || deeper_than(body, kMaxJsonDepth)) return false;
  auto doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_structured()) return false;
  // Only re-serialize when a listed key is present, so bodies without secrets keep their exact bytes; a
  // present key always re-serializes (even if already "REDACTED") so recording and live request agree.
  bool found = false;
  std::vector<nlohmann::json*> pending{&doc};  // explicit stack: nesting depth is caller-controlled
  while (!pending.empty()) {
    nlohmann::json* node = pending.back();
    pending.pop_back();
    if (node->is_object()) {
      for (auto it = node->begin(); it != node->end(); ++it) {
        if (listed(it.key(), rules.json_fields)) {
          *it = kRedacted;
          found = true;
        } else if (it->is_structured()) {
          pending.push_back(&*it);
        }
      }
    } else {
      for (auto& element : *node) {
        if (element.is_structured()) pending.push_back(&element);
      }
    }
  }
  if (found) body = doc.dump();
  return true;
}

}  // namespace rproxy::store
