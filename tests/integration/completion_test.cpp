// Shell completion: the checked-in scripts are exactly what `rproxy completion SHELL` generates from the
// CLI definition, and the bash script, run in a real bash, offers the right candidates.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "cli.hpp"
#include "completion_gen.hpp"
#include "support/subprocess.hpp"

namespace {

namespace fs = std::filesystem;
using rproxy::test::run_command;

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string generated(const std::string& shell) {
  rproxy::cli::CliState state;
  CLI::App app{"rproxy: a reverse-proxy toolkit for development and CI", "rproxy"};
  rproxy::cli::build_app(app, state);
  return rproxy::cli::completion_script(app, shell);
}

bool have(const std::string& program) {
  return run_command({"sh", "-c", "command -v " + program}).exit_code == 0;
}

// The candidates the registered bash completion offers for `line` (the cursor at its end), sorted.
std::set<std::string> bash_candidates(const fs::path& dir, const std::string& line) {
  const std::string script = std::string(RPROXY_SOURCE_DIR) + "/completions/rproxy.bash";
  const std::string driver = R"(
    cd "$2" || exit 9
    if [ -f /usr/share/bash-completion/bash_completion ]; then
      . /usr/share/bash-completion/bash_completion 2>/dev/null
    fi
    . "$1" || exit 9
    fn=$(complete -p rproxy | sed -n 's/.*-F \([^ ]*\).*/\1/p')
    [ -n "$fn" ] || exit 9
    COMP_LINE=$3
    COMP_POINT=${#COMP_LINE}
    read -ra COMP_WORDS <<<"$COMP_LINE"
    [[ $COMP_LINE == *" " ]] && COMP_WORDS+=("")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMPREPLY=()
    "$fn" rproxy "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
    printf '%s\n' "${COMPREPLY[@]}"
  )";
  auto res = run_command({"bash", "-c", driver, "bash", script, dir.string(), line});
  CAPTURE(line);
  CAPTURE(res.err);
  REQUIRE(res.exit_code == 0);
  std::set<std::string> out;
  for (const auto& l : rproxy::test::lines_of(res.out))
    if (!l.empty()) out.insert(l);
  return out;
}

}  // namespace

TEST_CASE("completion: checked-in scripts are what rproxy completion generates") {
  for (const auto& [shell, file] : rproxy::cli::kCompletionFiles) {
    const fs::path path = fs::path(RPROXY_SOURCE_DIR) / "completions" / file;
    const auto expected = generated(shell);
    CAPTURE(shell);
    REQUIRE(expected.size() > 1000);
    if (read_text(path) != expected)
      FAIL_CHECK("completions/" << file << " is out of date: run `ninja -C build update-completions` (or "
                                << "`build/rproxy completion " << shell << " > completions/" << file
                                << "`) to update it");
    // The subcommand prints the same script.
    auto res = run_command({RPROXY_BINARY, "completion", shell});
    CHECK(res.exit_code == 0);
    CHECK(res.out == expected);
  }
  auto bad = run_command({RPROXY_BINARY, "completion", "tcsh"});
  CHECK(bad.exit_code == 2);
  CHECK(bad.err.find("tcsh") != std::string::npos);
}

