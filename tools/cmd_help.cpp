// `rproxy help [COMMAND [SUBCOMMAND]]`: the same text as `rproxy COMMAND --help`, for people who type it
// the git way.
#include <iostream>

#include "cli.hpp"

namespace rproxy::cli {

void setup_help(CLI::App& app, CliState& state) {
  std::vector<std::string> names;
  for (const auto* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    names.push_back(sub->get_name());
  names.push_back("help");
  auto words = std::make_shared<std::vector<std::string>>();
  auto* sub = app.add_subcommand("help", "Show the help of rproxy or of a command, e.g. rproxy help serve");
  sub->add_option("COMMAND", *words, "Command, and subcommand (rproxy help ca trust), to describe")
      ->check(values_hint(names));
  sub->footer(
      "Examples:\n"
      "  rproxy help\n"
      "  rproxy help serve\n"
      "  rproxy help har export\n");
  sub->callback([&app, words, &state] {
    const CLI::App* target = &app;
    std::string parent;  // the path above target, as help() prints it in the usage line
    for (const auto& w : *words) {
      const CLI::App* next = nullptr;
      for (const auto* s : target->get_subcommands([](const CLI::App*) { return true; }))
        if (s->get_name() == w) next = s;
      parent = target == &app ? app.get_name() : parent + " " + target->get_name();
      if (next == nullptr) {
        std::cerr << "rproxy: error: help: '" << parent << "' has no command '" << w << "'\n"
                  << "Run 'rproxy --help' for the list of commands.\n";
        state.exit_code = kExitUsage;
        return;
      }
      target = next;
    }
    // The formatter directly: App::help() would describe the selected subcommand, which is `help` itself.
    const std::string name = target == &app ? app.get_name() : parent + " " + target->get_name();
    std::cout << target->get_formatter()->make_help(target, name, CLI::AppFormatMode::Normal);
    state.exit_code = kExitOk;
  });
}

}  // namespace rproxy::cli
