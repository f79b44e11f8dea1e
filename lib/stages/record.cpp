#include "stages/record.hpp"

#include <chrono>
#include <filesystem>

#include "core/access_log.hpp"
#include "stages/params.hpp"
#include "stages/replay.hpp"

namespace rproxy::stages {
namespace {

using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

bool is_json_type(std::string_view content_type) {
  auto base = content_type.substr(0, content_type.find(';'));
  while (!base.empty() && base.back() == ' ') base.remove_suffix(1);
  return iequals(base, "application/json") ||
         (base.size() > 5 && iequals(base.substr(base.size() - 5), "+json"));
}

// RecordTee collects one exchange's bodies while they stream, in bounded memory (BodyWriter spills).
class RecordTee : public ExchangeTee {
 public:
  RecordTee(const std::string& bodies_dir, bool timing)
      : request(bodies_dir), response(bodies_dir), timing_(timing) {}

  void request_body(std::string_view piece) override { write(request, piece); }
  void response_head(const ResponseHead& h) override {
    head = h;
    head_at = SteadyClock::now();
    auto ct = h.headers.get("Content-Type");
    streaming = h.headers.has_token("Transfer-Encoding", "chunked") ||
                (ct && ct->substr(0, 17) == "text/event-stream");
  }
  void response_body(std::string_view piece) override {
    write(response, piece);
    if (timing_ && streaming) {
      auto at = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - head_at).count();
      chunks.push_back({static_cast<std::uint64_t>(at), piece.size()});
    }
  }

  std::optional<ResponseHead> head;
  store::BodyWriter request;
  store::BodyWriter response;
  std::vector<store::Chunk> chunks;
  std::string error;  // a body could not be written (disk full, ...)
  bool streaming = false;

