#include "stages/replayer.hpp"

#include "core/proxy_headers.hpp"
#include "rproxy/http_parser.hpp"
#include "stages/params.hpp"
#include "stages/shadow_diff.hpp"

namespace rproxy::stages {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxListedMisses = 100;

std::string request_line(const std::string& method, const std::string& target) {
  return method + " " + target;
}

json mismatches_json(const std::vector<Mismatch>& list) {
  json out = json::array();
  for (const auto& m : list) out.push_back({{"field", m.field}, {"recorded", m.recorded}, {"live", m.live}});
  return out;
}

bool is_json_type(std::string_view content_type) {
  auto semi = content_type.find(';');
  auto base = content_type.substr(0, semi);
  while (!base.empty() && base.back() == ' ') base.remove_suffix(1);
  return iequals(base, "application/json") ||
         (base.size() > 5 && iequals(base.substr(base.size() - 5), "+json"));
}

}  // namespace

Replayer::Replayer(store::Cassette cassette, store::CassettePath path, ReplaySettings settings)
    : cassette_(std::move(cassette)),
      path_(std::move(path)),
      settings_(std::move(settings)),
      used_(cassette_.interactions.size(), false) {
  for (std::size_t i = 0; i < cassette_.interactions.size(); ++i)
    by_key_[request_key(cassette_.interactions[i], settings_.match)].push_back(i);
}

LiveRequest Replayer::live_request(const Exchange& ex) const {
  LiveRequest live;
  live.method = ex.request.method;
  live.target = store::redact_target(ex.request.target, settings_.redact);
  live.headers = ex.request.headers;
  store::redact_headers(live.headers, settings_.redact);
  if (ex.request_body_complete) {
    live.body = ex.request_body;
    auto ct = ex.request.headers.get("Content-Type");
    bool changed = ct && is_json_type(*ct) && !settings_.redact.json_fields.empty() &&
                   store::redact_json_body(live.body, settings_.redact);
    live.body_size = live.body.size();
    live.body_sha256 =
        changed || !ex.request_body_buffered ? store::sha256_hex(live.body) : ex.request_body_sha256;
  } else {
    live.body_size = ex.request_body_size;
    live.body_sha256 = ex.request_body_sha256;
  }
  return live;
}

LocalResponse Replayer::response_for(const store::Interaction& it) const {
  LocalResponse r;
  r.status = it.status;
  r.headers = it.response_headers;
  r.chunked = r.headers.has_token("Transfer-Encoding", "chunked") || !it.chunks.empty();
  // The same edits a live response gets on its way through rproxy, so a replay looks like the recording.
  remove_hop_by_hop(r.headers);
  if (auto via = r.headers.get("Via"))
    r.headers.set("Via", std::string(*via) + ", 1.1 " + kViaPseudonym);
  else
    r.headers.add("Via", std::string("1.1 ") + kViaPseudonym);
  for (const auto& c : it.chunks) {
    r.chunk_sizes.push_back(c.size);
    if (settings_.recorded_pace)
      r.chunk_at_ms.push_back(
          static_cast<std::uint64_t>(static_cast<double>(c.at_ms) * settings_.pace_scale));
  }
  if (it.response_body.file.empty()) {
    r.body = it.response_body.data;
  } else {
    r.body_file = store::body_file_path(it.response_body, path_.bodies_dir);
    r.body_file_size = it.response_body.size;
  }
  r.headers.add(kReplayHeader, "hit");
  return r;
}

