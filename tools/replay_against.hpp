// replay_against sends a recording's requests, in order, to a live backend and reports where its responses
// differ from the recorded ones (status, chosen headers, bodies; JSON structurally with ignore rules): a
// regression check of a new backend build against known-good traffic.
#pragma once

#include <string>
#include <vector>

namespace rproxy::cli {

struct AgainstOptions {
  std::string recording;
  std::string url;                           // http(s)://host:port of the backend
  std::string upstream_ca;                   // extra CA for an https:// backend (--upstream-ca)
  bool insecure = false;                     // --insecure
  std::vector<std::string> ignore_json;      // as --ignore-json
  std::vector<std::string> compare_headers;  // default Content-Type
  std::string report;                        // JSON report file, "" = none
};

// Returns the exit code: 0 when every response matched, 3 when any differed, 2 for bad input.
int replay_against(const AgainstOptions& options);

}  // namespace rproxy::cli
