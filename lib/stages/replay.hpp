// ReplayStage answers every request from a recording (a cassette or a HAR file) and never contacts an
// upstream, unless "passthrough" is set, in which case misses go to the route's upstreams.
//
//   {"type": "replay", "params": {
//      "cassette": "recording.json",          // file, directory or .har
//      "strict": true,                        // exit 3 after a stop when anything missed or went unused
//      "junit": "replay.xml",                 // JUnit XML verdict written on stop
//      "passthrough": false,
//      "match": {"ignore_query": ["_"], "ignore_json": ["$.nonce"], "headers": ["Accept"]},
//      "redact": {"headers": [...], "query": [...], "json_fields": [...]},   // as when recording
//      "miss_status": 502, "after_last": "error", "session_header": "X-Test-Worker"}}
//
// A hit carries X-Rproxy-Replay: hit; a miss answers miss_status with X-Rproxy-Replay: miss and a JSON body
// naming the nearest recording and every field that differs. Hooks: on_request (needs the request body),
// on_stop (JUnit), report/summary/exit_code (the verdict).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "rproxy/stage.hpp"
#include "stages/replayer.hpp"

namespace rproxy::stages {

// load_recording reads a cassette, or a HAR file when the path ends in ".har" (its large bodies go to a
// bodies directory next to it: FILE.bodies/). Throws std::runtime_error naming the file and the problem.
store::Cassette load_recording(const std::string& path, store::CassettePath& resolved);

class ReplayStage : public Stage {
 public:
  ReplayStage(std::unique_ptr<Replayer> replayer, std::string cassette, bool strict, bool passthrough,
              std::string junit);
  static std::unique_ptr<Stage> create(const nlohmann::json& params, const std::string& path,
                                       const StageContext& context, std::vector<std::string>& problems);

  Decision on_request(Exchange& exchange) override;
  bool needs_request_body() const override { return true; }
  nlohmann::json report() const override;
  std::string summary() const override;
  int exit_code() const override;
  void on_stop() override;

 private:
  std::unique_ptr<Replayer> replayer_;
  std::string cassette_;
  bool strict_;
  bool passthrough_;
  std::string junit_;
};

// kStrictReplayExit is the exit status of a strict replay that missed or left recordings unused.
inline constexpr int kStrictReplayExit = 3;

}  // namespace rproxy::stages
