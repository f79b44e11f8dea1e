#include <iostream>

#include "cli.hpp"
#include "common_flags.hpp"
#include "replay_against.hpp"
#include "run_scenario.hpp"

namespace rproxy::cli {

namespace {

// Redaction and matching flags shared by record and replay; each maps to one stage param.
struct CassetteFlags {
  std::vector<std::string> redact_headers;
  std::vector<std::string> redact_query;
  std::vector<std::string> redact_json;
  std::vector<std::string> ignore_query;
  std::vector<std::string> ignore_json;
  std::vector<std::string> match_headers;
  std::optional<int> miss_status;
  std::optional<std::string> after_last;
  std::optional<std::string> session_header;
  std::optional<std::string> pace;
  std::optional<double> pace_scale;

  void add_to(CLI::App& sub) {
    sub.add_option(
           "--redact-header", redact_headers,
           "Also redact this header (repeatable; Authorization, Proxy-Authorization, Cookie, Set-Cookie and "
           "X-Api-Key always are) [redact.headers]")
        ->type_name("NAME")
        ->allow_extra_args(false);
    sub.add_option("--redact-query", redact_query,
                   "Redact this query parameter's value (repeatable) [redact.query]")
        ->type_name("NAME")
        ->allow_extra_args(false);
    sub.add_option("--redact-json", redact_json,
                   "Redact this JSON field at any depth (repeatable) [redact.json_fields]")
        ->type_name("FIELD")
        ->allow_extra_args(false);
    sub.add_option("--ignore-query", ignore_query,
                   "Query parameter not matched (repeatable) [match.ignore_query]")
        ->type_name("NAME")
        ->allow_extra_args(false);
    sub.add_option("--ignore-json", ignore_json,
                   "JSON body field not matched: a name or a $.path (repeatable) [match.ignore_json]")
        ->type_name("FIELD")
        ->allow_extra_args(false);
    sub.add_option("--match-header", match_headers,
                   "Request header that must match too (repeatable) [match.headers]")
        ->type_name("NAME")
        ->allow_extra_args(false);
    sub.add_option("--miss-status", miss_status, "Status of a miss, default 502 [miss_status]")
        ->type_name("CODE")
        ->check(CLI::Range(400, 599));
    sub.add_option("--after-last", after_last,
                   "error|repeat_last: after the last recorded answer [after_last]")
        ->check(CLI::IsMember({"error", "repeat_last"}))
        ->type_name("WHAT")
        ->default_str("error");
    sub.add_option(
           "--session-header", session_header,
           "Keep separate answer sequences per value of this header (parallel test workers) [session_header]")
        ->type_name("NAME");
    sub.add_option("--pace", pace,
                   "instant|recorded: answer at once, or with the recorded duration and chunk timing (a "
                   "recording made with --timing) [pace]")
        ->check(CLI::IsMember({"instant", "recorded"}))
        ->type_name("PACE")
        ->default_str("instant");
    sub.add_option("--pace-scale", pace_scale,
                   "Multiply recorded times, e.g. 0.5 for twice as fast [pace_scale]")
        ->check(CLI::Range(0.0, 100.0))
        ->type_name("X");
  }

