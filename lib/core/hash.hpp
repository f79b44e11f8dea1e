// The hashes rproxy's reproducible choices and body comparisons are built on. They are rproxy's own (never
// std::hash), so results are the same on every platform, build and release: assignments derived from them
// are part of what a seed promises.
#pragma once

#include <cstdint>
#include <string_view>

namespace rproxy {

// Fnv1a64 is 64-bit FNV-1a, fed incrementally (bodies are hashed while they stream, in O(1) memory).
class Fnv1a64 {
 public:
  void update(std::string_view data) {
    for (unsigned char c : data) {
      hash_ ^= c;
      hash_ *= 0x100000001b3ULL;
    }
  }
  std::uint64_t value() const { return hash_; }

 private:
  std::uint64_t hash_ = 0xcbf29ce484222325ULL;
};

inline std::uint64_t fnv1a64(std::string_view text) {
  Fnv1a64 h;
  h.update(text);
  return h.value();
}

}  // namespace rproxy
