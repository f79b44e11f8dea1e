// delay: wait before forwarding the request ("at": "request", the default) or before sending the
// response head ("at": "response"), fixed or drawn from a distribution. A drawn delay is never below the
// distribution's floor (min, or scale for pareto) nor above max, and is rounded up to whole milliseconds:
// a client never sees less than was configured.
#include <algorithm>
#include <cmath>
#include <numbers>

#include "stages/faults/fault.hpp"

namespace rproxy::stages {

namespace {

enum class Dist { Fixed, Uniform, Normal, Lognormal, Pareto };
constexpr const char* kDistNames[] = {"fixed", "uniform", "normal", "lognormal", "pareto"};

struct DelaySpec {
  Dist dist = Dist::Fixed;
  double a_ms = 0;  // fixed: value; uniform: min; normal: mean; lognormal: median; pareto: scale
  double b = 0;     // uniform: max (ms); normal: stddev (ms); lognormal: sigma; pareto: shape
  double min_ms = 0;
  double max_ms = 3600.0 * 1000;
  bool at_response = false;
};

class DelayFault : public Fault {
 public:
  explicit DelayFault(DelaySpec s) : s_(s) {}
  std::string type() const override { return "delay"; }
  nlohmann::json to_json() const override {
    auto ms = [](double v) { return format_duration(Millis(static_cast<Millis::rep>(v))); };
    nlohmann::json j = {{"type", "delay"}};
    switch (s_.dist) {
      case Dist::Fixed:
        j["delay"] = ms(s_.a_ms);
        break;
      case Dist::Uniform:
        j["delay"] = {{"distribution", "uniform"}, {"min", ms(s_.a_ms)}, {"max", ms(s_.b)}};
        break;
      case Dist::Normal:
        j["delay"] = {{"distribution", "normal"},
                      {"mean", ms(s_.a_ms)},
                      {"stddev", ms(s_.b)},
                      {"min", ms(s_.min_ms)},
                      {"max", ms(s_.max_ms)}};
        break;
      case Dist::Lognormal:
        j["delay"] = {{"distribution", "lognormal"},
                      {"median", ms(s_.a_ms)},
                      {"sigma", s_.b},
                      {"min", ms(s_.min_ms)},
                      {"max", ms(s_.max_ms)}};
        break;
      case Dist::Pareto:
        j["delay"] = {
            {"distribution", "pareto"}, {"scale", ms(s_.a_ms)}, {"shape", s_.b}, {"max", ms(s_.max_ms)}};
        break;
    }
    j["at"] = s_.at_response ? "response" : "request";
    return j;
  }

  // sample_ms draws the delay for one request from draws 1 and 2.
  double sample_ms(const Draws& draws) const {
    double u1 = draws(1), u2 = draws(2);
    auto normal01 = [&] {
      // Box-Muller; 1 - u1 is in (0, 1], so the log is finite.
      return std::sqrt(-2.0 * std::log(1.0 - u1)) * std::cos(2.0 * std::numbers::pi * u2);
    };
    double v = 0;
    switch (s_.dist) {
      case Dist::Fixed:
        v = s_.a_ms;
        break;
      case Dist::Uniform:
        v = s_.a_ms + u1 * (s_.b - s_.a_ms);
        break;
      case Dist::Normal:
        v = s_.a_ms + normal01() * s_.b;
        break;
      case Dist::Lognormal:
        v = std::exp(std::log(s_.a_ms) + s_.b * normal01());
        break;
      case Dist::Pareto:
        v = s_.a_ms / std::pow(1.0 - u1, 1.0 / s_.b);
        break;
    }
    return std::clamp(v, s_.min_ms, s_.max_ms);
  }

  nlohmann::json on_request(Exchange&, Decision& d, const Draws& draws, const std::string&) const override {
    auto ms = static_cast<std::int64_t>(std::ceil(sample_ms(draws) - 1e-9));
    if (!s_.at_response) d.delay = std::max(d.delay, Millis(ms));
    return {{"delay_ms", ms}, {"at", s_.at_response ? "response" : "request"}};
  }
  void on_response(Exchange&, Decision& d, const nlohmann::json& applied) const override {
    if (s_.at_response) d.delay = std::max(d.delay, Millis(applied.value("delay_ms", std::int64_t{0})));
  }