  void fill(nlohmann::json& params) const {
    if (pace) params["pace"] = *pace;
    if (pace_scale) params["pace_scale"] = *pace_scale;
    nlohmann::json redact = nlohmann::json::object();
    if (!redact_headers.empty()) redact["headers"] = redact_headers;
    if (!redact_query.empty()) redact["query"] = redact_query;
    if (!redact_json.empty()) redact["json_fields"] = redact_json;
    if (!redact.empty()) params["redact"] = redact;
    nlohmann::json match = nlohmann::json::object();
    if (!ignore_query.empty()) match["ignore_query"] = ignore_query;
    if (!ignore_json.empty()) match["ignore_json"] = ignore_json;
    if (!match_headers.empty()) match["headers"] = match_headers;
    if (!match.empty()) params["match"] = match;
    if (miss_status) params["miss_status"] = *miss_status;
    if (after_last) params["after_last"] = *after_last;
    if (session_header) params["session_header"] = *session_header;
  }
};

// finish validates a scenario that flags completed and runs or prints it.
int finish(Scenario s, const CommonFlags& common) {
  fill_default_names(s);
  auto problems = validate_scenario(s);
  if (!problems.empty()) throw ConfigError(problems);
  if (common.print_scenario) {
    print_scenario(s);
    return kExitOk;
  }
  return run_scenario(s, common.run_options());
}

}  // namespace

void setup_record(CLI::App& app, CliState& state) {
  auto common = std::make_shared<CommonFlags>();
  auto cassette = std::make_shared<CassetteFlags>();
  auto out = std::make_shared<std::string>();
  auto mode = std::make_shared<std::string>("once");
  auto timing = std::make_shared<bool>(false);
  auto* sub = app.add_subcommand("record", "Proxy to upstreams and record every exchange to a cassette");
  common->add_to(*sub);
  sub->add_option("--out", *out, "Recording to write: a .json file, or a directory [out]")
      ->required()
      ->type_name("PATH");
  sub->add_option(
         "--mode", *mode,
         "once: record unless a recording exists, else replay it; new: replay and record what is new; "
         "all: record afresh [mode]")
      ->check(CLI::IsMember({"once", "new", "all"}))
      ->type_name("MODE")
      ->capture_default_str();
  sub->add_flag("--timing", *timing,
                "Keep durations and chunk timing (off: files carry no wall-clock values) [timing]");
  cassette->add_to(*sub);
  sub->footer(
      "Examples:\n"
      "  rproxy record --listen 127.0.0.1:9000 --to http://127.0.0.1:3000 --out recording.json\n"
      "  rproxy record --to http://127.0.0.1:3000 --out recording/ --mode new --redact-json password\n");
  sub->callback([common, cassette, out, mode, timing, &state] {
    try {
      auto s = common->build();
      nlohmann::json params = {{"out", *out}, {"mode", *mode}};
      if (*timing) params["timing"] = true;
      cassette->fill(params);
      // Scenario-wide, so every route records (the upstream head is taken before any stage edits it).
      s.stages.push_back(StageSpec{"record", "", params});
      state.exit_code = finish(std::move(s), *common);
    } catch (const ConfigError& e) {
      report_config_error(e);
      state.exit_code = kExitUsage;
    }
  });
}

void setup_replay(CLI::App& app, CliState& state) {
  auto common = std::make_shared<CommonFlags>();
  common->allow_no_upstream = true;
  auto cassette = std::make_shared<CassetteFlags>();
  auto file = std::make_shared<std::string>();
  auto strict = std::make_shared<bool>(false);
  auto junit = std::make_shared<std::string>();
  auto* sub = app.add_subcommand("replay", "Answer requests from a recording, offline, with a verdict");
  sub->add_option("RECORDING", *file, "Cassette file or directory, or a .har file [cassette]")->required();
  common->add_to(*sub);
  sub->add_flag("--strict", *strict, "Exit 3 when any request missed or any recording went unused [strict]");
  sub->add_option("--junit", *junit, "Write the verdict as JUnit XML on exit [junit]")->type_name("FILE");
  auto against = std::make_shared<std::string>();
  sub->add_option("--against", *against,
                  "Do not listen: send the recorded requests to this backend and report where its responses "
                  "differ (exit 3 if any)")
      ->type_name("URL");
  cassette->add_to(*sub);
  sub->footer(
      "Without --to nothing ever reaches an upstream; with --to, misses are passed through to it.\n"
      "Examples:\n"
      "  rproxy replay --listen 127.0.0.1:9000 recording.json\n"
      "  rproxy replay --listen 127.0.0.1:9000 recording.json --strict --junit replay.xml --report "
      "verdict.json\n");
  sub->callback([common, cassette, file, strict, junit, against, &state] {
    try {
      if (!against->empty()) {
        AgainstOptions o;
        o.recording = *file;
        o.url = *against;
        o.ignore_json = cassette->ignore_json;
        o.report = common->report.value_or("");
        o.upstream_ca = common->upstream_ca.value_or("");
        o.insecure = common->insecure;
        state.exit_code = replay_against(o);
        return;
      }
      auto s = common->build();
      nlohmann::json params = {{"cassette", *file}};
      if (*strict) params["strict"] = true;
      if (!junit->empty()) params["junit"] = *junit;
      if (!common->to.empty() || !common->routes.empty()) params["passthrough"] = true;
      cassette->fill(params);
      if (s.routes.empty()) s.routes.push_back(Route{});  // answered by the replay stage alone
      s.stages.push_back(StageSpec{"replay", "", params});
      state.exit_code = finish(std::move(s), *common);
    } catch (const ConfigError& e) {
      report_config_error(e);
      state.exit_code = kExitUsage;
    }
  });
}

}  // namespace rproxy::cli