 private:
  void write(store::BodyWriter& w, std::string_view piece) {
    if (!error.empty()) return;
    try {
      w.write(piece);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  bool timing_;
  SteadyClock::time_point head_at;
};

// Replaces the values of configured JSON fields in an inline, unencoded JSON body, and keeps the recorded
// Content-Length equal to the stored body.
void redact_body(store::Body& body, Headers& headers, const store::RedactionRules& rules,
                 const std::string& bodies_dir) {
  if (rules.json_fields.empty() || !body.file.empty() || headers.has("Content-Encoding")) return;
  auto ct = headers.get("Content-Type");
  if (!ct || !is_json_type(*ct)) return;
  std::string data = body.data;
  if (!store::redact_json_body(data, rules) || data == body.data) return;
  body = store::make_body(std::move(data), bodies_dir);
  if (headers.has("Content-Length")) headers.set("Content-Length", std::to_string(body.size));
}

std::string encoding_of(const Headers& h) {
  auto v = h.get("Content-Encoding");
  return v ? std::string(*v) : std::string();
}

}  // namespace

RecordStage::RecordStage(store::CassettePath path, RecordMode mode, bool timing, store::RedactionRules redact,
                         std::unique_ptr<Replayer> replayer, store::Cassette existing)
    : path_(std::move(path)),
      mode_(mode),
      timing_(timing),
      redact_(std::move(redact)),
      replayer_(std::move(replayer)),
      cassette_(std::move(existing)) {
  for (const auto& it : cassette_.interactions) next_id_ = std::max(next_id_, it.id + 1);
}

RecordStage::~RecordStage() {
  on_stop();
}

std::unique_ptr<Stage> RecordStage::create(const json& params, const std::string& path, const StageContext&,
                                           std::vector<std::string>& problems) {
  const auto before = problems.size();
  ParamReader r{problems};
  if (!params.is_object()) {
    r.fail(path, "expected an object, got " + json_describe(params));
    return nullptr;
  }
  r.known_keys(params, path,
               {"out", "mode", "timing", "redact", "match", "miss_status", "after_last", "session_header",
                "pace", "pace_scale"});
  std::string out;
  if (auto it = params.find("out"); it == params.end())
    r.fail(json_path_key(path, "out"), "required: where the recording goes (a .json file or a directory)");
  else if (auto v = r.string(*it, json_path_key(path, "out")))
    out = *v;
  RecordMode mode = RecordMode::Once;
  if (auto it = params.find("mode"); it != params.end()) {
    if (auto v = r.string(*it, json_path_key(path, "mode"))) {
      if (*v == "once")
        mode = RecordMode::Once;
      else if (*v == "new")
        mode = RecordMode::New;
      else if (*v == "all")
        mode = RecordMode::All;
      else
        r.fail(json_path_key(path, "mode"), "must be once, new or all, got " + json(*v).dump());
    }
  }
  bool timing = false;
  if (auto it = params.find("timing"); it != params.end())
    if (auto b = r.boolean(*it, json_path_key(path, "timing"))) timing = *b;
  auto settings = parse_replay_settings(params, path, problems);
  if (problems.size() != before) return nullptr;

  auto resolved = store::resolve_cassette_path(out);
  store::Cassette existing;
  std::unique_ptr<Replayer> replayer;
  if (mode != RecordMode::All && std::filesystem::exists(resolved.json_file)) {
    try {
      existing = store::load_cassette(resolved);
    } catch (const std::exception& e) {
      r.fail(json_path_key(path, "out"), std::string(e.what()) + " (use mode \"all\" to record afresh)");
      return nullptr;
    }
    replayer = std::make_unique<Replayer>(existing, resolved, settings);
  }
  return std::make_unique<RecordStage>(resolved, mode, timing, settings.redact, std::move(replayer),
                                       std::move(existing));
}

Decision RecordStage::on_request(Exchange& ex) {
  if (replayer_) {
    auto answer = replayer_->answer(ex);
    if (answer.hit) {
      ex.tags["replay"] = "hit";
      auto d = Decision::respond(std::move(*answer.hit));
      d.delay = answer.delay;
      return d;
    }
    ex.tags["replay"] = "miss";
    if (mode_ == RecordMode::Once) {
      // A recording exists and "once" never extends it: say so in the miss itself.
      auto body = json::parse(answer.miss.body, nullptr, false);
      if (body.is_object()) {
        body["hint"] =
            "mode once: " + path_.json_file + " exists and is not extended; use --mode new or --mode all";
        answer.miss.body = body.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
      }
      return Decision::respond(std::move(answer.miss));
    }
  }
  auto tee = std::make_shared<RecordTee>(path_.bodies_dir, timing_);
  ex.tees.push_back(tee);
  ex.stage_state[this] = std::move(tee);
  return Decision::proceed();
}

void RecordStage::not_recorded(const std::string& why) {
  std::lock_guard lock(mutex_);
  ++not_recorded_[why];
}

void RecordStage::on_complete(const Exchange& ex) {
  auto state = ex.stage_state.find(this);
  if (state == ex.stage_state.end()) return;
  auto* tee = static_cast<RecordTee*>(state->second.get());
  if (!tee->head) return not_recorded("no upstream response");
  if (ex.outcome.status == 0) return not_recorded("the client went away");
  if (!ex.outcome.error.empty()) return not_recorded("failed: " + ex.outcome.error);
  if (!tee->error.empty()) return not_recorded("body not written: " + tee->error);
  store::Interaction it;
  try {
    it.method = ex.request.method;
    it.target = store::redact_target(ex.request.target, redact_);
    it.request_headers = ex.request.headers;
    store::redact_headers(it.request_headers, redact_);
    it.request_body = tee->request.finish(encoding_of(ex.request.headers));
    redact_body(it.request_body, it.request_headers, redact_, path_.bodies_dir);
    it.status = tee->head->status;
    it.reason = tee->head->reason;
    it.response_headers = tee->head->headers;
    store::redact_headers(it.response_headers, redact_);
    it.response_body = tee->response.finish(encoding_of(tee->head->headers));
    redact_body(it.response_body, it.response_headers, redact_, path_.bodies_dir);
    if (timing_) {
      it.chunks = tee->chunks;
      it.duration_ms = ex.outcome.duration_ms;
    }
  } catch (const std::exception& e) {
    return not_recorded(std::string("body not written: ") + e.what());
  }
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(it));
  }
  cv_.notify_one();
}

