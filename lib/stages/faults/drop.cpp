// drop: close the connection gracefully (FIN) without answering; the client sees an empty reply (curl
// exit 52), unlike reset's "connection reset by peer".
#include "stages/faults/fault.hpp"

namespace rproxy::stages {

namespace {

class DropFault : public Fault {
 public:
  std::string type() const override { return "drop"; }
  bool terminal() const override { return true; }
  bool at_connect() const override { return true; }
  nlohmann::json to_json() const override { return {{"type", "drop"}}; }
  nlohmann::json on_request(Exchange&, Decision& d, const Draws&, const std::string&) const override {
    d.kind = Decision::Kind::Close;
    return nlohmann::json::object();
  }
  nlohmann::json on_connect(Decision& d, const Draws&) const override {
    d.kind = Decision::Kind::Close;
    return nlohmann::json::object();
  }
};

}  // namespace

std::unique_ptr<Fault> parse_drop_fault(const nlohmann::json& v, const std::string& path, ParamReader& r) {
  std::size_t before = r.problems.size();
  r.known_keys(v, path, {"type"});
  if (r.problems.size() != before) return nullptr;
  return std::make_unique<DropFault>();
}

}  // namespace rproxy::stages
