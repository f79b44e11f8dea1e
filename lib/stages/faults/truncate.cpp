// truncate: send only the first N bytes of the response body, then close the connection (a FIN, or an RST
// with "reset": true), so the client sees a body shorter than announced.
#include "stages/faults/fault.hpp"

namespace rproxy::stages {

namespace {

class TruncateFault : public Fault {
 public:
  TruncateFault(std::uint64_t after, bool reset) : after_(after), reset_(reset) {}
  std::string type() const override { return "truncate"; }
  nlohmann::json to_json() const override {
    return {{"type", "truncate"}, {"after", after_}, {"reset", reset_}};
  }
  nlohmann::json on_request(Exchange&, Decision& d, const Draws&, const std::string&) const override {
    d.truncate_after = after_;
    d.reset_after_truncate = reset_;
    return {{"after_bytes", after_}, {"reset", reset_}};
  }

 private:
  std::uint64_t after_;
  bool reset_;
};

}  // namespace

std::unique_ptr<Fault> parse_truncate_fault(const nlohmann::json& v, const std::string& path,
                                            ParamReader& r) {
  r.known_keys(v, path, {"type", "after", "reset"});
  std::size_t before = r.problems.size();
  std::uint64_t after = 0;
  if (!v.contains("after"))
    r.fail(path, "missing \"after\": the number of response body bytes sent before the cut");
  else if (auto n = r.size(v["after"], json_path_key(path, "after")))
    after = *n;
  bool reset = false;
  if (v.contains("reset")) reset = r.boolean(v["reset"], json_path_key(path, "reset")).value_or(false);
  if (r.problems.size() != before) return nullptr;
  return std::make_unique<TruncateFault>(after, reset);
}

}  // namespace rproxy::stages
