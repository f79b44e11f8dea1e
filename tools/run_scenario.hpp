// run_scenario starts a ProxyServer for a scenario, prints the start-up lines, and serves until SIGINT or
// SIGTERM, then drains. Every subcommand that proxies ends here.
#pragma once

#include <functional>
#include <string>

#include "rproxy/scenario.hpp"

namespace rproxy::cli {

struct RunOptions {
  bool quiet = false;  // no live view and no exit summary (start-up lines and errors still print)
  std::string summary_json;  // write the exit summary as JSON here ("" = don't)
  // rebuild makes the scenario again (re-reading its file) for a reload on SIGHUP or --watch; unset when
  // the command has nothing to re-read. watch_file: reload when this file changes ("" = don't watch).
  std::function<Scenario()> rebuild;
  std::string watch_file;
  // admin_token_file: a file whose first line is the admin API's bearer token ("" = RPROXY_ADMIN_TOKEN from
  // the environment, or no token).
  std::string admin_token_file;
};

// Returns the process exit code (0 after a clean stop; 2 for configuration errors; 1 if it cannot listen
// or cannot write the report). While serving, a terminal on stderr gets a live view of the stages'
// summaries, refreshed every second; on exit the summary is printed and the scenario's report written.
int run_scenario(const Scenario& scenario, const RunOptions& options = {});

// print_or_run is every proxying subcommand's callback: build the scenario, then print it (--print-scenario)
// or run it. A ConfigError from either step is printed as problem lines and gives exit code 2.
int print_or_run(const std::function<Scenario()>& build, bool print, const RunOptions& options);

// write_file_atomically writes to PATH.tmp and renames it over PATH, so readers never see half a file.
bool write_file_atomically(const std::string& path, const std::string& content, std::string& error);

// report_config_error prints every problem of a ConfigError as "rproxy: error: <problem>" lines.
void report_config_error(const ConfigError& e);

// print_scenario writes the scenario as indented JSON to stdout.
void print_scenario(const Scenario& scenario);

}  // namespace rproxy::cli
