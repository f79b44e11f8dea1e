// Shadow mode compares the response the client got from the primary upstream with the one a shadow
// upstream gave to a copy of the request. This module decides what "the same" means: status, chosen
// headers, and the body, structurally for JSON (key order, number spelling and ignored fields don't
// count) and byte by byte otherwise, within the bounded capture the engine keeps.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/hash.hpp"
#include "rproxy/http.hpp"
#include "rproxy/stage.hpp"  // CapturedResponse

namespace rproxy::stages {

using rproxy::Fnv1a64;  // core/hash.hpp; CapturedResponse::body_hash is filled with it

struct DiffOptions {
  // Header fields compared (case-insensitive names; all values of a field joined with ", ").
  std::vector<std::string> headers{"Content-Type"};
  // JSON fields to ignore: a bare name ("updated_at") ignores that object key at any depth; a path
  // starting with "$" ignores exactly that location and what is under it. Path segments: .name, .*
  // (any key), ["name"] (any key text without '"'), [N] and [*] (any index). Check with check_ignore_entry.
  std::vector<std::string> ignore;
  // At most this many differences are returned (0 behaves as 1, so an empty result always means equal).
  std::size_t max_differences = 10;
};

struct Difference {
  std::string where;    // "status", "error", "header Content-Type", "body", "body $.items[2].price",
                        // "body $.items length", "body size"
  std::string primary;  // short rendering (cut to ~80 bytes with "…"), "(absent)" when missing
  std::string shadow;
  bool operator==(const Difference&) const = default;
};

// compare_responses lists how shadow differs from primary, in a fixed order (error, status, headers in
// option order, body; JSON paths with object keys sorted). Never throws.
//
// Rules: if either side failed (error non-empty), only the errors are compared. When both bodies are
// complete, JSON (Content-Type application/json or */*+json on both sides) and both parse, they compare
// structurally; otherwise complete bodies compare byte by byte as one "body" difference showing the first
// differing offset. When a body is incomplete (over the capture cap), only body_size ("body size") and
// body_hash ("body") are compared.
std::vector<Difference> compare_responses(const CapturedResponse& primary, const CapturedResponse& shadow,
                                          const DiffOptions& opts);

// check_ignore_entry validates an ignore entry for config parsing: an error message, or nullopt when valid.
std::optional<std::string> check_ignore_entry(std::string_view entry);

// ---- Shared with replay matching (stages/replay_match), which holds request bodies to the same rules ----

// is_json_content_type is the test compare_responses applies to each side before comparing structurally:
// Content-Type application/json or */*+json, parameters and case aside.
bool is_json_content_type(const Headers& headers);
// parse_json_body parses a body as compare_responses does: nullopt when it is not JSON or nests deeper than
// the recursive walks allow, so whatever it returns is safe to recurse over.
std::optional<nlohmann::json> parse_json_body(std::string_view body);
// remove_ignored_json deletes what ignore entries (DiffOptions::ignore syntax) cover: object members are
// erased, an ignored array element or root becomes null (indexes and lengths still count). Two documents
// compare_responses finds equal under the same entries are == afterwards. doc must come from parse_json_body.
void remove_ignored_json(nlohmann::json& doc, const std::vector<std::string>& ignore);

}  // namespace rproxy::stages
