// Problems: the "path: message" list a parser or stage factory reports, as a vector doctest can print, so a
// failed comparison shows both sides one problem per line.
#pragma once

#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

namespace rproxy::test {

struct Problems : std::vector<std::string> {
  using std::vector<std::string>::vector;
  Problems(const std::vector<std::string>& v) : std::vector<std::string>(v) {}  // NOLINT: implicit on purpose
};

inline std::ostream& operator<<(std::ostream& os, const Problems& problems) {
  os << "{";
  for (const auto& p : problems) os << "\n  " << nlohmann::json(p).dump();
  return os << "\n}";
}

}  // namespace rproxy::test
