// slow_close: send the whole response with "Connection: close", then send the FIN only "delay" later, so a
// client that reads until the connection closes waits.
#include "stages/faults/fault.hpp"

namespace rproxy::stages {

namespace {

class SlowCloseFault : public Fault {
 public:
  explicit SlowCloseFault(Millis delay) : delay_(delay) {}
  std::string type() const override { return "slow_close"; }
  nlohmann::json to_json() const override {
    return {{"type", "slow_close"}, {"delay", format_duration(delay_)}};
  }
  nlohmann::json on_request(Exchange&, Decision& d, const Draws&, const std::string&) const override {
    d.close_delay = delay_;
    return {{"delay_ms", delay_.count()}};
  }

 private:
  Millis delay_;
};

}  // namespace

std::unique_ptr<Fault> parse_slow_close_fault(const nlohmann::json& v, const std::string& path,
                                              ParamReader& r) {
  r.known_keys(v, path, {"type", "delay"});
  std::size_t before = r.problems.size();
  Millis delay{0};
  if (!v.contains("delay"))
    r.fail(path, "missing \"delay\": how long after the response the FIN is sent, e.g. \"2s\"");
  else
    delay = r.duration(v["delay"], json_path_key(path, "delay")).value_or(Millis{0});
  if (r.problems.size() == before && delay.count() <= 0)
    r.fail(json_path_key(path, "delay"), "must be above 0");
  if (r.problems.size() != before) return nullptr;
  return std::make_unique<SlowCloseFault>(delay);
}

}  // namespace rproxy::stages
