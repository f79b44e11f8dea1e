#include <iostream>

#include "cli.hpp"
#include "common_flags.hpp"
#include "run_scenario.hpp"
#include "stages/split.hpp"

namespace rproxy::cli {

namespace {

struct SplitFlags {
  std::optional<std::string> weights;
  std::optional<std::string> sticky;
  std::optional<std::string> cookie;
  bool no_override = false;
  bool shadow = false;
  std::optional<double> shadow_percent;
  std::vector<std::string> shadow_ignore;
  std::vector<std::string> shadow_headers;
  std::optional<std::string> explain;
};

// Parses "90,10" into weights; appends a problem naming --weights otherwise.
std::vector<unsigned> parse_weights(const std::string& text, std::vector<std::string>& problems) {
  std::vector<unsigned> out;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    auto comma = text.find(',', pos);
    auto item = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    bool digits =
        !item.empty() && item.size() <= 6 && item.find_first_not_of("0123456789") == std::string::npos;
    if (!digits) {
      problems.push_back("--weights " + text + ": expected whole numbers separated by commas, e.g. 90,10");
      return {};
    }
    out.push_back(static_cast<unsigned>(std::stoul(item)));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

// Turns the flags into a split stage on the --to route. Upstreams without a name get a, b, c, ...
Scenario build_split_scenario(const CommonFlags& common, const SplitFlags& f) {
  auto s = common.build();
  std::vector<std::string> problems;
  bool from_flags = !common.to.empty();
  if (!from_flags) {
    for (const auto& st : s.stages)
      if (st.type == "split") return s;
    for (const auto& r : s.routes)
      for (const auto& st : r.stages)
        if (st.type == "split") return s;
    throw ConfigError(
        {"--to: give the variants as --to a=URL --to b=URL (or a --scenario with a split stage)"});
  }
  Route& route = s.routes.back();  // the --to route
  std::vector<std::string> names;
  for (std::size_t i = 0; i < route.upstreams.size(); ++i) {
    auto& up = route.upstreams[i];
    if (up.name.empty()) up.name = std::string(1, static_cast<char>('a' + std::min<std::size_t>(i, 25)));
    if (std::find(names.begin(), names.end(), up.name) == names.end()) names.push_back(up.name);
  }
  if (names.size() < 2)
    problems.push_back("--to: a split needs at least two variants, e.g. --to a=URL --to b=URL");
  nlohmann::json variants = nlohmann::json::array();
  std::vector<unsigned> weights(names.size(), 1);
  if (f.weights) {
    auto w = parse_weights(*f.weights, problems);
    if (!w.empty() && w.size() != names.size())
      problems.push_back("--weights " + *f.weights + ": " + std::to_string(w.size()) + " weights for " +
                         std::to_string(names.size()) + " variants");
    else if (!w.empty())
      weights = w;
  }
  for (std::size_t i = 0; i < names.size(); ++i)
    variants.push_back({{"name", names[i]}, {"weight", weights[i]}});
  nlohmann::json params = {{"variants", variants}};
  if (f.sticky) {
    std::string err;
    if (!stages::parse_sticky(*f.sticky, err)) problems.push_back("--sticky " + *f.sticky + ": " + err);
    params["sticky"] = *f.sticky;
  }
  if (f.cookie) params["cookie"] = *f.cookie;
  if (f.no_override) params["override"] = false;
  if (f.shadow || f.shadow_percent || !f.shadow_ignore.empty() || !f.shadow_headers.empty()) {
    if (!f.shadow) problems.push_back("--shadow-percent, --shadow-ignore and --shadow-headers need --shadow");
    if (names.size() != 2 && f.shadow)
      problems.push_back(
          "--shadow: needs exactly two variants (the first answers, the second gets the copies)");
    nlohmann::json sh = {{"variant", names.size() > 1 ? names[1] : names[0]}};
    if (f.shadow_percent) sh["percent"] = *f.shadow_percent;
    if (!f.shadow_ignore.empty()) sh["ignore"] = f.shadow_ignore;
    if (!f.shadow_headers.empty()) sh["compare_headers"] = f.shadow_headers;
    params["shadow"] = sh;
  }
  if (!problems.empty()) throw ConfigError(problems);
  route.stages.push_back(StageSpec{"split", "", params});
  fill_default_names(s);
  auto more = validate_scenario(s);
  if (!more.empty()) throw ConfigError(more);
  return s;
}

// Prints the variant `key` gets under the scenario's first split stage.
int explain(const Scenario& s, const std::string& key) {
  auto try_stage = [&](const StageSpec& st, const Route* route) -> bool {
    if (st.type != "split") return false;
    std::vector<std::string> problems;
    auto settings = stages::SplitStage::parse_settings(st.params, "split", StageContext{s, route}, problems);
    if (!settings) throw ConfigError(problems);
    stages::SplitStage stage(*settings, s.seed);
    std::cout << stage.explain(key) << "\n";
    return true;
  };
  for (const auto& st : s.stages)
    if (try_stage(st, nullptr)) return kExitOk;
  for (const auto& r : s.routes)
    for (const auto& st : r.stages)
      if (try_stage(st, &r)) return kExitOk;
  throw ConfigError({"--explain: the scenario has no split stage"});
}

}  // namespace

void setup_split(CLI::App& app, CliState& state) {
  auto common = std::make_shared<CommonFlags>();
  auto flags = std::make_shared<SplitFlags>();
  auto* sub = app.add_subcommand(
      "split", "A/B split traffic between variants, sticky and overridable, with per-variant stats");
  common->add_to(*sub);
  sub->add_option("--weights", flags->weights,
                  "Relative weights of the variants in --to order, e.g. 90,10 [variants[].weight]")
      ->type_name("W,W,...");
  sub->add_option("--sticky", flags->sticky,
                  "none|cookie|ip|header:NAME|query:NAME: what keeps a client on its variant [sticky]")
      ->type_name("MODE")
      ->check(values_hint({"none", "cookie", "ip", "header:NAME", "query:NAME"}))
      ->default_str("none");
  sub->add_option("--cookie", flags->cookie, "Name of the sticky cookie, default rproxy_split [cookie]")
      ->type_name("NAME");
  sub->add_flag("--no-override", flags->no_override,
                "Ignore X-Rproxy-Variant, ?rproxy_variant= and the rproxy_variant cookie [override]");
  sub->add_flag(
      "--shadow", flags->shadow,
      "Send everything to the first variant and a copy to the second; compare the responses [shadow]");
  sub->add_option("--shadow-percent", flags->shadow_percent,
                  "Share of requests copied, default 100 [shadow.percent]")
      ->type_name("PCT")
      ->check(CLI::Range(0.0, 100.0));
  sub->add_option(
         "--shadow-ignore", flags->shadow_ignore,
         "JSON field to ignore when comparing: a name (any depth) or a $.path (repeatable) [shadow.ignore]")
      ->type_name("FIELD")->allow_extra_args(false);
  sub->add_option("--shadow-headers", flags->shadow_headers,
                  "Response header to compare (repeatable), default Content-Type [shadow.compare_headers]")
      ->type_name("NAME")->allow_extra_args(false);
  sub->add_option("--explain", flags->explain,
                  "Print the variant a sticky key gets (and each variant's score), then exit")
      ->type_name("KEY");
  sub->footer(
      "Examples:\n"
      "  rproxy split --listen 127.0.0.1:9000 --to a=http://127.0.0.1:3001 --to b=http://127.0.0.1:3002 "
      "--weights 90,10\n"
      "  rproxy split --to a=http://127.0.0.1:3001 --to b=http://127.0.0.1:3002 --sticky cookie --report "
      "report.json\n"
      "  rproxy split --to a=http://127.0.0.1:3001 --to b=http://127.0.0.1:3002 --sticky header:X-User-Id "
      "--explain user-42\n"
      "  rproxy split --to a=http://127.0.0.1:3001 --to b=http://127.0.0.1:3002 --shadow --shadow-ignore "
      "updated_at\n"
      "Override for testers: send X-Rproxy-Variant: b, or open /?rproxy_variant=b (pins a cookie client;\n"
      "/?rproxy_variant= unpins). Every response carries X-Rproxy-Variant.\n");
  sub->callback([common, flags, &state] {
    try {
      auto scenario = build_split_scenario(*common, *flags);
      if (flags->explain) {
        state.exit_code = explain(scenario, *flags->explain);
        return;
      }
      if (common->print_scenario) {
        print_scenario(scenario);
        state.exit_code = kExitOk;
        return;
      }
      state.exit_code = run_scenario(scenario, common->run_options());
    } catch (const ConfigError& e) {
      report_config_error(e);
      state.exit_code = kExitUsage;
    }
  });
}

}  // namespace rproxy::cli
