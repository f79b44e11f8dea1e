#include <cmath>

#include "core/balancer.hpp"
#include "core/hash.hpp"
#include "stages/faults/fault.hpp"

namespace rproxy::stages {

namespace {

struct Entry {
  const char* type;
  std::unique_ptr<Fault> (*parse)(const nlohmann::json&, const std::string&, ParamReader&);
};

constexpr Entry kFaults[] = {
    {"abort", parse_abort_fault},
    {"delay", parse_delay_fault},
    {"bandwidth", parse_bandwidth_fault},
    {"truncate", parse_truncate_fault},
    {"headers", parse_headers_fault},
    {"reset", parse_reset_fault},
    {"drop", parse_drop_fault},
    {"blackhole", parse_blackhole_fault},
    {"slow_close", parse_slow_close_fault},
    {"slice", parse_slice_fault},
    {"refuse", parse_refuse_fault},
};

}  // namespace

double unit_draw(std::uint64_t seed, std::string_view rule, std::string_view key, std::uint64_t index) {
  Fnv1a64 h;
  h.update(rule);
  h.update(std::string_view("\0", 1));
  h.update(key);
  std::uint64_t x = splitmix64(splitmix64(seed ^ h.value()) ^ splitmix64(index + 0x9e3779b97f4a7c15ULL));
  return static_cast<double>(x >> 11) * 0x1.0p-53;  // [0, 1): p = 1 always fires, p = 0 never
}

std::vector<std::string> fault_types() {
  std::vector<std::string> out;
  for (const auto& e : kFaults) out.emplace_back(e.type);
  return out;
}

std::unique_ptr<Fault> parse_fault(const nlohmann::json& v, const std::string& path, ParamReader& reader) {
  if (!v.is_object()) {
    reader.fail(
        path, "expected a fault object like {\"type\": \"abort\", \"status\": 503}, got " + json_describe(v));
    return nullptr;
  }
  std::string list;
  for (const auto& e : kFaults) list += (list.empty() ? "" : ", ") + std::string(e.type);
  auto t = v.find("type");
  if (t == v.end()) {
    reader.fail(path, "missing \"type\" (one of " + list + ")");
    return nullptr;
  }
  auto type = reader.string(*t, json_path_key(path, "type"));
  if (!type) return nullptr;
  for (const auto& e : kFaults)
    if (*type == e.type) return e.parse(v, path, reader);
  reader.fail(json_path_key(path, "type"), "unknown fault type \"" + *type + "\" (known: " + list + ")");
  return nullptr;
}

std::optional<std::string> parse_rate(const std::string& text, std::uint64_t& bytes_per_s) {
  std::string size = text;
  if (size.size() > 2 && size.compare(size.size() - 2, 2, "/s") == 0) size.resize(size.size() - 2);
  if (auto err = parse_size(size, bytes_per_s))
    return "expected a rate like \"100KB/s\" or \"1MiB/s\", got \"" + text + "\"";
  if (bytes_per_s == 0) return "a rate must be above 0, got \"" + text + "\"";
  return std::nullopt;
}

}  // namespace rproxy::stages
