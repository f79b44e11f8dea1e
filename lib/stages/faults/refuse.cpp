// refuse: turn new connections away as they are accepted (an immediate RST, before any byte is read): the
// closest a user-space proxy comes to a refused connect without closing its listener, which would refuse
// every client at once. Only meaningful with "per": "connection".
#include "stages/faults/fault.hpp"

namespace rproxy::stages {

namespace {

class RefuseFault : public Fault {
 public:
  std::string type() const override { return "refuse"; }
  bool terminal() const override { return true; }
  bool at_connect() const override { return true; }
  bool only_at_connect() const override { return true; }
  nlohmann::json to_json() const override { return {{"type", "refuse"}}; }
  nlohmann::json on_request(Exchange&, Decision& d, const Draws&, const std::string&) const override {
    d.kind = Decision::Kind::Reset;
    return nlohmann::json::object();
  }
  nlohmann::json on_connect(Decision& d, const Draws&) const override {
    d.kind = Decision::Kind::Reset;
    return nlohmann::json::object();
  }
};

}  // namespace

std::unique_ptr<Fault> parse_refuse_fault(const nlohmann::json& v, const std::string& path, ParamReader& r) {
  std::size_t before = r.problems.size();
  r.known_keys(v, path, {"type"});
  if (r.problems.size() != before) return nullptr;
  return std::make_unique<RefuseFault>();
}

}  // namespace rproxy::stages
