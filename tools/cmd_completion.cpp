// `rproxy completion bash|zsh|fish`: prints the completion script generated from this very CLI.
#include <iostream>

#include "cli.hpp"
#include "completion_gen.hpp"

namespace rproxy::cli {

void setup_completion(CLI::App& app, CliState& state) {
  auto shell = std::make_shared<std::string>();
  auto* sub = app.add_subcommand("completion", "Print the shell completion script for bash, zsh or fish");
  std::vector<std::string> shells;
  for (const auto& [name, file] : kCompletionFiles) shells.push_back(name);
  sub->add_option("SHELL", *shell, "Shell to complete for: bash, zsh or fish")
      ->required()
      ->check(CLI::IsMember(shells));
  sub->footer(
      "The packages install these scripts already; by hand:\n"
      "Examples:\n"
      "  rproxy completion bash > ~/.local/share/bash-completion/completions/rproxy\n"
      "  rproxy completion zsh > ~/.zfunc/_rproxy      (with fpath+=(~/.zfunc) before compinit)\n"
      "  rproxy completion fish > ~/.config/fish/completions/rproxy.fish\n"
      "  source <(rproxy completion bash)              (this shell only)\n");
  // The root app is complete by the time the callback runs (build_app has added every subcommand).
  sub->callback([&app, shell, &state] {
    std::cout << completion_script(app, *shell);
    state.exit_code = kExitOk;
  });
}

}  // namespace rproxy::cli
