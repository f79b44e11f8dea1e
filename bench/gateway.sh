#!/usr/bin/env bash
# Gateway stages against nginx doing the same job, in one run on this machine: gzip compression of a
# 16 KiB HTML page (nginx gzip on, level 6, vs rproxy's compress stage with gzip level 6) and a cache hit
# (nginx proxy_cache vs rproxy --cache), plus plain proxying of the same page for reference. One worker
# each, wrk with 50 keep-alive connections, interleaved rounds, medians printed as requests/s and ratios.
#
# Usage: bench/gateway.sh [--rproxy PATH] [--rounds N] [--duration SECONDS]
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RPROXY="$REPO_ROOT/build/rproxy"
ROUNDS=3
DURATION=5
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rproxy) RPROXY=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    *) echo "usage: bench/gateway.sh [--rproxy PATH] [--rounds N] [--duration SECONDS]" >&2; exit 2 ;;
  esac
done
PATH=$PATH:/usr/sbin
for tool in wrk nginx python3 curl; do
  command -v "$tool" >/dev/null || { echo "bench/gateway.sh: $tool is required (apt-get install wrk nginx-light curl)" >&2; exit 2; }
done
[[ -x $RPROXY ]] || { echo "bench/gateway.sh: no rproxy binary at $RPROXY (build first or pass --rproxy)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/rproxy-gateway-bench.XXXXXX)
chmod 755 "$WORK"  # nginx workers run as www-data when started as root
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P_UP=$(port); P_NG=$(port); P_NGC=$(port); P_RP=$(port); P_RPZ=$(port); P_RPC=$(port)

mkdir -p "$WORK/up/html" "$WORK/ng"
python3 - "$WORK/up/html/page.html" <<'PY'
import sys
rows = "".join(f'<tr><td class="id">{i}</td><td>item {i}</td><td>{i * 37 % 1000}</td></tr>\n' for i in range(400))
open(sys.argv[1], "w").write(("<!doctype html><html><body><table>\n" + rows)[:16384])
PY
common() { printf 'worker_processes 1;\npid %s/nginx.pid;\nerror_log %s/error.log warn;\nevents { worker_connections 8192; }\n' "$1" "$1"; }
paths() { printf '  access_log off;\n  client_body_temp_path %s/cb;\n  proxy_temp_path %s/pt;\n  fastcgi_temp_path %s/ft;\n  uwsgi_temp_path %s/ut;\n  scgi_temp_path %s/st;\n' "$1" "$1" "$1" "$1" "$1"; }
{
  common "$WORK/up"
  echo "http {"
  paths "$WORK/up"
  echo "  include /etc/nginx/mime.types;"
  echo "  server { listen 127.0.0.1:$P_UP backlog=4096; root $WORK/up/html;"
  echo "           location / { add_header Cache-Control \"max-age=600\"; } }"
  echo "}"
} >"$WORK/up/nginx.conf"
{
  common "$WORK/ng"
  echo "http {"
  paths "$WORK/ng"
  echo "  proxy_cache_path $WORK/ng/cache keys_zone=c:10m;"
  echo "  upstream backend { server 127.0.0.1:$P_UP; keepalive 64; }"
  echo "  server { listen 127.0.0.1:$P_NG backlog=4096;"
  echo "    gzip on; gzip_comp_level 6; gzip_proxied any; gzip_vary on;"
  echo "    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
  echo "  server { listen 127.0.0.1:$P_NGC backlog=4096;"
  echo "    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\";"
  echo "                 proxy_cache c; add_header X-Cache \$upstream_cache_status; } }"
  echo "}"
} >"$WORK/ng/nginx.conf"
NGINX=$(command -v nginx)
"$NGINX" -p "$WORK/up" -c "$WORK/up/nginx.conf" -g 'daemon off;' 2>"$WORK/up.err" & PIDS+=($!)
"$NGINX" -p "$WORK/ng" -c "$WORK/ng/nginx.conf" -g 'daemon off;' 2>"$WORK/ng.err" & PIDS+=($!)
UP="http://127.0.0.1:$P_UP"
echo "{\"version\": 1, \"routes\": [{\"upstreams\": [\"$UP\"]}],
       \"stages\": [{\"type\": \"compress\", \"params\": {\"encodings\": [\"gzip\"], \"gzip_level\": 6}}]}" >"$WORK/gzip.json"
"$RPROXY" serve --quiet --workers 1 --listen "127.0.0.1:$P_RP" --to "$UP" 2>"$WORK/rp.err" & PIDS+=($!)
"$RPROXY" serve --quiet --workers 1 --listen "127.0.0.1:$P_RPZ" --scenario "$WORK/gzip.json" 2>"$WORK/rpz.err" & PIDS+=($!)
"$RPROXY" serve --quiet --workers 1 --listen "127.0.0.1:$P_RPC" --to "$UP" --cache 2>"$WORK/rpc.err" & PIDS+=($!)
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$P_UP/page.html" && break; sleep 0.1; done
sleep 0.5
for p in $P_UP $P_NG $P_NGC $P_RP $P_RPZ $P_RPC; do
  curl -sf -o /dev/null "http://127.0.0.1:$p/page.html" || { echo "bench/gateway.sh: port $p does not answer" >&2; cat "$WORK"/*.err "$WORK"/*/error.log >&2; exit 1; }
done
# The compressing targets really compress, and the caches really hit.
for p in $P_NG $P_RPZ; do
  curl -s -D - -o /dev/null -H 'Accept-Encoding: gzip' "http://127.0.0.1:$p/page.html" | grep -qi '^content-encoding: gzip' || { echo "port $p did not gzip" >&2; exit 1; }
done
curl -s -D - -o /dev/null "http://127.0.0.1:$P_NGC/page.html" | grep -qi 'x-cache: HIT' || { echo "nginx cache did not hit" >&2; exit 1; }
curl -s -D - -o /dev/null "http://127.0.0.1:$P_RPC/page.html" | grep -qi 'x-rproxy-cache: HIT' || { echo "rproxy cache did not hit" >&2; exit 1; }

declare -A PORT=([nginx-proxy]=$P_NG [rproxy-proxy]=$P_RP [nginx-gzip]=$P_NG [rproxy-gzip]=$P_RPZ
                 [nginx-cache]=$P_NGC [rproxy-cache]=$P_RPC)
TARGETS=(nginx-proxy rproxy-proxy nginx-gzip rproxy-gzip nginx-cache rproxy-cache)
for r in $(seq 1 "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    args=(-t1 -c50 -d"${DURATION}s")
    [[ $t == *-gzip ]] && args+=(-H "Accept-Encoding: gzip")
    rps=$(wrk "${args[@]}" "http://127.0.0.1:${PORT[$t]}/page.html" | awk '/Requests\/sec/ {print $2}')
    echo "$t $r $rps" >>"$WORK/results"
  done
done
python3 - "$WORK/results" <<'PY'
import sys, statistics, collections
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    t, _, rps = line.split()
    runs[t].append(float(rps))
med = {t: statistics.median(v) for t, v in runs.items()}
print(f"{'16 KiB page':<12} {'nginx req/s':>12} {'rproxy req/s':>13} {'rproxy/nginx':>13}")
for w in ("proxy", "gzip", "cache"):
    n, r = med[f"nginx-{w}"], med[f"rproxy-{w}"]
    print(f"{w:<12} {n:>12.0f} {r:>13.0f} {r / n:>13.2f}")
PY
