// ParamReader reads a stage's params the way the scenario loader reads the scenario: each reader appends
// "path: message" to the problems (paths built with json_path_key/json_path_index) and returns nullopt on
// a bad value, so a stage reports every problem at once with the same wording as the rest of the format.
#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "rproxy/scenario.hpp"

namespace rproxy::stages {

struct ParamReader {
  std::vector<std::string>& problems;
  void fail(const std::string& path, const std::string& msg) { problems.push_back(path + ": " + msg); }

  std::optional<std::string> string(const nlohmann::json& v, const std::string& path) {
    if (v.is_string()) return v.get<std::string>();
    fail(path, "expected a string, got " + json_describe(v));
    return std::nullopt;
  }
  std::optional<bool> boolean(const nlohmann::json& v, const std::string& path) {
    if (v.is_boolean()) return v.get<bool>();
    fail(path, "expected true or false, got " + json_describe(v));
    return std::nullopt;
  }
  std::optional<std::uint64_t> integer(const nlohmann::json& v, const std::string& path, std::uint64_t lo,
                                       std::uint64_t hi) {
    if (v.is_number_unsigned() || (v.is_number_integer() && v.get<std::int64_t>() >= 0)) {
      auto n = v.get<std::uint64_t>();
      if (n >= lo && n <= hi) return n;
    }
    fail(path, "expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi) + ", got " +
                   json_describe(v));
    return std::nullopt;
  }
  std::optional<std::chrono::milliseconds> duration(const nlohmann::json& v, const std::string& path) {
    auto s = v.is_number_integer() && v.get<std::int64_t>() == 0 ? std::optional<std::string>("0")
                                                                 : string(v, path);
    if (!s) return std::nullopt;
    std::chrono::milliseconds d{0};
    if (auto err = parse_duration(*s, d)) {
      fail(path, *err);
      return std::nullopt;
    }
    return d;
  }
  std::optional<std::uint64_t> size(const nlohmann::json& v, const std::string& path) {
    if (v.is_number_unsigned() || (v.is_number_integer() && v.get<std::int64_t>() >= 0))
      return v.get<std::uint64_t>();
    auto s = string(v, path);
    if (!s) return std::nullopt;
    std::uint64_t n = 0;
    if (auto err = parse_size(*s, n)) {
      fail(path, *err);
      return std::nullopt;
    }
    return n;
  }
  std::optional<std::vector<std::string>> strings(const nlohmann::json& v, const std::string& path) {
    if (!v.is_array()) {
      fail(path, "expected an array of strings, got " + json_describe(v));
      return std::nullopt;
    }
    std::vector<std::string> out;
    bool ok = true;
    for (std::size_t i = 0; i < v.size(); ++i) {
      auto s = string(v[i], json_path_index(path, i));
      if (s)
        out.push_back(*s);
      else
        ok = false;
    }
    if (!ok) return std::nullopt;
    return out;
  }
  // Rejects keys not in `known`, with the list of known ones.
  void known_keys(const nlohmann::json& obj, const std::string& path,
                  std::initializer_list<const char*> known) {
    for (const auto& [key, value] : obj.items()) {
      bool found = false;
      std::string list;
      for (const char* k : known) {
        found = found || key == k;
        list += (list.empty() ? "" : ", ") + std::string(k);
      }
      if (!found) fail(json_path_key(path, key), "unknown key (known: " + list + ")");
    }
  }
};

}  // namespace rproxy::stages
