// headers: drop or rewrite request headers (before forwarding) and response headers (before the client
// gets them), with the same set/add/remove rules as the headers stage.
#include "stages/headers.hpp"

#include "stages/faults/fault.hpp"

namespace rproxy::stages {

namespace {

class HeadersFault : public Fault {
 public:
  HeadersFault(HeaderEdits request, HeaderEdits response, nlohmann::json given)
      : request_(std::move(request)), response_(std::move(response)), given_(std::move(given)) {}
  std::string type() const override { return "headers"; }
  nlohmann::json to_json() const override { return given_; }
  nlohmann::json on_request(Exchange& ex, Decision&, const Draws&, const std::string&) const override {
    request_.apply(ex.request.headers);
    return {};
  }
  void on_response(Exchange& ex, Decision&, const nlohmann::json&) const override {
    if (ex.response) response_.apply(ex.response->headers);
  }

 private:
  HeaderEdits request_;
  HeaderEdits response_;
  nlohmann::json given_;
};

}  // namespace

std::unique_ptr<Fault> parse_headers_fault(const nlohmann::json& v, const std::string& path, ParamReader& r) {
  r.known_keys(v, path, {"type", "request", "response"});
  std::size_t before = r.problems.size();
  HeaderEdits request, response;
  if (v.contains("request"))
    parse_header_edits(v["request"], json_path_key(path, "request"), request, r.problems);
  if (v.contains("response"))
    parse_header_edits(v["response"], json_path_key(path, "response"), response, r.problems);
  if (request.empty() && response.empty() && r.problems.size() == before)
    r.fail(path, "give \"request\" and/or \"response\" edits (set, add, remove)");
  if (r.problems.size() != before) return nullptr;
  return std::make_unique<HeadersFault>(std::move(request), std::move(response), v);
}

}  // namespace rproxy::stages
