// HeadersStage sets, adds and removes header fields on the request (before it goes upstream) and on the
// response (before it goes back to the client).
//
//   {"type": "headers", "params": {
//      "request":  {"set": {"X-Env": "dev"}, "add": {"Via": "rproxy"}, "remove": ["Cookie"]},
//      "response": {"set": {"Cache-Control": "no-store"}}}}
//
// Per message the edits apply in a fixed order: remove, then set (replaces every field of that name with
// one), then add (appends, keeping existing fields). Names must be tokens and values valid field values;
// framing and connection headers (Content-Length, Transfer-Encoding, Connection, ...) cannot be edited,
// because the engine frames bodies from what it received and a rewritten length would desynchronise the
// peer, which is how request smuggling starts.
//
// Hooks: on_request, on_response. Stateless after construction, so safe on every thread.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "rproxy/http.hpp"
#include "rproxy/stage.hpp"

namespace rproxy::stages {

// HeaderEdits is what to do to one message's header section.
struct HeaderEdits {
  std::vector<std::string> remove;
  std::vector<Header> set;
  std::vector<Header> add;

  bool empty() const { return remove.empty() && set.empty() && add.empty(); }
  void apply(Headers& headers) const;
  bool operator==(const HeaderEdits&) const = default;
};

// parse_header_edits reads {"set": {...}, "add": {...}, "remove": [...]} into out (problems prefixed with
// path); the fault stage's header rewrite uses the same rules.
void parse_header_edits(const nlohmann::json& v, const std::string& path, HeaderEdits& out,
                        std::vector<std::string>& problems);

class HeadersStage : public Stage {
 public:
  HeadersStage(HeaderEdits request, HeaderEdits response)
      : request_(std::move(request)), response_(std::move(response)) {}

  // create is the registry factory: parses params (problems are prefixed with path) and returns the stage,
  // or nullptr when any problem was found.
  static std::unique_ptr<Stage> create(const nlohmann::json& params, const std::string& path,
                                       const StageContext& context, std::vector<std::string>& problems);

  Decision on_request(Exchange& exchange) override;
  // on_response edits exchange.response when there is one (an upstream answered or a stage responded).
  Decision on_response(Exchange& exchange) override;

  const HeaderEdits& request_edits() const { return request_; }
  const HeaderEdits& response_edits() const { return response_; }

 private:
  HeaderEdits request_;
  HeaderEdits response_;
};

}  // namespace rproxy::stages
