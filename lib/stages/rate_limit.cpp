#include "stages/rate_limit.hpp"

#include <algorithm>

#include "rproxy/http_parser.hpp"
#include "stages/params.hpp"

namespace rproxy::stages {

namespace {
using nlohmann::json;

std::int64_t ns_of(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

std::uint64_t ceil_seconds(std::int64_t ns) {
  if (ns <= 0) return 0;
  return static_cast<std::uint64_t>((ns + 999'999'999) / 1'000'000'000);
}

struct Admission {
  bool has_headers = false;
  std::uint64_t remaining = 0;
  std::uint64_t reset_s = 0;
};
}  // namespace

std::optional<std::string> parse_rate(const std::string& text, std::uint64_t& count,
                                      std::chrono::seconds& per) {
  auto error = "expected a rate like \"10/s\", \"600/m\" or \"1000/h\", got \"" + text + "\"";
  auto slash = text.find('/');
  if (slash == std::string::npos || slash == 0 || slash > 9) return error;
  auto digits = text.substr(0, slash);
  if (digits.find_first_not_of("0123456789") != std::string::npos) return error;
  count = std::stoull(digits);
  if (count == 0) return "the rate must be at least 1 per window, got \"" + text + "\"";
  auto unit = text.substr(slash + 1);
  if (unit == "s" || unit == "sec" || unit == "second")
    per = std::chrono::seconds(1);
  else if (unit == "m" || unit == "min" || unit == "minute")
    per = std::chrono::seconds(60);
  else if (unit == "h" || unit == "hour")
    per = std::chrono::seconds(3600);
  else
    return error;
  return std::nullopt;
}

std::string RateLimitSettings::rate_text() const {
  const char* unit = per.count() == 1 ? "s" : per.count() == 60 ? "m" : "h";
  return std::to_string(count) + "/" + unit;
}

std::string RateLimitSettings::key_text() const {
  switch (key) {
    case Key::Ip:
      return "ip";
    case Key::Header:
      return "header:" + header;
    case Key::Route:
      return "route";
    case Key::Global:
      return "global";
  }
  return "ip";
}

RateLimitStage::RateLimitStage(RateLimitSettings settings, Clock clock)
    : settings_(std::move(settings)), clock_(std::move(clock)) {
  const auto window_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(settings_.per).count();
  interval_ns_ = std::max<std::int64_t>(1, window_ns / static_cast<std::int64_t>(settings_.count));
  tolerance_ns_ = interval_ns_ * static_cast<std::int64_t>(settings_.burst);
}

std::unique_ptr<Stage> RateLimitStage::create(const json& params, const std::string& path,
                                              const StageContext&, std::vector<std::string>& problems) {
  ParamReader r{problems};
  const auto before = problems.size();
  if (!params.is_object()) {
    r.fail(path, "expected an object with \"rate\", got " + json_describe(params));
    return nullptr;
  }
  r.known_keys(params, path, {"rate", "burst", "key", "max_keys"});
  RateLimitSettings s;
  if (auto it = params.find("rate"); it == params.end()) {
    r.fail(json_path_key(path, "rate"), "required, e.g. \"10/s\"");
  } else if (auto text = r.string(*it, json_path_key(path, "rate"))) {
    if (auto err = parse_rate(*text, s.count, s.per)) r.fail(json_path_key(path, "rate"), *err);
  }
  if (auto it = params.find("burst"); it != params.end())
    if (auto n = r.integer(*it, json_path_key(path, "burst"), 0, 1'000'000)) s.burst = *n;
  if (auto it = params.find("max_keys"); it != params.end())
    if (auto n = r.integer(*it, json_path_key(path, "max_keys"), 1, 10'000'000)) s.max_keys = *n;
  if (auto it = params.find("key"); it != params.end()) {
    if (auto text = r.string(*it, json_path_key(path, "key"))) {
      if (*text == "ip") {
        s.key = RateLimitSettings::Key::Ip;
      } else if (*text == "route") {
        s.key = RateLimitSettings::Key::Route;
      } else if (*text == "global") {
        s.key = RateLimitSettings::Key::Global;
      } else if (text->rfind("header:", 0) == 0 && is_token(text->substr(7))) {
        s.key = RateLimitSettings::Key::Header;
        s.header = text->substr(7);
      } else {
        r.fail(json_path_key(path, "key"),
               "expected \"ip\", \"header:NAME\", \"route\" or \"global\", got \"" + *text + "\"");
      }
    }
  }
  if (problems.size() != before) return nullptr;
  return std::make_unique<RateLimitStage>(std::move(s));
}

std::string RateLimitStage::key_of(const Exchange& ex) const {
  switch (settings_.key) {
    case RateLimitSettings::Key::Ip:
      return ex.client_ip;
    case RateLimitSettings::Key::Header: {
      auto v = ex.request.headers.get(settings_.header);
      return v ? "=" + std::string(*v) : "";  // "" (no header) cannot collide with "=" + a value
    }
    case RateLimitSettings::Key::Route:
      return ex.route;
    case RateLimitSettings::Key::Global:
      return "";
  }
  return "";
}

RateLimitStage::Verdict RateLimitStage::admit(const std::string& key) {
  const std::int64_t now = ns_of(clock_());
  Verdict v;
  std::lock_guard lock(mutex_);
  auto found = buckets_.find(key);
  if (found == buckets_.end()) {
    if (buckets_.size() >= settings_.max_keys) {
      buckets_.erase(lru_.back().key);
      lru_.pop_back();
      ++evicted_;
    }
    lru_.push_front(Bucket{key, now});
    found = buckets_.emplace(key, lru_.begin()).first;
  } else {
    lru_.splice(lru_.begin(), lru_, found->second);
  }
  Bucket& b = *found->second;
  const std::int64_t tat = std::max(b.tat_ns, now);
  if (tat - now > tolerance_ns_) {
    v.allowed = false;
    v.retry_after_s = std::max<std::uint64_t>(1, ceil_seconds(tat - tolerance_ns_ - now));
    v.reset_s = ceil_seconds(tat - now);
    return v;
  }
  b.tat_ns = tat + interval_ns_;
  v.allowed = true;
  // Requests still admissible right now: the capacity (burst + 1) minus what the schedule holds.
  const std::int64_t held = (b.tat_ns - now + interval_ns_ - 1) / interval_ns_;
  v.remaining = static_cast<std::uint64_t>(
      std::max<std::int64_t>(0, static_cast<std::int64_t>(settings_.burst) + 1 - held));
  v.reset_s = ceil_seconds(b.tat_ns - now);
  return v;
}

void RateLimitStage::add_headers(Headers& headers, const Verdict& v) const {
  headers.set("RateLimit-Limit", std::to_string(settings_.count));
  headers.set("RateLimit-Remaining", std::to_string(v.remaining));
  headers.set("RateLimit-Reset", std::to_string(v.reset_s));
  headers.set("RateLimit-Policy",
              std::to_string(settings_.count) + ";w=" + std::to_string(settings_.per.count()) +
                  (settings_.burst > 0 ? ";burst=" + std::to_string(settings_.burst) : ""));
}

Decision RateLimitStage::on_request(Exchange& ex) {
  auto v = admit(key_of(ex));
  if (v.allowed) {
    allowed_.fetch_add(1, std::memory_order_relaxed);
    auto state = std::make_shared<Admission>(Admission{true, v.remaining, v.reset_s});
    ex.stage_state[this] = state;
    return Decision::proceed();
  }
  limited_.fetch_add(1, std::memory_order_relaxed);
  ex.tags["rate_limited"] = settings_.key_text();
  LocalResponse r;
  r.status = 429;
  r.headers.add("Content-Type", "text/plain; charset=utf-8");
  r.headers.add("Retry-After", std::to_string(v.retry_after_s));
  r.headers.add("X-Rproxy-Error", "rate_limited");
  add_headers(r.headers, v);
  r.body = "429 Too Many Requests: over " + settings_.rate_text() +
           (settings_.burst > 0 ? " (burst " + std::to_string(settings_.burst) + ")" : "") + " per " +
           settings_.key_text() + "; retry in " + std::to_string(v.retry_after_s) + " s\n";
  return Decision::respond(std::move(r));
}

Decision RateLimitStage::on_response(Exchange& ex) {
  auto it = ex.stage_state.find(this);
  if (it == ex.stage_state.end() || !ex.response) return Decision::proceed();
  const auto& a = *static_cast<const Admission*>(it->second.get());
  add_headers(ex.response->headers, Verdict{true, a.remaining, a.reset_s, 0});
  return Decision::proceed();
}

json RateLimitStage::report() const {
  std::lock_guard lock(mutex_);
  return {{"rate", settings_.rate_text()}, {"burst", settings_.burst},   {"key", settings_.key_text()},
          {"allowed", allowed_.load()},    {"limited", limited_.load()}, {"keys", buckets_.size()},
          {"evicted_keys", evicted_}};
}

std::string RateLimitStage::summary() const {
  return "rate limit " + settings_.rate_text() + " per " + settings_.key_text() + ": " +
         std::to_string(allowed_.load()) + " allowed, " + std::to_string(limited_.load()) +
         " limited (429)\n";
}

}  // namespace rproxy::stages
