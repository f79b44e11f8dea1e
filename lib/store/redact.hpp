// Redaction: secrets never reach a recording. The same rules run on live requests before replay matches
// them, so a replay with another token still matches its recording.
#pragma once

#include <string>
#include <vector>

#include "rproxy/http.hpp"

namespace rproxy::store {

inline constexpr const char* kRedacted = "REDACTED";

struct RedactionRules {
  // Header fields whose values are replaced (case-insensitive names). The defaults are always included.
  std::vector<std::string> headers{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "X-Api-Key"};
  std::vector<std::string> query;        // query parameter names whose values are replaced
  std::vector<std::string> json_fields;  // JSON object keys (any depth) whose values are replaced
};

// redact_headers replaces the value of every listed field with "REDACTED". For Cookie and Set-Cookie the
// cookie names are kept ("a=REDACTED; b=REDACTED" / "sid=REDACTED; Path=/; HttpOnly") so recordings stay
// readable.
void redact_headers(Headers& headers, const RedactionRules& rules);
// redact_target replaces the values of listed query parameters in an origin-form target, keeping order.
std::string redact_target(const std::string& target, const RedactionRules& rules);
// redact_json_body replaces values of listed keys when body parses as JSON (re-serialized compactly);
// returns false and leaves body alone otherwise. Callers fix Content-Length afterwards.
bool redact_json_body(std::string& body, const RedactionRules& rules);

}  // namespace rproxy::store