 private:
  DelaySpec s_;
};

}  // namespace

std::unique_ptr<Fault> parse_delay_fault(const nlohmann::json& v, const std::string& path, ParamReader& r) {
  r.known_keys(v, path, {"type", "delay", "at"});
  std::size_t before = r.problems.size();
  DelaySpec s;
  if (v.contains("at")) {
    auto at = r.string(v["at"], json_path_key(path, "at"));
    if (at && *at != "request" && *at != "response")
      r.fail(json_path_key(path, "at"),
             "expected \"request\" (before forwarding) or \"response\" (before responding)");
    s.at_response = at && *at == "response";
  }
  auto dp = json_path_key(path, "delay");
  if (!v.contains("delay")) {
    r.fail(path, "missing \"delay\": a duration like \"200ms\" or {\"distribution\": \"uniform\", ...}");
    return nullptr;
  }
  const auto& d = v["delay"];
  auto ms_of = [&](const char* key, bool required, double fallback) -> double {
    if (!d.contains(key)) {
      if (required) r.fail(dp, std::string("missing \"") + key + "\"");
      return fallback;
    }
    auto dur = r.duration(d[key], json_path_key(dp, key));
    return dur ? static_cast<double>(dur->count()) : fallback;
  };
  auto number_of = [&](const char* key, double lo) -> double {
    auto kp = json_path_key(dp, key);
    if (!d.contains(key)) {
      r.fail(dp, std::string("missing \"") + key + "\"");
      return 1;
    }
    if (!d[key].is_number() || d[key].get<double>() <= lo) {
      r.fail(kp, "expected a number above " + std::to_string(static_cast<int>(lo)) + ", got " +
                     json_describe(d[key]));
      return 1;
    }
    return d[key].get<double>();
  };
  if (d.is_string() || d.is_number_integer()) {
    auto dur = r.duration(d, dp);
    if (dur) s.a_ms = static_cast<double>(dur->count());
    s.min_ms = s.max_ms = s.a_ms;
  } else if (d.is_object()) {
    std::string dist = "fixed";
    if (d.contains("distribution")) {
      auto name = r.string(d["distribution"], json_path_key(dp, "distribution"));
      if (name) dist = *name;
    }
    if (dist == "fixed") {
      r.known_keys(d, dp, {"distribution", "value"});
      s.a_ms = ms_of("value", true, 0);
      s.min_ms = s.max_ms = s.a_ms;
    } else if (dist == "uniform") {
      r.known_keys(d, dp, {"distribution", "min", "max"});
      s.dist = Dist::Uniform;
      s.a_ms = ms_of("min", true, 0);
      s.b = ms_of("max", true, 0);
      if (s.b < s.a_ms) r.fail(json_path_key(dp, "max"), "must not be below min");
      s.min_ms = s.a_ms;
      s.max_ms = s.b;
    } else if (dist == "normal") {
      r.known_keys(d, dp, {"distribution", "mean", "stddev", "min", "max"});
      s.dist = Dist::Normal;
      s.a_ms = ms_of("mean", true, 0);
      s.b = ms_of("stddev", true, 0);
      s.min_ms = ms_of("min", false, 0);
      s.max_ms = ms_of("max", false, s.max_ms);
    } else if (dist == "lognormal") {
      r.known_keys(d, dp, {"distribution", "median", "sigma", "min", "max"});
      s.dist = Dist::Lognormal;
      s.a_ms = ms_of("median", true, 1);
      if (s.a_ms <= 0) r.fail(json_path_key(dp, "median"), "must be above 0");
      s.b = number_of("sigma", 0);
      s.min_ms = ms_of("min", false, 0);
      s.max_ms = ms_of("max", false, s.max_ms);
    } else if (dist == "pareto") {
      r.known_keys(d, dp, {"distribution", "scale", "shape", "max"});
      s.dist = Dist::Pareto;
      s.a_ms = ms_of("scale", true, 1);
      if (s.a_ms <= 0) r.fail(json_path_key(dp, "scale"), "must be above 0");
      s.b = number_of("shape", 0);
      s.min_ms = s.a_ms;
      s.max_ms = ms_of("max", false, 60000);
    } else {
      std::string list;
      for (const char* n : kDistNames) list += (list.empty() ? "" : ", ") + std::string(n);
      r.fail(json_path_key(dp, "distribution"),
             "unknown distribution \"" + dist + "\" (known: " + list + ")");
    }
    if (s.max_ms < s.min_ms) r.fail(json_path_key(dp, "max"), "must not be below the minimum");
  } else {
    r.fail(dp, "expected a duration like \"200ms\" or a distribution object, got " + json_describe(d));
  }
  if (r.problems.size() != before) return nullptr;
  return std::make_unique<DelayFault>(s);
}

}  // namespace rproxy::stages
