// blackhole: answer nothing and hold the connection until the client gives up, or close it (FIN) after
// "timeout" (a hang that ends in a close, like a dead load balancer).
#include "stages/faults/fault.hpp"

namespace rproxy::stages {

namespace {

class BlackholeFault : public Fault {
 public:
  explicit BlackholeFault(Millis timeout) : timeout_(timeout) {}
  std::string type() const override { return "blackhole"; }
  bool terminal() const override { return true; }
  bool at_connect() const override { return true; }
  nlohmann::json to_json() const override {
    return {{"type", "blackhole"}, {"timeout", format_duration(timeout_)}};
  }
  nlohmann::json on_request(Exchange&, Decision& d, const Draws&, const std::string&) const override {
    return hold(d);
  }
  nlohmann::json on_connect(Decision& d, const Draws&) const override { return hold(d); }

 private:
  nlohmann::json hold(Decision& d) const {
    d.kind = Decision::Kind::Hang;
    d.hang_for = timeout_;
    return {{"timeout_ms", timeout_.count()}};
  }
  Millis timeout_;
};

}  // namespace

std::unique_ptr<Fault> parse_blackhole_fault(const nlohmann::json& v, const std::string& path,
                                             ParamReader& r) {
  r.known_keys(v, path, {"type", "timeout"});
  std::size_t before = r.problems.size();
  Millis timeout{0};
  if (v.contains("timeout"))
    timeout = r.duration(v["timeout"], json_path_key(path, "timeout")).value_or(Millis{0});
  if (r.problems.size() != before) return nullptr;
  return std::make_unique<BlackholeFault>(timeout);
}

}  // namespace rproxy::stages
