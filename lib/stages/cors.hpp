// CorsStage answers CORS preflights itself and adds the CORS response headers, for front-ends on another
// origin during development (a Vite app on :5173 calling an API behind rproxy).
//
//   {"type": "cors", "params": {"origins": ["http://localhost:*"], "credentials": true,
//                               "methods": ["GET", "POST"], "headers": ["Content-Type"],
//                               "expose": ["X-Request-Id"], "max_age": "10m"}}
//
// origins: exact origins or patterns with "*" (any run of characters: "http://localhost:*",
// "https://*.example.test"); ["*"] (the default) allows every origin. A preflight (OPTIONS with Origin and
// Access-Control-Request-Method) never reaches the upstream: an allowed origin gets 204 with
// Access-Control-Allow-Origin/-Methods/-Headers/-Max-Age (and -Credentials, -Private-Network when asked),
// any other origin gets 403 naming it. Actual requests from an allowed origin get Access-Control-Allow-Origin
// (the origin itself when credentials are on or origins are restricted, since browsers refuse "*" with
// credentials), -Credentials and -Expose-Headers on every response, rproxy's own errors included, and
// Vary: Origin so caches keep origins apart. The upstream's own Access-Control-* headers are replaced.
// headers: [] (default) reflects what the preflight asks for; methods default to the common ones.
//
// Hooks: on_request (preflight), on_response (headers). Stateless after construction.
#pragma once

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "rproxy/stage.hpp"

namespace rproxy::stages {

struct CorsSettings {
  std::vector<std::string> origins{"*"};
  bool credentials = false;
  std::vector<std::string> methods{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
  std::vector<std::string> headers;  // empty = reflect Access-Control-Request-Headers
  std::vector<std::string> expose;
  std::chrono::seconds max_age{600};
};

class CorsStage : public Stage {
 public:
  explicit CorsStage(CorsSettings settings) : settings_(std::move(settings)) {}

  static std::unique_ptr<Stage> create(const nlohmann::json& params, const std::string& path,
                                       const StageContext& context, std::vector<std::string>& problems);

  Decision on_request(Exchange& exchange) override;
  Decision on_response(Exchange& exchange) override;

  // origin_allowed: whether an Origin value matches the configured origins.
  bool origin_allowed(std::string_view origin) const;

 private:
  // The Access-Control-Allow-Origin value for an allowed origin.
  std::string allow_origin_value(const std::string& origin) const;
  CorsSettings settings_;
  bool any_origin_ = false;
};

}  // namespace rproxy::stages
