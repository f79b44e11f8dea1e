// The man pages cannot drift from the CLI: every flag `rproxy CMD --help` lists is documented.
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

namespace {
std::string run(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  while (auto n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  ::pclose(p);
  return out;
}

std::set<std::string> long_flags(const std::string& help) {
  std::set<std::string> flags;
  std::regex re("--[a-z][a-z0-9-]+");
  for (auto it = std::sregex_iterator(help.begin(), help.end(), re); it != std::sregex_iterator(); ++it)
    flags.insert(it->str());
  flags.erase("--help");
  return flags;
}

std::string man_page(const std::string& name) {
  std::ifstream in(std::string(RPROXY_SOURCE_DIR) + "/man/" + name);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  // Undo roff escaping of hyphens so "\-\-listen" reads "--listen".
  return std::regex_replace(ss.str(), std::regex(R"(\\-)"), "-");
}
}  // namespace

// Every long flag `rproxy CMD --help` lists (before its examples) appears in the page.
static void check_flags_documented(const std::string& cmd, const std::string& page_name,
                                   std::size_t at_least) {
  auto help = run(std::string(RPROXY_BINARY) + " " + cmd + " --help");
  auto flags = long_flags(help.substr(0, help.find("Examples:")));
  REQUIRE(flags.size() > at_least);
  auto page = man_page(page_name);
  for (const auto& f : flags) {
    CAPTURE(f);
    CHECK(page.find(f) != std::string::npos);
  }
}

TEST_CASE("man pages: every serve flag is documented in rproxy-serve.1") {
  check_flags_documented("serve", "rproxy-serve.1", 15);
}

TEST_CASE("man pages: every split flag is documented in rproxy-split.1") {
  check_flags_documented("split", "rproxy-split.1", 25);
}

TEST_CASE("man pages: every record and replay flag is documented") {
  check_flags_documented("record", "rproxy-record.1", 30);
  check_flags_documented("replay", "rproxy-replay.1", 30);
}

TEST_CASE("man pages: every subcommand is listed in rproxy.1") {
  auto page = man_page("rproxy.1");
  for (std::string cmd : {"serve", "split", "fault", "record", "replay", "run", "validate", "echo", "ca"}) {
    CAPTURE(cmd);
    bool listed = page.find("\n.B " + cmd + "\n") != std::string::npos ||
                  page.find("\n.BI " + cmd + " ") != std::string::npos;
    CHECK(listed);
  }
}