Replayer::Answer Replayer::answer(const Exchange& ex) {
  auto live = live_request(ex);
  auto key = request_key(live, settings_.match);
  std::string session;
  if (!settings_.session_header.empty())
    if (auto v = ex.request.headers.get(settings_.session_header)) session = std::string(*v);

  Answer out;
  std::optional<std::size_t> chosen;
  std::string exhausted;
  {
    std::lock_guard lock(mutex_);
    auto it = by_key_.find(key);
    if (it != by_key_.end()) {
      auto& n = next_[session][key];
      if (n < it->second.size()) {
        chosen = it->second[n++];
      } else if (settings_.repeat_last) {
        chosen = it->second.back();
      } else {
        exhausted =
            "all " + std::to_string(it->second.size()) + " recorded answers to this request were used";
      }
    }
    if (chosen) {
      const auto& rec = cassette_.interactions[*chosen];
      used_[*chosen] = true;
      ++hits_;
      if (rec.id < highest_used_ && settings_.session_header.empty()) {
        // Listed up to a bound, then counted: a client taking answers in another order (a load test, a
        // parallel suite) must not grow the verdict, and the memory, with every request.
        if (out_of_order_.size() < kMaxListedMisses)
          out_of_order_.push_back({{"id", rec.id},
                                   {"request", request_line(rec.method, rec.target)},
                                   {"note", "answered after recording " + std::to_string(highest_used_)}});
        else
          out_of_order_.back()["more"] = out_of_order_.back().value("more", 0) + 1;
      }
      highest_used_ = std::max(highest_used_, rec.id);
    }
  }
  if (chosen) {
    const auto& rec = cassette_.interactions[*chosen];
    out.hit = response_for(rec);
    // A streamed response's time is in its chunks; a plain one waits its whole recorded duration.
    if (settings_.recorded_pace && rec.duration_ms && rec.chunks.empty())
      out.delay =
          std::chrono::milliseconds(static_cast<std::int64_t>(*rec.duration_ms * settings_.pace_scale));
    return out;
  }

  // A miss: name the nearest recording and what differs, so the cause is visible without a debugger.
  std::vector<const store::Interaction*> all;
  for (const auto& i : cassette_.interactions) all.push_back(&i);
  json closest = nullptr;
  if (auto n = nearest(live, all, settings_.match)) {
    const auto& rec = cassette_.interactions[*n];
    closest = {{"id", rec.id},
               {"request", request_line(rec.method, rec.target)},
               {"differences", mismatches_json(compare_request(live, rec, settings_.match))}};
  }
  json body = {{"error", "no recorded response matches this request"},
               {"request", request_line(live.method, live.target)},
               {"closest", closest}};
  if (!exhausted.empty()) body["reason"] = exhausted;
  out.miss.status = settings_.miss_status;
  out.miss.headers.add("Content-Type", "application/json");
  out.miss.headers.add(kReplayHeader, "miss");
  out.miss.headers.add("X-Rproxy-Error", "replay_miss");
  out.miss.body = body.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
  std::lock_guard lock(mutex_);
  if (misses_.size() < kMaxListedMisses) {
    json entry = {{"request", body["request"]}, {"closest", closest}};
    if (!exhausted.empty()) entry["reason"] = exhausted;
    misses_.push_back(std::move(entry));
  } else {
    // Counted, not listed: a runaway client must not grow the verdict without bound.
    misses_.back()["more"] = misses_.back().value("more", 0) + 1;
  }
  return out;
}

nlohmann::json Replayer::verdict() const {
  std::lock_guard lock(mutex_);
  json unused = json::array();
  for (std::size_t i = 0; i < used_.size(); ++i)
    if (!used_[i]) {
      const auto& rec = cassette_.interactions[i];
      unused.push_back({{"id", rec.id}, {"request", request_line(rec.method, rec.target)}});
    }
  std::uint64_t miss_count = 0;
  for (const auto& m : misses_) miss_count += 1 + m.value("more", 0);
  return {{"recordings", cassette_.interactions.size()},
          {"hits", hits_},
          {"miss_count", miss_count},
          {"misses", misses_},
          {"unused", unused},
          {"out_of_order", out_of_order_}};
}

bool Replayer::clean() const {
  auto v = verdict();
  return v["miss_count"] == 0 && v["unused"].empty();
}

