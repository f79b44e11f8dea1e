// Replays the fuzz seed corpora and every crash input the fuzzers ever found (fuzz/corpus/<target>/ and
// fuzz/regressions/<target>/) through the fuzz targets' entry functions, in the ordinary build. A fixed bug
// thus stays fixed without clang or libFuzzer, and the targets' invariants are checked on every CI run.
// A violated invariant aborts the test binary (see fuzz_require): stderr names the invariant and doctest's
// crash report names the file being replayed (the INFO below).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz_targets.hpp"

namespace {

namespace fs = std::filesystem;
using Target = int (*)(const std::uint8_t*, std::size_t);

// Files of one directory in name order (a missing directory is empty: not every target has regressions).
std::vector<fs::path> inputs_in(const fs::path& dir) {
  std::vector<fs::path> files;
  if (!fs::is_directory(dir)) return files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

// replay runs every corpus and regression input of target and returns how many corpus files there were.
std::size_t replay(const std::string& name, Target target) {
  const fs::path fuzz_dir = fs::path(RPROXY_SOURCE_DIR) / "fuzz";
  std::size_t corpus = 0;
  for (const char* kind : {"corpus", "regressions"}) {
    for (const auto& file : inputs_in(fuzz_dir / kind / name)) {
      std::ifstream in(file, std::ios::binary);
      REQUIRE_MESSAGE(in, "cannot read " << file.string());
      std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      INFO("replaying " << file.string());
      CHECK(target(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()) == 0);
      if (std::string(kind) == "corpus") ++corpus;
    }
  }
  return corpus;
}

}  // namespace

TEST_CASE("fuzz regressions: request parser corpus and crash inputs") {
  CHECK(replay("request_parser", rproxy::fuzz::fuzz_request_parser) > 20);
}

TEST_CASE("fuzz regressions: response parser corpus and crash inputs") {
  CHECK(replay("response_parser", rproxy::fuzz::fuzz_response_parser) > 20);
}

TEST_CASE("fuzz regressions: chunked decoder corpus and crash inputs") {
  CHECK(replay("chunked_decoder", rproxy::fuzz::fuzz_chunked_decoder) > 20);
}

TEST_CASE("fuzz regressions: scenario loader corpus and crash inputs") {
  CHECK(replay("scenario_loader", rproxy::fuzz::fuzz_scenario_loader) > 10);
}
