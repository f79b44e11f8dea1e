// Entry functions of the fuzz targets. Each fuzz_<name>.cpp defines one; built with RPROXY_LIBFUZZER it also
// defines LLVMFuzzerTestOneInput calling it (the libFuzzer binaries, CMake option RPROXY_FUZZ). Without it
// the same functions are compiled into rproxy_tests, which replays fuzz/corpus and fuzz/regressions through
// them in the ordinary g++ build, so a crash found once stays a regression test for ever.
//
// A target returns 0 and crashes on a violated invariant (fuzz_require): libFuzzer records a crash input,
// and the unit test dies loudly instead of reporting a soft failure nobody reads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace rproxy::fuzz {

int fuzz_request_parser(const std::uint8_t* data, std::size_t size);
int fuzz_response_parser(const std::uint8_t* data, std::size_t size);
int fuzz_chunked_decoder(const std::uint8_t* data, std::size_t size);
int fuzz_scenario_loader(const std::uint8_t* data, std::size_t size);

// fuzz_require aborts with a message when an invariant does not hold. abort (not an exception or a doctest
// CHECK) because the fuzzer only notices signals, and the message says which invariant broke.
inline void fuzz_require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz invariant violated: %s\n", what);
  std::abort();
}

}  // namespace rproxy::fuzz
