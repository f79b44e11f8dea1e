// Deterministic pseudo-random payloads for body and frame round-trip tests (no copy kept by the reader).
#pragma once

#include <cstdint>
#include <string>

namespace rproxy::test {

inline std::string pseudo_random_bytes(std::size_t size, std::uint32_t seed) {
  std::string out(size, '\0');
  for (auto& c : out) {
    seed = seed * 1664525u + 1013904223u;
    c = static_cast<char>(seed >> 24);
  }
  return out;
}

}  // namespace rproxy::test
