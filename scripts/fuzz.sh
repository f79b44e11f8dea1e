#!/usr/bin/env bash
# Fuzzes every libFuzzer target in fuzz/ for a fixed time under ASan + UBSan: scripts/fuzz.sh [seconds]
# (default 30 per target). Builds build-fuzz with clang (CMake option RPROXY_FUZZ), fuzzes a copy of each
# seed corpus in a temporary directory (the checked-in corpus never grows) and prints one summary line per
# target. A crash, leak or timeout input is copied to fuzz/regressions/<target>/, where rproxy_tests replays
# it from then on (tests/unit/fuzz_regressions_test.cpp), and the script exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
seconds=${1:-30}
targets=(request_parser response_parser chunked_decoder scenario_loader)

CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRPROXY_FUZZ=ON >/dev/null
ninja -C build-fuzz "${targets[@]/#/fuzz_}"

dict_for() {
  case $1 in
    scenario_loader) echo "$root/fuzz/scenario.dict" ;;
    *) echo "$root/fuzz/http.dict" ;;
  esac
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=0
summary=()
for t in "${targets[@]}"; do
  dir=$work/$t
  mkdir -p "$dir/artifacts"
  cp -r "fuzz/corpus/$t" "$dir/corpus"
  seeds=$(find "$dir/corpus" -type f | wc -l)
  status=ok
  # Run inside the temporary directory: a scenario stage that names a relative path resolves it there.
  if ! (cd "$dir" && "$root/build-fuzz/fuzz_$t" -max_total_time="$seconds" -max_len=16384 -timeout=10 \
          -dict="$(dict_for "$t")" -print_final_stats=1 -artifact_prefix="$dir/artifacts/" corpus \
          >"$dir/log" 2>&1); then
    status=FAILED
    failed=1
    mkdir -p "fuzz/regressions/$t"
    for a in "$dir"/artifacts/*; do
      [[ -e $a ]] || continue
      cp "$a" "fuzz/regressions/$t/"
      echo "fuzz: $t: kept $(basename "$a") in fuzz/regressions/$t/ (minimise with" \
        "build-fuzz/fuzz_$t -minimize_crash=1 -runs=10000 FILE)" >&2
    done
    echo "---- fuzz_$t log (tail) ----" >&2
    tail -n 60 "$dir/log" >&2
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -n 1)
  grown=$(find "$dir/corpus" -type f | wc -l)
  summary+=("fuzz: $t: ${execs:-?} executions in ${seconds}s, corpus $seeds -> $grown inputs: $status")
done
printf '%s\n' "${summary[@]}"
exit "$failed"
