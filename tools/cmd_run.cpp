#include <iostream>

#include "cli.hpp"
#include "run_scenario.hpp"

namespace rproxy::cli {

void setup_run(CLI::App& app, CliState& state) {
  auto file = std::make_shared<std::string>();
  auto* sub = app.add_subcommand("run", "Run a scenario file");
  sub->add_option("FILE", *file, "Scenario JSON")->required()->check(CLI::ExistingFile);
  sub->callback([file, &state] {
    try {
      state.exit_code = run_scenario(load_scenario(*file));
    } catch (const ConfigError& e) {
      report_config_error(e);
      state.exit_code = kExitUsage;
    }
  });
}

void setup_validate(CLI::App& app, CliState& state) {
  auto file = std::make_shared<std::string>();
  auto* sub = app.add_subcommand("validate", "Check a scenario file; print every problem with its JSON path");
  sub->add_option("FILE", *file, "Scenario JSON")->required()->check(CLI::ExistingFile);
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
