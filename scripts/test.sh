#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it: install, build, unit + integration tests, the same tests
# again under AddressSanitizer + UndefinedBehaviorSanitizer, a short libFuzzer run of every fuzz target, and
# the benchmark harness in smoke mode.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
jobs=$(nproc)

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build
ctest --test-dir build --output-on-failure -j "$jobs" --timeout 300

cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DRPROXY_SANITIZE=ON >/dev/null
ninja -C build-asan
# Sanitizers make the 1 GiB streaming tests take minutes; they run in the plain build above.
ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan --output-on-failure -j "$jobs" --timeout 300 -LE slow

# libFuzzer (clang) on the request and response parsers, the chunked decoder and the scenario loader, 30 s
# each under ASan + UBSan; a crash input is kept in fuzz/regressions/ and fails the run.
scripts/fuzz.sh 30

bench/run.sh --smoke --rproxy build/rproxy
echo "rproxy: all tests passed"
