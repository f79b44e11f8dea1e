// slice: write the response body in pieces of "size" bytes with "delay" between them (a slow, dribbling
// server; exposes clients that assume one read returns a whole message).
#include "stages/faults/fault.hpp"

namespace rproxy::stages {

namespace {

class SliceFault : public Fault {
 public:
  SliceFault(std::uint64_t size, Millis delay) : size_(size), delay_(delay) {}
  std::string type() const override { return "slice"; }
  nlohmann::json to_json() const override {
    return {{"type", "slice"}, {"size", size_}, {"delay", format_duration(delay_)}};
  }
  nlohmann::json on_request(Exchange&, Decision& d, const Draws&, const std::string&) const override {
    d.slice_bytes = size_;
    d.slice_delay = delay_;
    return {{"size", size_}, {"delay_ms", delay_.count()}};
  }

 private:
  std::uint64_t size_;
  Millis delay_;
};

}  // namespace

std::unique_ptr<Fault> parse_slice_fault(const nlohmann::json& v, const std::string& path, ParamReader& r) {
  r.known_keys(v, path, {"type", "size", "delay"});
  std::size_t before = r.problems.size();
  std::uint64_t size = 1;
  if (v.contains("size")) size = r.size(v["size"], json_path_key(path, "size")).value_or(1);
  if (size == 0) r.fail(json_path_key(path, "size"), "must be at least 1 byte");
  Millis delay{0};
  if (v.contains("delay")) delay = r.duration(v["delay"], json_path_key(path, "delay")).value_or(Millis{0});
  if (r.problems.size() != before) return nullptr;
  return std::make_unique<SliceFault>(size, delay);
}

}  // namespace rproxy::stages
