#!/usr/bin/env bash
# One command for a newcomer: install, build, then run rproxy on 127.0.0.1:8080 in front of the built-in
# echo upstream on 127.0.0.1:3000. In another terminal: curl http://127.0.0.1:8080/
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DRPROXY_BUILD_TESTS=OFF >/dev/null
ninja -C build-release rproxy
build-release/rproxy echo --listen 127.0.0.1:3000 --name demo &
echo_pid=$!
trap 'kill $echo_pid 2>/dev/null || true' EXIT
exec_status=0
build-release/rproxy serve --to http://127.0.0.1:3000 --access-log - || exec_status=$?
exit $exec_status
