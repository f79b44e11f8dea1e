#include <iostream>
#include <optional>

#include "cli.hpp"
#include "run_scenario.hpp"

namespace rproxy::cli {

void setup_run(CLI::App& app, CliState& state) {
  struct RunFlags {
    std::string file;
    bool print_scenario = false;
    bool quiet = false;
    std::optional<std::string> report;
    std::string summary_json;
    bool watch = false;
  };
  auto flags = std::make_shared<RunFlags>();
  auto* sub = app.add_subcommand("run", "Run a scenario file");
  sub->add_option("FILE", flags->file, "Scenario JSON")->required()->check(CLI::ExistingFile);
  sub->add_flag("--print-scenario", flags->print_scenario, "Print the scenario with every default filled in, then exit 0");
  sub->add_option("--report", flags->report, "Write a JSON report of what every stage saw on exit [report]")
      ->type_name("FILE");
  sub->add_flag("--quiet", flags->quiet, "No live view on a terminal and no exit summary");
  sub->add_flag("--watch", flags->watch,
                "Reload FILE when it changes (and on SIGHUP); a broken file is reported and the running "
                "configuration stays");
  sub->add_option("--summary-json", flags->summary_json,
                  "On exit, write the summary (per route and variant: requests, status classes, p50/p99, bytes) "
                  "as JSON")
      ->type_name("FILE");
  sub->footer(
      "The scenario format is described in rproxy-scenario(5); scenarios/ has examples.\n"
      "Examples:\n"
      "  rproxy run scenarios/basic.json\n"
      "  rproxy run scenario.json --watch --report report.json\n"
      "  rproxy run scenario.json --print-scenario\n");
  sub->callback([flags, &state] {
    auto build = [&] {
      auto scenario = load_scenario(flags->file);
      if (flags->report) scenario.report = *flags->report;
      return scenario;
    };
    state.exit_code = print_or_run(build, flags->print_scenario, RunOptions{flags->quiet, flags->summary_json, {}, flags->watch ? flags->file : std::string(), {}});
  });
}

void setup_validate(CLI::App& app, CliState& state) {
  auto file = std::make_shared<std::string>();
  auto* sub = app.add_subcommand("validate", "Check a scenario file; print every problem with its JSON path");
  sub->add_option("FILE", *file, "Scenario JSON")->required()->check(CLI::ExistingFile);
  sub->footer(
      "Exit status 0 when the file is valid, 2 with one line per problem (JSON path: message) otherwise.\n"
      "Examples:\n"
      "  rproxy validate scenarios/basic.json\n"
      "  rproxy validate scenario.json && rproxy run scenario.json\n");
  sub->callback([file, &state] {
    try {
      auto s = load_scenario(*file);
      std::cout << *file << ": ok (" << s.routes.size() << " route" << (s.routes.size() == 1 ? "" : "s") << ")\n";
      state.exit_code = kExitOk;
    } catch (const ConfigError& e) {
      report_config_error(e);
      state.exit_code = kExitUsage;
    }
  });
}

}  // namespace rproxy::cli
