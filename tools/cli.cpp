#include "cli.hpp"

#include <iostream>

namespace rproxy::cli {

CLI::Validator values_hint(const std::vector<std::string>& values) {
  std::string desc = "{";
  for (std::size_t i = 0; i < values.size(); ++i) desc += (i ? "," : "") + values[i];
  desc += "}";
  return CLI::Validator([](std::string&) { return std::string(); }, desc, "values_hint");
}

void build_app(CLI::App& app, CliState& state) {
  app.set_version_flag("--version", version_text(),
                       "Print rproxy's version and the versions of the libraries it was built with");
  app.require_subcommand(1);
  app.fallthrough(false);
  app.footer(
      "Run 'rproxy help COMMAND' or 'rproxy COMMAND --help' for a command's flags and examples.\n"
      "Exit status: 0 success, 1 runtime failure, 2 usage or configuration error, 3 a verdict failed\n"
      "(replay --strict misses, replay --against differences). See rproxy(1).\n"
      "Examples:\n"
      "  rproxy serve --to http://127.0.0.1:3000\n"
      "  rproxy echo --listen 127.0.0.1:3000 &\n"
      "  rproxy serve --listen 127.0.0.1:9000 --to http://127.0.0.1:3000\n"
      "  rproxy run scenarios/basic.json\n"
      "  rproxy completion bash > ~/.local/share/bash-completion/completions/rproxy\n");
  setup_serve(app, state);
  setup_split(app, state);
  setup_fault(app, state);
  setup_record(app, state);
  setup_replay(app, state);
  setup_har(app, state);
  setup_run(app, state);
  setup_validate(app, state);
  setup_echo(app, state);
  setup_ca(app, state);
  setup_completion(app, state);
  setup_help(app, state);  // last: it names every other subcommand
}

int run_cli(int argc, char** argv) {
  CliState state;
  CLI::App app{"rproxy: a reverse-proxy toolkit for development and CI", "rproxy"};
  build_app(app, state);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One clear line naming the flag; exit code 2 for every usage error. CLI11 reports an unknown first
    // word as "A subcommand is required", which hides the typo: name it instead.
    const std::string first = argc > 1 ? argv[1] : "";
    bool known = false;
    for (const auto* sub : app.get_subcommands([](const CLI::App*) { return true; }))
      known = known || sub->get_name() == first;
    if (!first.empty() && !known)
      std::cerr << "rproxy: error: unknown command or flag '" << first << "'\n";
    else
      std::cerr << "rproxy: error: " << e.what() << "\n";
    std::cerr << "Run 'rproxy --help' or 'rproxy <command> --help' for usage.\n";
    return kExitUsage;
  }
  return state.exit_code;
}

}  // namespace rproxy::cli
