// reset: abort the client connection with a TCP RST ("connection reset by peer", curl exit 56), before
// forwarding, or after "after" bytes of the response body (a reset mid-body). With a connection unit it
// resets connections as they are accepted.
#include "stages/faults/fault.hpp"

namespace rproxy::stages {

namespace {

class ResetFault : public Fault {
 public:
  explicit ResetFault(std::optional<std::uint64_t> after) : after_(after) {}
  std::string type() const override { return "reset"; }
  bool terminal() const override { return !after_; }
  bool at_connect() const override { return !after_; }
  nlohmann::json to_json() const override {
    nlohmann::json j = {{"type", "reset"}};
    if (after_) j["after"] = *after_;
    return j;
  }
  nlohmann::json on_request(Exchange&, Decision& d, const Draws&, const std::string&) const override {
    if (after_) {
      d.truncate_after = *after_;
      d.reset_after_truncate = true;
      return {{"after_bytes", *after_}};
    }
    d.kind = Decision::Kind::Reset;
    return nlohmann::json::object();
  }
  nlohmann::json on_connect(Decision& d, const Draws&) const override {
    d.kind = Decision::Kind::Reset;
    return nlohmann::json::object();
  }

 private:
  std::optional<std::uint64_t> after_;
};

}  // namespace

std::unique_ptr<Fault> parse_reset_fault(const nlohmann::json& v, const std::string& path, ParamReader& r) {
  r.known_keys(v, path, {"type", "after"});
  std::size_t before = r.problems.size();
  std::optional<std::uint64_t> after;
  if (v.contains("after")) after = r.size(v["after"], json_path_key(path, "after"));
  if (r.problems.size() != before) return nullptr;
  return std::make_unique<ResetFault>(after);
}

}  // namespace rproxy::stages