TEST_CASE("completion: bash completes subcommands, flags, enumerated values and files") {
  REQUIRE(have("bash"));
  const fs::path dir = fs::temp_directory_path() / ("rproxy-completion-" + std::to_string(::getpid()));
  fs::create_directories(dir / "sub");
  std::ofstream(dir / "a.json") << "{}";
  std::ofstream(dir / "b.har") << "{}";
  using Set = std::set<std::string>;

  auto top = bash_candidates(dir, "rproxy ");
  for (const char* cmd : {"serve", "split", "fault", "record", "replay", "har", "run", "validate", "echo",
                          "ca", "completion", "help"}) {
    CAPTURE(cmd);
    CHECK(top.count(cmd) == 1);
  }
  CHECK(bash_candidates(dir, "rproxy se") == Set{"serve"});
  CHECK(bash_candidates(dir, "rproxy serve --li") == Set{"--listen"});
  CHECK(bash_candidates(dir, "rproxy serve --listen 127.0.0.1:9000 --bal") == Set{"--balance"});
  CHECK(bash_candidates(dir, "rproxy split --sticky ") == Set{"none", "cookie", "ip", "header:", "query:"});
  CHECK(bash_candidates(dir, "rproxy split --sticky co") == Set{"cookie"});
  CHECK(bash_candidates(dir, "rproxy serve --log-format ") == Set{"text", "json"});
  CHECK(bash_candidates(dir, "rproxy serve --balance ") ==
        Set{"round_robin", "least_conn", "random", "weighted"});
  CHECK(bash_candidates(dir, "rproxy record --out x.json --mode ") == Set{"once", "new", "all"});
  CHECK(bash_candidates(dir, "rproxy ca env --shell ") == Set{"sh", "fish"});
  CHECK(bash_candidates(dir, "rproxy har ") == Set{"export", "import"});
  CHECK(bash_candidates(dir, "rproxy completion ") == Set{"bash", "zsh", "fish"});
  // Files: positional arguments and file-taking flags.
  CHECK(bash_candidates(dir, "rproxy run ") == Set{"a.json", "b.har", "sub"});
  CHECK(bash_candidates(dir, "rproxy run a") == Set{"a.json"});
  CHECK(bash_candidates(dir, "rproxy replay --listen 127.0.0.1:0 b") == Set{"b.har"});
  CHECK(bash_candidates(dir, "rproxy serve --scenario ") == Set{"a.json", "b.har", "sub"});
  CHECK(bash_candidates(dir, "rproxy har export a.json ") == Set{"a.json", "b.har", "sub"});
  // A free-text value offers nothing rather than subcommands or flags.
  CHECK(bash_candidates(dir, "rproxy serve --to ").empty());
  fs::remove_all(dir);
}

TEST_CASE("completion: zsh and fish scripts parse") {
  // scripts/deps.sh installs both shells; elsewhere a missing shell is skipped with a message.
  const fs::path dir = RPROXY_SOURCE_DIR "/completions";
  if (have("zsh")) {
    auto res = run_command({"zsh", "-n", (dir / "_rproxy").string()});
    CAPTURE(res.err);
    CHECK(res.exit_code == 0);
  } else {
    MESSAGE("zsh is not installed: its completion script is not parsed");
  }
  if (have("fish")) {
    auto res = run_command({"fish", "-n", (dir / "rproxy.fish").string()});
    CAPTURE(res.err);
    CHECK(res.exit_code == 0);
    // fish can also say what it would complete: `complete -C LINE` prints "candidate<TAB>description".
    auto complete = [&](const std::string& line) {
      auto r = run_command({"fish", "--no-config", "-c",
                            "source " + (dir / "rproxy.fish").string() + "; complete -C '" + line + "'"});
      CAPTURE(r.err);
      CHECK(r.exit_code == 0);
      std::set<std::string> out;
      for (const auto& l : rproxy::test::lines_of(r.out)) out.insert(l.substr(0, l.find('\t')));
      return out;
    };
    CHECK(complete("rproxy se").count("serve") == 1);
    CHECK(complete("rproxy serve --li").count("--listen") == 1);
    CHECK(complete("rproxy split --sticky ") ==
          std::set<std::string>{"none", "cookie", "ip", "header:", "query:"});
    CHECK(complete("rproxy har ") == std::set<std::string>{"export", "import"});
    CHECK(complete("rproxy serve --balance ") ==
          std::set<std::string>{"round_robin", "least_conn", "random", "weighted"});
  } else {
    MESSAGE("fish is not installed: its completion script is not parsed");
  }
}
