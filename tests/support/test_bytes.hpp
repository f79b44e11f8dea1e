// Deterministic pseudo-random payloads for body and frame round-trip tests (no copy kept by the reader).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace rproxy::test {

inline std::string pseudo_random_bytes(std::size_t size, std::uint32_t seed) {
  std::string out(size, '\0');
  for (auto& c : out) {
    seed = seed * 1664525u + 1013904223u;
    c = static_cast<char>(seed >> 24);
  }
  return out;
}

// printable renders raw bytes for test messages: CR, LF, TAB and backslash escaped, other control and
// non-ASCII bytes as \xNN, and after max bytes only the total length.
inline std::string printable(std::string_view s, std::size_t max = 300) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i == max) {
      out += "...(" + std::to_string(s.size()) + " bytes)";
      break;
    }
    unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '\r': out += "\\r"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\\': out += "\\\\"; break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

}  // namespace rproxy::test