void RecordStage::on_start() {
  std::error_code ec;
  std::filesystem::create_directories(path_.bodies_dir, ec);
  if (ec) throw std::runtime_error("cannot create " + path_.bodies_dir + ": " + ec.message());
  if (mode_ == RecordMode::All || !std::filesystem::exists(path_.json_file)) {
    // The recording exists (empty) from the start, so even a run killed at once leaves a readable file.
    store::save_cassette(path_, cassette_);
  }
  std::lock_guard lock(mutex_);
  started_ = true;
  writer_ = std::thread([this] { writer_loop(); });
}

void RecordStage::writer_loop() {
  // The recording on disk is rewritten whole (temp file + rename) so it is always a complete document.
  // The interactions are kept rendered, so a save costs the write; while exchanges complete back to back,
  // saves are spaced to at least twice the last save's time, so the writer takes at most a third of a core
  // and the file lags by at most about that long. After a quiet moment a completed exchange is saved at once.
  using Clock = std::chrono::steady_clock;
  std::unique_lock lock(mutex_);
  store::RenderedCassette rendered;
  for (const auto& it : cassette_.interactions) rendered.append(it);
  cassette_.interactions.clear();  // from here on only the rendered text is kept
  Clock::time_point next_save{};
  std::vector<store::Interaction> batch;
  while (true) {
    cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty() && stopping_) return;
    if (!stopping_ && Clock::now() < next_save) {
      cv_.wait_until(lock, next_save, [this] { return stopping_; });
    }
    batch.clear();
    while (!queue_.empty()) {
      batch.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    saving_ = batch.size();
    lock.unlock();
    std::string error;
    std::size_t appended = 0;
    for (auto& it : batch) {
      try {
        store::check_body_files(path_, it, "interaction " + std::to_string(next_id_));
        it.id = next_id_;
        rendered.append(it);
        ++next_id_;
        ++appended;
      } catch (const std::exception& e) {
        error = e.what();
        log_line(std::string("rproxy: exchange not recorded: ") + e.what());
      }
    }
    try {
      auto t0 = Clock::now();
      store::save_cassette_text(path_, rendered.text());
      auto t1 = Clock::now();
      next_save = t1 + 2 * (t1 - t0);
    } catch (const std::exception& e) {
      error = e.what();
      log_line(std::string("rproxy: recording not saved: ") + e.what());
    }
    lock.lock();
    saving_ = 0;
    recorded_ += appended;
    if (!error.empty()) write_error_ = error;
  }
}

void RecordStage::on_stop() {
  {
    std::lock_guard lock(mutex_);
    if (!started_) return;
    stopping_ = true;
  }
  cv_.notify_one();
  if (writer_.joinable()) writer_.join();
}

json RecordStage::report() const {
  std::lock_guard lock(mutex_);
  static const char* kModes[] = {"once", "new", "all"};
  json out = {{"type", "record"},      {"out", path_.json_file},   {"mode", kModes[static_cast<int>(mode_)]},
              {"recorded", recorded_}, {"pending", queue_.size() + saving_}, {"not_recorded", not_recorded_}};
  if (!write_error_.empty()) out["write_error"] = write_error_;
  if (replayer_) out["replay"] = replayer_->verdict();
  return out;
}

std::string RecordStage::summary() const {
  auto rep = report();
  std::string out = "record " + rep["out"].get<std::string>() + " (mode " + rep["mode"].get<std::string>() +
                    "): " + std::to_string(rep["recorded"].get<std::uint64_t>()) + " recorded";
  if (rep.contains("replay"))
    out += ", " + std::to_string(rep["replay"]["hits"].get<std::uint64_t>()) + " replayed, " +
           std::to_string(rep["replay"]["miss_count"].get<std::uint64_t>()) + " not in the recording";
  for (const auto& [why, n] : rep["not_recorded"].items())
    out += "; not recorded (" + why + "): " + std::to_string(n.get<std::uint64_t>());
  return out + "\n";
}

}  // namespace rproxy::stages
