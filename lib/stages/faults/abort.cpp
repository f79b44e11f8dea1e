// abort: answer with a status (and optional body and headers) without contacting the upstream.
#include "rproxy/http_parser.hpp"
#include "stages/faults/fault.hpp"

namespace rproxy::stages {

namespace {

class AbortFault : public Fault {
 public:
  AbortFault(int status, std::optional<std::string> body, Headers headers)
      : status_(status), body_(std::move(body)), headers_(std::move(headers)) {}
  std::string type() const override { return "abort"; }
  bool terminal() const override { return true; }
  nlohmann::json to_json() const override {
    nlohmann::json j = {{"type", "abort"}, {"status", status_}};
    if (body_) j["body"] = *body_;
    if (!headers_.empty()) {
      j["headers"] = nlohmann::json::object();
      for (const auto& h : headers_) j["headers"][h.name] = h.value;
    }
    return j;
  }
  nlohmann::json on_request(Exchange&, Decision& d, const Draws&, const std::string& rule) const override {
    LocalResponse r;
    r.status = status_;
    r.headers = headers_;
    // The default body says what happened, so nobody mistakes an injected failure for a real one.
    r.body =
        body_ ? *body_ : "fault injected by rproxy (rule " + rule + "): " + std::to_string(status_) + "\n";
    if (!r.headers.has("Content-Type")) r.headers.add("Content-Type", "text/plain; charset=utf-8");
    d.kind = Decision::Kind::Respond;
    d.response = std::move(r);
    return {{"status", status_}};
  }

 private:
  int status_;
  std::optional<std::string> body_;
  Headers headers_;
};

}  // namespace

std::unique_ptr<Fault> parse_abort_fault(const nlohmann::json& v, const std::string& path, ParamReader& r) {
  r.known_keys(v, path, {"type", "status", "body", "headers"});
  std::size_t before = r.problems.size();
  int status = 503;
  if (v.contains("status")) {
    auto s = r.integer(v["status"], json_path_key(path, "status"), 200, 599);
    if (s) status = static_cast<int>(*s);
  }
  std::optional<std::string> body;
  if (v.contains("body")) body = r.string(v["body"], json_path_key(path, "body"));
  Headers headers;
  if (v.contains("headers")) {
    const auto& h = v["headers"];
    auto hp = json_path_key(path, "headers");
    if (!h.is_object()) {
      r.fail(hp, "expected an object of header names to values, got " + json_describe(h));
    } else {
      for (const auto& [name, value] : h.items()) {
        auto val = r.string(value, json_path_key(hp, name));
        if (!val) continue;
        if (!is_token(name) || !is_valid_field_value(*val)) {
          r.fail(json_path_key(hp, name), "not a valid header field");
          continue;
        }
        if (iequals(name, "Content-Length") || iequals(name, "Transfer-Encoding") ||
            iequals(name, "Connection")) {
          r.fail(json_path_key(hp, name), "framing headers are set by rproxy");
          continue;
        }
        headers.add(name, *val);
      }
    }
  }
  if (r.problems.size() != before) return nullptr;
  return std::make_unique<AbortFault>(status, std::move(body), std::move(headers));
}

}  // namespace rproxy::stages
