#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it: install, build, unit + integration tests, the same tests
# again under AddressSanitizer + UndefinedBehaviorSanitizer, and the benchmark harness in smoke mode.
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

bench/run.sh --smoke --rproxy build/rproxy
echo "rproxy: all tests passed"
