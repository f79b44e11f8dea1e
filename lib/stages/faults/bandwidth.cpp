// bandwidth: limit the rate of the response body (and/or the request body) in bytes per second.
#include "stages/faults/fault.hpp"

namespace rproxy::stages {

namespace {

class BandwidthFault : public Fault {
 public:
  BandwidthFault(std::uint64_t rate, std::string direction, std::string text)
      : rate_(rate), direction_(std::move(direction)), text_(std::move(text)) {}
  std::string type() const override { return "bandwidth"; }
  nlohmann::json to_json() const override {
    return {{"type", "bandwidth"}, {"rate", text_}, {"direction", direction_}};
  }
  nlohmann::json on_request(Exchange&, Decision& d, const Draws&, const std::string&) const override {
    if (direction_ != "request") d.throttle_bytes_per_s = rate_;
    if (direction_ != "response") d.throttle_request_bytes_per_s = rate_;
    return {{"bytes_per_s", rate_}, {"direction", direction_}};
  }

 private:
  std::uint64_t rate_;
  std::string direction_;
  std::string text_;
};

}  // namespace

std::unique_ptr<Fault> parse_bandwidth_fault(const nlohmann::json& v, const std::string& path,
                                             ParamReader& r) {
  r.known_keys(v, path, {"type", "rate", "direction"});
  std::size_t before = r.problems.size();
  std::uint64_t rate = 0;
  std::string text;
  if (!v.contains("rate")) {
    r.fail(path, "missing \"rate\", e.g. \"100KB/s\"");
  } else if (v["rate"].is_number_unsigned()) {
    rate = v["rate"].get<std::uint64_t>();
    text = std::to_string(rate) + "B/s";
    if (rate == 0) r.fail(json_path_key(path, "rate"), "a rate must be above 0");
  } else if (auto t = r.string(v["rate"], json_path_key(path, "rate"))) {
    text = *t;
    if (auto err = parse_rate(*t, rate)) r.fail(json_path_key(path, "rate"), *err);
  }
  std::string direction = "response";
  if (v.contains("direction")) {
    auto dir = r.string(v["direction"], json_path_key(path, "direction"));
    if (dir && *dir != "response" && *dir != "request" && *dir != "both")
      r.fail(json_path_key(path, "direction"), "expected \"response\", \"request\" or \"both\"");
    else if (dir)
      direction = *dir;
  }
  if (r.problems.size() != before) return nullptr;
  return std::make_unique<BandwidthFault>(rate, direction, text);
}

}  // namespace rproxy::stages
