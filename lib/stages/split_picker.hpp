// VariantPicker is the assignment rule of the split stage: weighted rendezvous hashing. Each variant scores
// a key with score = -ln(u) / weight, where u in (0, 1) comes from hashing (seed, key, variant name); the
// lowest score wins. Properties the split stage promises, and why this rule gives them:
//   - the share of keys a variant gets is weight / total exactly in expectation (min of exponentials);
//   - assignment is a pure function of seed, key and the variant list: same on every run and every host;
//   - changing weights moves only keys that must move: raising b's weight (and lowering a's) can only move
//     keys to b or away from a, never from b to a; adding a variant only takes keys to it.
// The hash is rproxy's own (FNV-1a into splitmix64), never std::hash, so results do not depend on the
// standard library build.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace rproxy::stages {

struct Variant {
  std::string name;
  unsigned weight = 1;  // 0 = receives no assigned traffic (a shadow-only variant)
};

class VariantPicker {
 public:
  VariantPicker(std::vector<Variant> variants, std::uint64_t seed);
  // pick returns the index of the variant `key` is assigned to. Variants of weight 0 never win unless
  // every weight is 0 (then the first).
  std::size_t pick(std::string_view key) const;
  // pick_ordinal assigns the n-th unkeyed request (non-sticky mode).
  std::size_t pick_ordinal(std::uint64_t ordinal) const;
  // score is exposed for --explain: lower wins; infinity for weight 0.
  double score(std::size_t variant, std::string_view key) const;
  const std::vector<Variant>& variants() const { return variants_; }
  std::uint64_t seed() const { return seed_; }

 private:
  std::size_t pick_hashed(std::uint64_t key_hash) const;
  double score_hashed(std::size_t variant, std::uint64_t key_hash) const;
  std::vector<Variant> variants_;
  std::vector<std::uint64_t> name_hashes_;
  std::uint64_t seed_;
};

}  // namespace rproxy::stages
