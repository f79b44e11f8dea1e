// Problems: the "path: message" list a parser or stage factory reports, as a vector doctest can print, so a
// failed comparison shows both sides one problem per line.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "rproxy/scenario.hpp"
#include "rproxy/stage.hpp"

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

// build_stage_ok builds StageT from params (a scenario-wide stage of an empty scenario) and requires that
// it reports no problem; stage_problems requires that it refuses them and returns what it reported.
template <typename StageT>
std::unique_ptr<Stage> build_stage_ok(const nlohmann::json& params, const std::string& path) {
  static const Scenario scenario;
  Problems problems;
  auto stage = StageT::create(params, path, StageContext{scenario, nullptr}, problems);
  CHECK(problems.empty());
  REQUIRE(stage != nullptr);
  return stage;
}

template <typename StageT>
Problems stage_problems(const nlohmann::json& params, const std::string& path) {
  static const Scenario scenario;
  Problems problems;
  auto stage = StageT::create(params, path, StageContext{scenario, nullptr}, problems);
  CHECK(stage == nullptr);
  return problems;
}

}  // namespace rproxy::test
