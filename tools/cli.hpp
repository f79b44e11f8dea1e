// The rproxy command line: one CLI::App, one setup_* function per subcommand (one file each).
// A subcommand only turns flags into a Scenario (or runs a tool such as echo); the engine does the rest.
#pragma once

#include <CLI/CLI.hpp>

namespace rproxy::cli {

// Exit codes, documented in the man page: 0 success, 1 runtime failure, 2 usage or configuration error.
inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntime = 1;
inline constexpr int kExitUsage = 2;

// CliState carries what a subcommand's callback decided back to run_cli.
struct CliState {
  int exit_code = kExitOk;
};

void setup_serve(CLI::App& app, CliState& state);
void setup_split(CLI::App& app, CliState& state);
void setup_fault(CLI::App& app, CliState& state);
void setup_record(CLI::App& app, CliState& state);
void setup_replay(CLI::App& app, CliState& state);
void setup_har(CLI::App& app, CliState& state);
void setup_run(CLI::App& app, CliState& state);
void setup_validate(CLI::App& app, CliState& state);
void setup_echo(CLI::App& app, CliState& state);
void setup_ca(CLI::App& app, CliState& state);

// run_cli parses argv and runs the chosen subcommand; returns the process exit code.
int run_cli(int argc, char** argv);

}  // namespace rproxy::cli
