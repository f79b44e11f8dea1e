// Shell completion scripts generated from the CLI11 definition itself (build_app), so they cannot drift
// from the flags: subcommands, options, enumerated values (CLI::IsMember and values_hint) and file
// arguments (CLI::ExistingFile, or a FILE, PATH or DIR type name).
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace rproxy::cli {

// What an option's (or positional's) value completes to.
enum class ValueKind { kNone, kText, kWords, kFiles, kDirs };

struct CompletionOption {
  std::vector<std::string> names;  // with dashes: "--listen", "-h"
  std::string description;
  ValueKind kind = ValueKind::kNone;  // kNone: a flag without a value
  std::vector<std::string> words;     // kWords: the values offered
};

struct CompletionCommand {
  std::string path;  // "rproxy", "rproxy serve", "rproxy har export"
  std::string description;
  std::vector<std::pair<std::string, std::string>> subcommands;  // name, description
  std::vector<CompletionOption> options;
  CompletionOption positional;  // kind kNone when the command takes no positional argument
};

// completion_model walks app and its subcommands, depth first, in definition order.
std::vector<CompletionCommand> completion_model(const CLI::App& app);

// completion_script renders the model for "bash", "zsh" or "fish"; throws std::invalid_argument otherwise.
std::string completion_script(const CLI::App& app, const std::string& shell);

// The shells completion_script knows, and where the generated scripts are checked in (under completions/).
inline const std::vector<std::pair<std::string, std::string>> kCompletionFiles{
    {"bash", "rproxy.bash"}, {"zsh", "_rproxy"}, {"fish", "rproxy.fish"}};

}  // namespace rproxy::cli
