// RecordStage writes every completed exchange to a cassette as soon as it completes (a writer thread saves
// the file atomically after each one, so a killed rproxy leaves a readable recording of everything done).
//
//   {"type": "record", "params": {
//      "out": "recording.json",        // file, or directory (ends in "/" or exists)
//      "mode": "once",                 // once | new | all
//      "timing": false,                // keep durations and chunk timing (wall-clock noise, off by default)
//      "redact": {"headers": ["X-Session"], "query": ["token"], "json_fields": ["password"]},
//      ...replay params for the once/new modes: "match", "miss_status", "after_last", "session_header"}}
//
// Modes: once — record when there is no recording yet; when there is one, replay it and answer new requests
// with a miss (nothing reaches the upstream, nothing is appended). new — replay what is recorded and
// record what is not. all — record everything afresh, replacing the recording.
// Bodies are recorded exactly as the upstream sent them (compressed stays compressed; a decoded view is
// added); redaction (Authorization, Proxy-Authorization, Cookie, Set-Cookie, X-Api-Key and the configured
// headers, query parameters and JSON fields) runs before anything is written, and Content-Length is fixed
// when a redacted JSON body changed length. Responses cut short or failed are not recorded.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "rproxy/stage.hpp"
#include "stages/replayer.hpp"
#include "store/cassette.hpp"
#include "store/redact.hpp"

namespace rproxy::stages {

enum class RecordMode { Once, New, All };

class RecordStage : public Stage {
 public:
  RecordStage(store::CassettePath path, RecordMode mode, bool timing, store::RedactionRules redact,
              std::unique_ptr<Replayer> replayer, store::Cassette existing);
  ~RecordStage() override;
  static std::unique_ptr<Stage> create(const nlohmann::json& params, const std::string& path,
                                       const StageContext& context, std::vector<std::string>& problems);

  Decision on_request(Exchange& exchange) override;
  void on_complete(const Exchange& exchange) override;
  bool needs_request_body() const override { return replayer_ != nullptr; }
  void on_start() override;
  void on_stop() override;
  nlohmann::json report() const override;
  std::string summary() const override;

 private:
  void writer_loop();
  void not_recorded(const std::string& why);

  store::CassettePath path_;
  RecordMode mode_;
  bool timing_;
  store::RedactionRules redact_;
  std::unique_ptr<Replayer> replayer_;  // once/new with an existing recording
  store::Cassette cassette_;            // what is on disk (writer thread only after start)

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<store::Interaction> queue_;
  bool stopping_ = false;
  bool started_ = false;
  std::thread writer_;
  std::uint64_t recorded_ = 0;
  std::size_t saving_ = 0;  // taken from queue_, being written
  std::uint64_t next_id_ = 1;
  std::map<std::string, std::uint64_t> not_recorded_;
  std::string write_error_;
};

}  // namespace rproxy::stages
