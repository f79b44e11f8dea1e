// The rproxy command line: one CLI::App, one setup_* function per subcommand (one file each).
// A subcommand only turns flags into a Scenario (or runs a tool such as echo); the engine does the rest.
#pragma once

#include <CLI/CLI.hpp>

namespace rproxy::cli {

// Exit codes, documented in rproxy(1): 0 success, 1 runtime failure, 2 usage or configuration error,
// 3 a verdict failed (stages::kStrictReplayExit: replay --strict misses, replay --against differences).
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
void setup_completion(CLI::App& app, CliState& state);
void setup_help(CLI::App& app, CliState& state);

// values_hint names the values a flag takes when its spelling is checked later than CLI11 could (e.g.
// header:NAME): it accepts everything, shows "{a,b,...}" in --help like CLI::IsMember, and the completion
// scripts offer the values (a value ending in ":NAME" is offered as its prefix, "header:").
CLI::Validator values_hint(const std::vector<std::string>& values);

// version_text is what --version prints: rproxy's version, the libraries it was built with, the build
// type and the compiler.
std::string version_text();

// build_app defines the whole command line on app (every subcommand and flag); state receives the exit
// code of the subcommand that ran. Tests and the completion generator walk the same definition.
void build_app(CLI::App& app, CliState& state);

// run_cli parses argv and runs the chosen subcommand; returns the process exit code.
int run_cli(int argc, char** argv);

}  // namespace rproxy::cli
