// ctest runs each test case by name (doctest_discover_tests). A ';' in a name splits it into two CMake list
// items, an unbalanced '[' glues the following names together, and a duplicate name is one ctest test: in
// each case a test case silently stops running in CI (its filter matches nothing and "passes"). This guard
// reads every test source and fails on such names.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>

TEST_CASE("test names: every test case can be run by ctest under its own name") {
  namespace fs = std::filesystem;
  const std::regex test_case(R"re(TEST_CASE\("((?:[^"\\]|\\.)*)"\))re");
  std::map<std::string, std::string> seen;
  int count = 0;
  for (const auto& entry : fs::recursive_directory_iterator(fs::path(RPROXY_SOURCE_DIR) / "tests")) {
    if (entry.path().extension() != ".cpp") continue;
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    const std::string source = text.str();
    for (std::sregex_iterator it(source.begin(), source.end(), test_case), end; it != end; ++it) {
      const std::string name = (*it)[1];
      if (name.find("(?:") != std::string::npos) continue;  // the pattern above, quoted in this file
      ++count;
      CAPTURE(entry.path().string());
      CAPTURE(name);
      CHECK(name.find_first_of(";[]") == std::string::npos);
      auto [where, fresh] = seen.emplace(name, entry.path().string());
      CAPTURE(where->second);
      CHECK(fresh);
    }
  }
  CHECK(count > 300);
}
