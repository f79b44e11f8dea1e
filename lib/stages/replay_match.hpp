// Replay matching decides which recorded interaction answers a live request. A request matches a recording
// when method, path, query (order-free, minus ignored parameters), the listed header fields and the body
// agree; host, port and header order never count. Bodies follow shadow_diff's rules (JSON structurally,
// with the same ignore syntax; otherwise bytes) plus order-free form bodies, and large bodies that only
// exist as files in the recording compare by size and SHA-256.
//
// Besides the yes/no answer, this module explains misses (the nearest recording and how it differs),
// groups identical requests under one key, and renders a replay verdict as JUnit XML for CI.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "rproxy/http.hpp"
#include "store/cassette.hpp"

namespace rproxy::stages {

struct MatchRules {
  std::vector<std::string> ignore_query;   // query parameter names not compared (after percent-decoding)
  std::vector<std::string> ignore_json;    // JSON body fields not compared (shadow_diff ignore syntax)
  std::vector<std::string> match_headers;  // request header fields compared (case-insensitive; values joined
                                           // ", "); none by default
};

struct LiveRequest {
  std::string method;
  std::string target;  // origin-form with query
  Headers headers;
  std::string body;  // whole body when <= store::kInlineLimit, else empty or a prefix (see body_size)
  std::uint64_t body_size = 0;
  std::string body_sha256;  // hex, always filled by the caller (lets large bodies compare with file bodies)
};

struct Mismatch {
  // "method", "path", "query NAME", "header NAME", "body" (bytes, sizes or digests), "body $.a[1].b" and
  // "body $.items length" (JSON), "body form NAME" (form fields).
  std::string field;
  std::string recorded;  // short, printable rendering; "(absent)" when that side lacks it
  std::string live;
  bool operator==(const Mismatch&) const = default;
};

// compare_request lists how live differs from recorded, in a fixed order: method, path, query parameters
// (by name), headers (rules order), body. Empty means they match. Never throws on hostile input.
std::vector<Mismatch> compare_request(const LiveRequest& live, const store::Interaction& recorded,
                                      const MatchRules& rules);
// matches is compare_request(...).empty(), stopping at the first difference.
bool matches(const LiveRequest& live, const store::Interaction& recorded, const MatchRules& rules);

// nearest returns the index (into candidates) of the interaction with the lightest mismatches: a different
// path or method weighs far more than query, header and body differences. Ties go to the lowest id; null
// entries are skipped; nullopt when there is nothing to choose from.
std::optional<std::size_t> nearest(const LiveRequest& live,
                                   const std::vector<const store::Interaction*>& candidates,
                                   const MatchRules& rules);

// request_key names a request's identity under rules: method, path, sorted query minus ignored parameters,
// the matched header fields, and a body digest (JSON bodies canonical: sorted keys, numbers by value,
// ignored fields removed; form bodies sorted; others by SHA-256, so file bodies key as "sha256:<file>").
// Requests that match each other get the same key, provided both sides' Content-Types put the bodies in
// the same class (JSON, form, other) — the only way bodies of different classes can still match is being
// byte-identical, which a key computed from one side alone cannot see.
std::string request_key(const LiveRequest& live, const MatchRules& rules);
std::string request_key(const store::Interaction& recorded, const MatchRules& rules);

// junit_xml renders a replay verdict as one <testsuite name="rproxy replay">: a passing case summarising
// the hits, and a failing case per miss (with its closest recording and differences), per unused recording
// and per out-of-order request. Deterministic; tolerates missing or mistyped fields; text that XML cannot
// carry (control characters, invalid UTF-8) is replaced.
//   {"hits": N,
//    "misses": [{"request": "GET /x", "closest": {"id": 3, "request": "GET /y",
//                "differences": [{"field": .., "recorded": .., "live": ..}]} or null}],
//    "unused": [{"id": 4, "request": "POST /z"}],
//    "out_of_order": [{"id": 2, "request": "GET /a", "note": "..."}]}
std::string junit_xml(const nlohmann::json& verdict);

}  // namespace rproxy::stages
