#include "cli.hpp"

#include <iostream>

namespace rproxy::cli {

int run_cli(int argc, char** argv) {
  CliState state;
  CLI::App app{"rproxy: a reverse-proxy toolkit for development and CI", "rproxy"};
  app.set_version_flag("--version", std::string("rproxy ") + RPROXY_VERSION);
  app.require_subcommand(1);
  app.fallthrough(false);
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
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One clear line naming the flag; exit code 2 for every usage error.
    std::cerr << "rproxy: error: " << e.what() << "\n";
    std::cerr << "Run 'rproxy --help' or 'rproxy <command> --help' for usage.\n";
    return kExitUsage;
  }
  return state.exit_code;
}

}  // namespace rproxy::cli
