#include <fstream>
#include <iostream>
#include <sstream>

#include "cli.hpp"
#include "run_scenario.hpp"
#include "stages/replay.hpp"
#include "store/cassette.hpp"

namespace rproxy::cli {

// `rproxy har export|import`: recordings move to and from browsers' developer tools and other tools.
void setup_har(CLI::App& app, CliState& state) {
  auto* har = app.add_subcommand("har", "Convert recordings to and from HAR 1.2");
  har->require_subcommand(1);
  har->footer(
      "Examples:\n"
      "  rproxy har export recording.json recording.har\n"
      "  rproxy har import session.har recording.json\n"
      "  rproxy replay session.har      (a .har file also replays directly)\n");
  auto in = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto* exp = har->add_subcommand("export", "Write a cassette as HAR 1.2 (to FILE, or stdout)");
  exp->add_option("CASSETTE", *in, "Cassette file or directory")->required();
  exp->add_option("FILE", *out, "HAR file to write (default: stdout)");
  exp->footer(
      "Examples:\n"
      "  rproxy har export recording.json recording.har\n"
      "  rproxy har export recording/ | jq '.log.entries | length'\n");
  exp->callback([in, out, &state] {
    try {
      store::CassettePath path;
      auto cassette = stages::load_recording(*in, path);
      auto text = store::cassette_to_har(cassette, path.bodies_dir).dump(2) + "\n";
      if (out->empty()) {
        std::cout << text;
      } else {
        std::string error;
        if (!write_file_atomically(*out, text, error)) {
          std::cerr << "rproxy: error: " << error << "\n";
          state.exit_code = kExitRuntime;
          return;
        }
      }
      state.exit_code = kExitOk;
    } catch (const std::exception& e) {
      std::cerr << "rproxy: error: " << e.what() << "\n";
      state.exit_code = kExitUsage;
    }
  });
  auto hin = std::make_shared<std::string>();
  auto hout = std::make_shared<std::string>();
  auto* imp = har->add_subcommand("import", "Turn a HAR file into a cassette (file or directory)");
  imp->add_option("HAR", *hin, "HAR 1.2 file")->required()->check(CLI::ExistingFile);
  imp->add_option("CASSETTE", *hout, "Cassette to write (.json file, or a directory ending in /)")
      ->required();
  imp->footer(
      "Examples:\n"
      "  rproxy har import session.har recording.json\n"
      "  rproxy har import session.har recording/\n");
  imp->callback([hin, hout, &state] {
    try {
      std::ifstream f(*hin, std::ios::binary);
      std::stringstream ss;
      ss << f.rdbuf();
      auto doc = nlohmann::json::parse(ss.str(), nullptr, false);
      if (doc.is_discarded()) throw std::runtime_error(*hin + ": not valid JSON");
      auto path = store::resolve_cassette_path(*hout);
      auto cassette = store::cassette_from_har(doc, path.bodies_dir);
      store::save_cassette(path, cassette);
      std::cerr << "rproxy: " << cassette.interactions.size() << " interactions written to " << path.json_file
                << "\n";
      state.exit_code = kExitOk;
    } catch (const std::exception& e) {
      std::cerr << "rproxy: error: " << e.what() << "\n";
      state.exit_code = kExitUsage;
    }
  });
}

}  // namespace rproxy::cli
