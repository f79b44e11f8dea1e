#include "stages/replay.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "stages/params.hpp"

namespace rproxy::stages {

using nlohmann::json;

store::Cassette load_recording(const std::string& path, store::CassettePath& resolved) {
  if (path.size() > 4 && path.substr(path.size() - 4) == ".har") {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("no recording at " + path);
    std::stringstream ss;
    ss << in.rdbuf();
    auto doc = json::parse(ss.str(), nullptr, false);
    if (doc.is_discarded()) throw std::runtime_error(path + ": not valid JSON");
    resolved = store::CassettePath{path, path + ".bodies", false};
    return store::cassette_from_har(doc, resolved.bodies_dir);
  }
  resolved = store::resolve_cassette_path(path);
  return store::load_cassette(resolved);
}

ReplayStage::ReplayStage(std::unique_ptr<Replayer> replayer, std::string cassette, bool strict,
                         bool passthrough, std::string junit)
    : replayer_(std::move(replayer)),
      cassette_(std::move(cassette)),
      strict_(strict),
      passthrough_(passthrough),
      junit_(std::move(junit)) {}

std::unique_ptr<Stage> ReplayStage::create(const json& params, const std::string& path, const StageContext&,
                                           std::vector<std::string>& problems) {
  const auto before = problems.size();
  ParamReader r{problems};
  if (!params.is_object()) {
    r.fail(path, "expected an object, got " + json_describe(params));
    return nullptr;
  }
  r.known_keys(params, path,
               {"cassette", "strict", "junit", "passthrough", "match", "redact", "miss_status", "after_last",
                "session_header", "pace", "pace_scale"});
  std::string cassette;
  auto it = params.find("cassette");
  if (it == params.end())
    r.fail(json_path_key(path, "cassette"), "required: the recording to replay (file, directory or .har)");
  else if (auto c = r.string(*it, json_path_key(path, "cassette")))
    cassette = *c;
  bool strict = false;
  bool passthrough = false;
  std::string junit;
  if (auto s = params.find("strict"); s != params.end())
    if (auto b = r.boolean(*s, json_path_key(path, "strict"))) strict = *b;
  if (auto p = params.find("passthrough"); p != params.end())
    if (auto b = r.boolean(*p, json_path_key(path, "passthrough"))) passthrough = *b;
  if (auto j = params.find("junit"); j != params.end())
    if (auto v = r.string(*j, json_path_key(path, "junit"))) junit = *v;
  auto settings = parse_replay_settings(params, path, problems);
  if (problems.size() != before) return nullptr;
  store::CassettePath resolved;
  store::Cassette loaded;
  try {
    loaded = load_recording(cassette, resolved);
  } catch (const std::exception& e) {
    r.fail(json_path_key(path, "cassette"), e.what());
    return nullptr;
  }
  auto replayer = std::make_unique<Replayer>(std::move(loaded), resolved, settings);
  return std::make_unique<ReplayStage>(std::move(replayer), cassette, strict, passthrough, junit);
}

Decision ReplayStage::on_request(Exchange& ex) {
  auto answer = replayer_->answer(ex);
  if (answer.hit) {
    ex.tags["replay"] = "hit";
    auto d = Decision::respond(std::move(*answer.hit));
    d.delay = answer.delay;
    return d;
  }
  ex.tags["replay"] = "miss";
  if (passthrough_) return Decision::proceed();
  return Decision::respond(std::move(answer.miss));
}

json ReplayStage::report() const {
  auto v = replayer_->verdict();
  v["type"] = "replay";
  v["cassette"] = cassette_;
  v["strict"] = strict_;
  return v;
}

std::string ReplayStage::summary() const {
  auto v = replayer_->verdict();
  std::string out = "replay " + cassette_ + ": " + std::to_string(v["hits"].get<std::uint64_t>()) +
                    " hits, " + std::to_string(v["miss_count"].get<std::uint64_t>()) + " misses, " +
                    std::to_string(v["unused"].size()) + " of " +
                    std::to_string(v["recordings"].get<std::uint64_t>()) + " recordings unused\n";
  std::size_t shown = 0;
  for (const auto& m : v["misses"]) {
    if (shown++ == 5) break;
    out += "  miss: " + m["request"].get<std::string>();
    if (m.contains("reason")) out += " (" + m["reason"].get<std::string>() + ")";
    if (!m["closest"].is_null()) {
      out += "; closest " + m["closest"]["request"].get<std::string>() + " differs in";
      for (const auto& d : m["closest"]["differences"]) out += " " + d["field"].get<std::string>();
    }
    out += "\n";
  }
  shown = 0;
  for (const auto& u : v["unused"]) {
    if (shown++ == 5) break;
    out += "  unused: #" + std::to_string(u["id"].get<std::uint64_t>()) + " " +
           u["request"].get<std::string>() + "\n";
  }
  return out;
}

int ReplayStage::exit_code() const {
  return strict_ && !replayer_->clean() ? kStrictReplayExit : 0;
}

void ReplayStage::on_stop() {
  if (junit_.empty()) return;
  auto tmp = junit_ + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write " + tmp);
    out << junit_xml(replayer_->verdict());
  }
  std::filesystem::rename(tmp, junit_);
}

}  // namespace rproxy::stages
