#include "stages/split_picker.hpp"

#include <cmath>
#include <limits>

#include "core/balancer.hpp"
#include "core/hash.hpp"

namespace rproxy::stages {

VariantPicker::VariantPicker(std::vector<Variant> variants, std::uint64_t seed)
    : variants_(std::move(variants)), seed_(seed) {
  for (const auto& v : variants_) name_hashes_.push_back(fnv1a64(v.name));
}

double VariantPicker::score_hashed(std::size_t i, std::uint64_t key_hash) const {
  if (variants_[i].weight == 0) return std::numeric_limits<double>::infinity();
  // Keyed by the variant's name, not its position, so reordering or adding variants leaves other
  // variants' scores (and so their keys) alone.
  std::uint64_t h = splitmix64(splitmix64(seed_ ^ key_hash) ^ name_hashes_[i]);
  double u = (static_cast<double>(h >> 11) + 0.5) * 0x1.0p-53;  // uniform in (0, 1), never 0 or 1
  return -std::log(u) / static_cast<double>(variants_[i].weight);
}

std::size_t VariantPicker::pick_hashed(std::uint64_t key_hash) const {
  std::size_t best = 0;
  double best_score = std::numeric_limits<double>::infinity();
  for (std::size_t i = 0; i < variants_.size(); ++i) {
    double s = score_hashed(i, key_hash);
    if (s < best_score) {
      best = i;
      best_score = s;
    }
  }
  return best;
}

std::size_t VariantPicker::pick(std::string_view key) const {
  return pick_hashed(fnv1a64(key));
}

std::size_t VariantPicker::pick_ordinal(std::uint64_t ordinal) const {
  // A distinct domain from text keys, so the request "7" and the 7th unkeyed request are unrelated.
  return pick_hashed(splitmix64(ordinal ^ 0x6f7264696e616cULL));
}

double VariantPicker::score(std::size_t variant, std::string_view key) const {
  return score_hashed(variant, fnv1a64(key));
}

}  // namespace rproxy::stages
