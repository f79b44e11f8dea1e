// Replayer answers live requests from a cassette: it matches each request (after redaction, so another
// token still matches) against the recorded interactions, answers repeated identical requests in recorded
// order, scoped per client session when asked, and keeps the verdict (hits, misses with their nearest
// recording, unused recordings, out-of-order answers). Shared by the replay stage and the record stage's
// once/new modes. Thread-safe: one mutex around the consumption state.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "rproxy/stage.hpp"
#include "stages/replay_match.hpp"
#include "store/cassette.hpp"
#include "store/redact.hpp"

namespace rproxy::stages {

struct ReplaySettings {
  MatchRules match;
  store::RedactionRules redact;
  int miss_status = 502;
  bool repeat_last = false;    // after the last recorded answer: repeat it (true) or miss (false)
  std::string session_header;  // "" = one sequence for everyone; else sequences per value of this header
  bool recorded_pace = false;  // answer with the recorded duration and chunk timing ("pace": "recorded")
  double pace_scale = 1.0;     // multiplies recorded times (0.5 = twice as fast)
};

inline constexpr const char* kReplayHeader = "X-Rproxy-Replay";

class Replayer {
 public:
  Replayer(store::Cassette cassette, store::CassettePath path, ReplaySettings settings);

  struct Answer {
    std::optional<LocalResponse> hit;    // set on a hit
    std::chrono::milliseconds delay{0};  // recorded pace: wait this long before the head
    LocalResponse miss;                  // the error answer otherwise (status, JSON body naming the nearest)
  };
  // answer redacts a copy of the live request with the recorded rules, matches it and consumes the
  // answer. The exchange's request body must have been buffered (Stage::needs_request_body).
  Answer answer(const Exchange& exchange);
  // verdict: {"hits", "misses": [...], "unused": [...], "out_of_order": [...], "recordings"}.
  nlohmann::json verdict() const;
  bool clean() const;  // no miss and no unused recording
  std::size_t size() const { return cassette_.interactions.size(); }

 private:
  LocalResponse response_for(const store::Interaction& it) const;
  LiveRequest live_request(const Exchange& ex) const;

  store::Cassette cassette_;
  store::CassettePath path_;
  ReplaySettings settings_;
  // The index: request key -> interaction indexes in recorded order (one hash lookup per request).
  std::unordered_map<std::string, std::vector<std::size_t>> by_key_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::unordered_map<std::string, std::size_t>> next_;  // session -> key -> used
  std::vector<bool> used_;
  std::uint64_t hits_ = 0;
  std::uint64_t highest_used_ = 0;  // for out-of-order detection: recording ids should be answered ascending
  nlohmann::json misses_ = nlohmann::json::array();
  nlohmann::json out_of_order_ = nlohmann::json::array();  // the first ones listed, the rest counted
};

// parse_replay_settings reads the shared params ("match", "redact", "miss_status", "after_last",
// "session_header") with JSON paths in problems.
ReplaySettings parse_replay_settings(const nlohmann::json& params, const std::string& path,
                                     std::vector<std::string>& problems);
store::RedactionRules parse_redaction(const nlohmann::json& params, const std::string& path,
                                      std::vector<std::string>& problems);

}  // namespace rproxy::stages
