// Helpers to look into the JSON the echo upstream answers with ("headers" is an array of [name, value]).
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/raw_client.hpp"

namespace rproxy::test {

inline std::vector<std::pair<std::string, std::string>> echo_headers(const nlohmann::json& doc) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& h : doc.at("headers")) out.emplace_back(h.at(0).get<std::string>(), h.at(1).get<std::string>());
  return out;
}

// echo_header returns the first value of name the echo saw (case-insensitive).
inline std::optional<std::string> echo_header(const nlohmann::json& doc, const std::string& name) {
  for (const auto& [n, v] : echo_headers(doc))
    if (iequal(n, name)) return v;
  return std::nullopt;
}

inline std::size_t echo_header_count(const nlohmann::json& doc, const std::string& name) {
  std::size_t n = 0;
  for (const auto& h : echo_headers(doc))
    if (iequal(h.first, name)) ++n;
  return n;
}

}  // namespace rproxy::test
