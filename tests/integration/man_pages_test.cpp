// The man pages cannot drift from the CLI: every flag of every command (walked from the CLI definition
// itself) is documented in its page, every page renders without groff warnings, and rproxy-scenario(5)
// names every key of the scenario schema.
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "support/subprocess.hpp"

namespace {

namespace fs = std::filesystem;

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot read " << path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string man_page(const std::string& name) {
  // Undo roff escaping of hyphens so "\-\-listen" reads "--listen".
  return std::regex_replace(read_text(fs::path(RPROXY_SOURCE_DIR) / "man" / name), std::regex(R"(\\-)"), "-");
}

// page_for: "rproxy" and "rproxy help" are in rproxy.1; "rproxy har export" in rproxy-har.1.
std::string page_for(const std::string& path) {
  std::istringstream words(path);
  std::string root, cmd;
  words >> root >> cmd;
  return cmd.empty() || cmd == "help" ? "rproxy.1" : "rproxy-" + cmd + ".1";
}

void for_each_command(const CLI::App& app, const std::string& path,
                      const std::function<void(const std::string&, const CLI::App&)>& fn) {
  fn(path, app);
  for (const auto* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    for_each_command(*sub, path + " " + sub->get_name(), fn);
}

struct Cli {
  rproxy::cli::CliState state;
  CLI::App app{"rproxy: a reverse-proxy toolkit for development and CI", "rproxy"};
  Cli() { rproxy::cli::build_app(app, state); }
};

}  // namespace

TEST_CASE("man pages: every flag of every command is documented in its page") {
  Cli cli;
  std::size_t checked = 0;
  std::set<std::string> pages;
  for_each_command(cli.app, "rproxy", [&](const std::string& path, const CLI::App& cmd) {
    const auto name = page_for(path);
    pages.insert(name);
    const auto page = man_page(name);
    CAPTURE(path);
    CAPTURE(name);
    for (const auto* opt : cmd.get_options()) {
      for (const auto& l : opt->get_lnames()) {
        CAPTURE(l);
        CHECK(page.find("--" + l) != std::string::npos);
        ++checked;
      }
    }
  });
  CHECK(checked > 300);
  // Every command has its own page (the list above), and the overview links them all.
  const auto overview = man_page("rproxy.1");
  for (const auto& name : pages) {
    if (name == "rproxy.1") continue;
    CAPTURE(name);
    CHECK(overview.find(".BR " + name.substr(0, name.size() - 2) + " (1)") != std::string::npos);
  }
}

TEST_CASE("man pages: every subcommand is listed in rproxy.1") {
  Cli cli;
  auto page = man_page("rproxy.1");
  int listed_count = 0;
  for (const auto* sub : cli.app.get_subcommands([](const CLI::App*) { return true; })) {
    const auto& cmd = sub->get_name();
    CAPTURE(cmd);
    bool listed = page.find("\n.B " + cmd + "\n") != std::string::npos ||
                  page.find("\n.BI " + cmd + " ") != std::string::npos ||
                  page.find("\n.BI \"" + cmd + " ") != std::string::npos ||
                  page.find("\n.BR " + cmd + " ") != std::string::npos;
    CHECK(listed);
    ++listed_count;
  }
  CHECK(listed_count >= 12);
}

TEST_CASE("man pages: every page renders without groff warnings") {
  // scripts/deps.sh installs groff-base; without it this test cannot say anything, so it fails.
  REQUIRE_MESSAGE(rproxy::test::run_command({"sh", "-c", "command -v groff"}).exit_code == 0,
                  "groff is not installed (apt-get install groff-base)");
  int pages = 0;
  for (const auto& entry : fs::directory_iterator(fs::path(RPROXY_SOURCE_DIR) / "man")) {
    CAPTURE(entry.path().string());
    auto res = rproxy::test::run_command({"groff", "-man", "-ww", "-z", entry.path().string()});
    CHECK(res.exit_code == 0);
    CHECK(res.err == "");
    CHECK(res.out == "");
    ++pages;
  }
  CHECK(pages >= 13);
}

TEST_CASE("man pages: rproxy-scenario.5 documents every key of the scenario schema") {
  const fs::path source = RPROXY_SOURCE_DIR;
  const auto schema = nlohmann::json::parse(read_text(source / "scenarios/scenario.schema.json"));
  const auto page = read_text(fs::path(RPROXY_SOURCE_DIR) / "man/rproxy-scenario.5");
  const auto& defs = schema.at("$defs");
  // Keys are set in bold: "\fBkey\fR".
  auto check_keys = [&](const std::string& where, const nlohmann::json& object) {
    CAPTURE(where);
    REQUIRE(object.contains("properties"));
    for (const auto& [key, value] : object.at("properties").items()) {
      CAPTURE(key);
      CHECK(page.find("\\fB" + key + "\\fR") != std::string::npos);
    }
  };
  check_keys("top level", schema);
  for (const char* key : {"limits", "access_log", "tls"}) check_keys(key, schema.at("properties").at(key));
  for (const char* def : {"route", "match", "upstream", "stage", "fault_rule", "fault_match"})
    check_keys(def, defs.at(def));
  int stages = 0;
  for (const auto& type : defs.at("stage").at("properties").at("type").at("enum")) {
    const std::string t = type.get<std::string>();
    CAPTURE(t);
    CHECK(page.find(".SS \"" + t + " stage\"") != std::string::npos);
    check_keys(t + "_params", defs.at(t + "_params"));
    ++stages;
  }
  CHECK(stages >= 11);
  for (const auto& ref : defs.at("fault").at("oneOf")) {
    const auto name = ref.at("$ref").get<std::string>().substr(std::string("#/$defs/").size());
    const auto& fault = defs.at(name);
    CHECK(page.find("\\fB" + fault.at("properties").at("type").at("const").get<std::string>() + "\\fR") !=
          std::string::npos);
    check_keys(name, fault);
  }
}
