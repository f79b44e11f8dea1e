// run_scenario starts a ProxyServer for a scenario, prints the start-up lines, and serves until SIGINT or
// SIGTERM, then drains. Every subcommand that proxies ends here.
#pragma once

#include "rproxy/scenario.hpp"

namespace rproxy::cli {

// Returns the process exit code (0 after a clean stop; 2 for configuration errors; 1 if it cannot listen).
int run_scenario(const Scenario& scenario);

// report_config_error prints every problem of a ConfigError as "rproxy: error: <problem>" lines.
void report_config_error(const ConfigError& e);

// print_scenario writes the scenario as indented JSON to stdout.
void print_scenario(const Scenario& scenario);

}  // namespace rproxy::cli
