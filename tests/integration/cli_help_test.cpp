// The command line explains itself: every option has a description, every command has examples,
// `rproxy help CMD` is `rproxy CMD --help`, --version names the libraries, and every usage or
// configuration error exits 2.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "cli.hpp"
#include "support/subprocess.hpp"

namespace {

namespace fs = std::filesystem;
using rproxy::test::run_command;
using rproxy::test::RunResult;

RunResult rproxy_run(std::vector<std::string> args) {
  args.insert(args.begin(), RPROXY_BINARY);
  return run_command(std::move(args), std::chrono::seconds(10));
}

// for_each_command calls fn(path, app) for the root and every (nested) subcommand.
void for_each_command(const CLI::App& app, const std::string& path,
                      const std::function<void(const std::string&, const CLI::App&)>& fn) {
  fn(path, app);
  for (const auto* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    for_each_command(*sub, path + " " + sub->get_name(), fn);
}

}  // namespace

TEST_CASE("cli help: every command and option has a description, every command examples") {
  rproxy::cli::CliState state;
  CLI::App app{"rproxy: a reverse-proxy toolkit for development and CI", "rproxy"};
  rproxy::cli::build_app(app, state);
  int options = 0;
  for_each_command(app, "rproxy", [&](const std::string& path, const CLI::App& cmd) {
    CAPTURE(path);
    CHECK(!cmd.get_description().empty());
    for (const auto* opt : cmd.get_options()) {
      CAPTURE(opt->get_name());
      CHECK(!opt->get_description().empty());
      // One line: the help lists one option per line.
      CHECK(opt->get_description().find('\n') == std::string::npos);
      // An option with a closed set of values shows which one applies when it is not given.
      const auto type = opt->get_type_name();
      if (opt->nonpositional() && type.find(":{") != std::string::npos)
        CHECK(
            (!opt->get_default_str().empty() || opt->get_description().find("default") != std::string::npos));
      ++options;
    }
    CHECK(cmd.get_footer().find("Examples:\n  rproxy ") != std::string::npos);
  });
  CHECK(options > 150);
}

TEST_CASE("cli help: rproxy help CMD prints what rproxy CMD --help prints") {
  for (std::vector<std::string> cmd :
       std::vector<std::vector<std::string>>{{"serve"}, {"har", "export"}, {"ca", "trust"}, {}}) {
    std::vector<std::string> help_args{"help"};
    help_args.insert(help_args.end(), cmd.begin(), cmd.end());
    auto via_help = rproxy_run(help_args);
    cmd.push_back("--help");
    auto direct = rproxy_run(cmd);
    CAPTURE(via_help.err);
    CHECK(via_help.exit_code == 0);
    CHECK(direct.exit_code == 0);
    CHECK(via_help.out == direct.out);
    CHECK(via_help.out.find("Examples:") != std::string::npos);
  }
  auto serve = rproxy_run({"serve", "--help"});
  CHECK(serve.out.find("Usage: rproxy serve") != std::string::npos);
  CHECK(serve.out.find("POLICY:{round_robin,least_conn,random,weighted}") != std::string::npos);
  auto bad = rproxy_run({"help", "nosuch"});
  CHECK(bad.exit_code == 2);
  CHECK(bad.err.find("nosuch") != std::string::npos);
  CHECK(bad.out.empty());
}

TEST_CASE("cli help: --version names rproxy and the libraries it was built with") {
  auto res = rproxy_run({"--version"});
  CHECK(res.exit_code == 0);
  CAPTURE(res.out);
  CHECK(res.out.rfind(std::string("rproxy ") + RPROXY_VERSION + "\n", 0) == 0);
  for (const char* lib : {"OpenSSL 3.", "zlib 1.", "brotli 1.", "cpp-httplib 0.", "Asio 1.",
                          "nlohmann json 3.", "CLI11 2.", "build: "}) {
    CAPTURE(lib);
    CHECK(res.out.find(lib) != std::string::npos);
  }
  CHECK(res.out.find(std::string("CLI11 ") + CLI11_VERSION) != std::string::npos);
}

TEST_CASE("cli help: every command exits 2 on a bad flag or a bad scenario file") {
  const fs::path dir = fs::temp_directory_path() / ("rproxy-exit-codes-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string bad = (dir / "bad.json").string();
  std::ofstream(bad) << R"({"version": 1, "listeners": ["nowhere"], "routes": []})";
  const std::vector<std::vector<std::string>> usage_errors{
      {"--no-such-flag"},
      {},
      {"nosuch"},
      {"serve", "--no-such-flag"},
      {"serve", "--scenario", bad},
      {"serve", "--scenario", (dir / "missing.json").string()},
      {"split", "--bogus"},
      {"split", "--scenario", bad},
      {"fault", "--bogus"},
      {"fault", "--scenario", bad, "--latency", "10ms"},
      {"record", "--bogus"},
      {"record", "--scenario", bad, "--out", (dir / "r.json").string()},
      {"replay", "--bogus", "x.json"},
      {"replay", "--scenario", bad, (dir / "r.json").string()},
      {"run", "--bogus"},
      {"run", bad},
      {"validate", bad},
      {"validate"},
      {"echo", "--bogus"},
      {"echo", "--status", "99"},
      {"har", "--bogus"},
      {"har", "export"},
      {"har", "export", (dir / "missing.json").string()},
      {"replay", (dir / "missing.json").string(), "--listen", "127.0.0.1:0"},
      {"ca", "--bogus"},
      {"ca", "env", "--shell", "tcsh"},
      {"completion", "tcsh"},
      {"help", "nosuch"},
  };
  for (const auto& args : usage_errors) {
    std::string line;
    for (const auto& a : args) line += a + " ";
    CAPTURE(line);
    auto res = rproxy_run(args);
    CAPTURE(res.err);
    CHECK(res.exit_code == 2);
    CHECK(res.err.find("rproxy") != std::string::npos);
    // A mistyped first word is named, not reported as a missing command.
    if (args.size() == 1 && args[0].find("such") != std::string::npos)
      CHECK(res.err.find("'" + args[0] + "'") != std::string::npos);
  }
  fs::remove_all(dir);
}