store::RedactionRules parse_redaction(const json& params, const std::string& path,
                                      std::vector<std::string>& problems) {
  ParamReader r{problems};
  store::RedactionRules rules;
  auto it = params.find("redact");
  if (it == params.end()) return rules;
  auto rpath = json_path_key(path, "redact");
  if (!it->is_object()) {
    r.fail(rpath, "expected {\"headers\": [...], \"query\": [...], \"json_fields\": [...]}, got " +
                      json_describe(*it));
    return rules;
  }
  r.known_keys(*it, rpath, {"headers", "query", "json_fields"});
  if (auto h = it->find("headers"); h != it->end())
    if (auto list = r.strings(*h, json_path_key(rpath, "headers")))
      for (std::size_t i = 0; i < list->size(); ++i) {
        if (!is_token((*list)[i]))
          r.fail(json_path_index(json_path_key(rpath, "headers"), i), "not a valid header name");
        else
          rules.headers.push_back((*list)[i]);
      }
  if (auto q = it->find("query"); q != it->end())
    if (auto list = r.strings(*q, json_path_key(rpath, "query"))) rules.query = *list;
  if (auto j = it->find("json_fields"); j != it->end())
    if (auto list = r.strings(*j, json_path_key(rpath, "json_fields"))) rules.json_fields = *list;
  return rules;
}

ReplaySettings parse_replay_settings(const json& params, const std::string& path,
                                     std::vector<std::string>& problems) {
  ParamReader r{problems};
  ReplaySettings s;
  s.redact = parse_redaction(params, path, problems);
  if (auto it = params.find("match"); it != params.end()) {
    auto mpath = json_path_key(path, "match");
    if (!it->is_object()) {
      r.fail(mpath, "expected an object, got " + json_describe(*it));
    } else {
      r.known_keys(*it, mpath, {"ignore_query", "ignore_json", "headers"});
      if (auto q = it->find("ignore_query"); q != it->end())
        if (auto list = r.strings(*q, json_path_key(mpath, "ignore_query"))) s.match.ignore_query = *list;
      if (auto j = it->find("ignore_json"); j != it->end())
        if (auto list = r.strings(*j, json_path_key(mpath, "ignore_json"))) {
          for (std::size_t i = 0; i < list->size(); ++i)
            if (auto err = check_ignore_entry((*list)[i]))
              r.fail(json_path_index(json_path_key(mpath, "ignore_json"), i), *err);
          s.match.ignore_json = *list;
        }
      if (auto h = it->find("headers"); h != it->end())
        if (auto list = r.strings(*h, json_path_key(mpath, "headers"))) s.match.match_headers = *list;
    }
  }
  if (auto it = params.find("miss_status"); it != params.end())
    if (auto n = r.integer(*it, json_path_key(path, "miss_status"), 400, 599))
      s.miss_status = static_cast<int>(*n);
  if (auto it = params.find("after_last"); it != params.end()) {
    if (auto v = r.string(*it, json_path_key(path, "after_last"))) {
      if (*v == "repeat_last")
        s.repeat_last = true;
      else if (*v != "error")
        r.fail(json_path_key(path, "after_last"),
               "must be \"error\" or \"repeat_last\", got " + json(*v).dump());
    }
  }
  if (auto it = params.find("pace"); it != params.end()) {
    if (auto v = r.string(*it, json_path_key(path, "pace"))) {
      if (*v == "recorded")
        s.recorded_pace = true;
      else if (*v != "instant")
        r.fail(json_path_key(path, "pace"), "must be \"instant\" or \"recorded\", got " + json(*v).dump());
    }
  }
  if (auto it = params.find("pace_scale"); it != params.end()) {
    if (!it->is_number() || it->get<double>() < 0 || it->get<double>() > 100)
      r.fail(json_path_key(path, "pace_scale"), "expected a number from 0 to 100, got " + json_describe(*it));
    else
      s.pace_scale = it->get<double>();
  }
  if (auto it = params.find("session_header"); it != params.end()) {
    if (auto v = r.string(*it, json_path_key(path, "session_header"))) {
      if (!is_token(*v))
        r.fail(json_path_key(path, "session_header"), "not a valid header name");
      else
        s.session_header = *v;
    }
  }
  return s;
}

}  // namespace rproxy::stages
