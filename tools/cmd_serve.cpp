#include <iostream>

#include "cli.hpp"
#include "common_flags.hpp"
#include "run_scenario.hpp"

namespace rproxy::cli {

void setup_serve(CLI::App& app, CliState& state) {
  auto flags = std::make_shared<CommonFlags>();
  auto* sub = app.add_subcommand("serve", "Reverse-proxy local traffic to upstreams (a dev front door)");
  flags->add_to(*sub);
  sub->footer(
      "Examples:\n"
      "  rproxy serve --to http://127.0.0.1:3000\n"
      "  rproxy serve --listen 127.0.0.1:9000 --route /api=http://127.0.0.1:3000 --route /=http://127.0.0.1:5173\n"
      "  rproxy serve --listen 127.0.0.1:9000 --to http://127.0.0.1:3001 --to http://127.0.0.1:3002\n"
      "  rproxy serve --tls --listen 127.0.0.1:8443 --to http://127.0.0.1:3000\n"
      "      then: curl --cacert \"$(rproxy ca path)\" https://localhost:8443/\n"
      "  rproxy serve --to https://127.0.0.1:3443 --upstream-ca ca.pem\n");
  sub->callback([flags, &state] {
    state.exit_code = print_or_run([&] { return flags->build(); }, flags->print_scenario, flags->run_options());
  });
}

}  // namespace rproxy::cli
