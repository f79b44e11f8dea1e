#!/usr/bin/env bash
# Benchmark `rproxy serve` against nginx and HAProxy as reverse proxies, on this machine, in one run.
# See bench/README.md for what it measures and how to read the output.
#
# Usage: bench/run.sh [--rproxy PATH] [--rounds N] [--duration SECONDS] [--smoke] [--out DIR] [--no-install]
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
LIB="$SCRIPT_DIR/benchlib.py"

usage() {
  cat <<EOF
Usage: bench/run.sh [--rproxy PATH] [--rounds N] [--duration SECONDS] [--smoke] [--out DIR] [--no-install]

  --rproxy PATH      rproxy binary (default: build/rproxy; if absent, a Release build in build-release/)
  --rounds N         interleaved rounds; the table shows medians over them (default 3)
  --duration SEC     seconds per wrk run (default 10)
  --smoke            1 round of 2 s: checks that the harness works; numbers are not meaningful
  --out DIR          where <timestamp>.json/.md (and <timestamp>-logs/) go (default bench/results)
  --no-install       never apt-get install missing tools (peers that are missing are skipped)
  --workloads LIST   only these wrk workloads (comma-separated ids, e.g. ka-1k-c50,lat-1k-r1k)
  --no-scale         skip the scale.py measurements (idle connections, 1 GiB streams, SSE)

Environment: WRK_THREADS (default 1), WRK_TIMEOUT (default 5s).
Exit status: 0 if every proxy answered every run and the table was written; 1 otherwise;
2 for usage errors or missing required tools (wrk, nginx, python3).
EOF
}

RPROXY=""
ROUNDS=3
DURATION=10
SMOKE=0
OUT="$REPO_ROOT/bench/results"
ALLOW_INSTALL=1
ONLY_WORKLOADS=""
RUN_SCALE=1
ROUNDS_SET=0
DURATION_SET=0
WRK_THREADS=${WRK_THREADS:-1}
WRK_TIMEOUT=${WRK_TIMEOUT:-5s}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --rproxy) RPROXY=${2:?--rproxy needs a path}; shift 2 ;;
    --rproxy=*) RPROXY=${1#*=}; shift ;;
    --rounds) ROUNDS=${2:?--rounds needs a number}; ROUNDS_SET=1; shift 2 ;;
    --rounds=*) ROUNDS=${1#*=}; ROUNDS_SET=1; shift ;;
    --duration) DURATION=${2:?--duration needs seconds}; DURATION_SET=1; shift 2 ;;
    --duration=*) DURATION=${1#*=}; DURATION_SET=1; shift ;;
    --smoke) SMOKE=1; shift ;;
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    --out=*) OUT=${1#*=}; shift ;;
    --no-install) ALLOW_INSTALL=0; shift ;;
    --workloads) ONLY_WORKLOADS=${2:?--workloads needs a list}; shift 2 ;;
    --workloads=*) ONLY_WORKLOADS=${1#*=}; shift ;;
    --no-scale) RUN_SCALE=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
if [[ $SMOKE == 1 ]]; then
  [[ $ROUNDS_SET == 1 ]] || ROUNDS=1
  [[ $DURATION_SET == 1 ]] || DURATION=2
fi
# The measurements wrk cannot make (bench/scale.py): full size, or a small smoke size that checks they work.
if [[ $SMOKE == 1 ]]; then
  IDLE_CONNS=${IDLE_CONNS:-300} STREAM_BYTES=${STREAM_BYTES:-33554432} SSE_CLIENTS=${SSE_CLIENTS:-50}
  SSE_SECONDS=${SSE_SECONDS:-2} REPLAY_EXCHANGES=${REPLAY_EXCHANGES:-1000}
else
  IDLE_CONNS=${IDLE_CONNS:-10000} STREAM_BYTES=${STREAM_BYTES:-1073741824} SSE_CLIENTS=${SSE_CLIENTS:-1000}
  SSE_SECONDS=${SSE_SECONDS:-10} REPLAY_EXCHANGES=${REPLAY_EXCHANGES:-10000}
fi
UPLOAD_BYTES=10485760
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --rounds must be a positive integer" >&2; exit 2; }
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --duration must be a positive whole number of seconds" >&2; exit 2; }
[[ $WRK_THREADS =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: WRK_THREADS must be a positive integer" >&2; exit 2; }

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# ------------------------------------------------------------------------------------------ tools
command -v python3 >/dev/null || { echo "run.sh: python3 is required" >&2; exit 2; }

declare -A PKG_OF=([wrk]=wrk [nginx]=nginx-light [haproxy]=haproxy [mitmdump]=mitmproxy)
find_tool() {  # nginx/haproxy live in /usr/sbin, which is not always on PATH
  command -v "$1" 2>/dev/null || { [[ -x /usr/sbin/$1 ]] && echo "/usr/sbin/$1"; } || true
}
missing_pkgs=()
for t in wrk nginx haproxy mitmdump; do
  [[ -n $(find_tool "$t") ]] || missing_pkgs+=("${PKG_OF[$t]}")
done
if [[ ${#missing_pkgs[@]} -gt 0 ]]; then
  if [[ $ALLOW_INSTALL == 1 && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    log "installing missing packages: ${missing_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y "${missing_pkgs[@]}" >/dev/null 2>&1; then
      apt-get update >/dev/null 2>&1 || true
      # one package that cannot be installed must not stop the others
      for p in "${missing_pkgs[@]}"; do
        apt-get install -y "$p" >/dev/null 2>&1 || log "could not install $p with apt-get"
      done
    fi
  else
    log "missing packages (${missing_pkgs[*]}) and installing is not allowed here (--no-install or not root)"
  fi
fi
WRK=$(find_tool wrk)
NGINX=$(find_tool nginx)
HAPROXY=$(find_tool haproxy)
MITMDUMP=$(find_tool mitmdump)
SCALE="$SCRIPT_DIR/scale.py"
SSE_INTERVAL_MS=${SSE_INTERVAL_MS:-100}
[[ -n $WRK ]] || { echo "run.sh: wrk is required (apt-get install wrk)" >&2; exit 2; }
[[ -n $NGINX ]] || { echo "run.sh: nginx is required (apt-get install nginx-light)" >&2; exit 2; }

# ------------------------------------------------------------------------------------------ rproxy
if [[ -z $RPROXY ]]; then
  if [[ -x $REPO_ROOT/build/rproxy ]]; then
    RPROXY=$REPO_ROOT/build/rproxy
  else
    log "no build/rproxy: building a Release binary into build-release/"
    mkdir -p "$REPO_ROOT/build-release"
    build_log="$REPO_ROOT/build-release/bench-build.log"
    if ! { cmake -S "$REPO_ROOT" -B "$REPO_ROOT/build-release" -G Ninja -DCMAKE_BUILD_TYPE=Release \
             -DRPROXY_BUILD_TESTS=OFF && ninja -C "$REPO_ROOT/build-release" rproxy; } >"$build_log" 2>&1; then
      grep -E 'error|FAILED' "$build_log" | head -n 20 >&2 || tail -n 20 "$build_log" >&2
      echo "run.sh: building rproxy failed (full log: $build_log); pass --rproxy PATH to use another binary" >&2
      exit 2
    fi
    RPROXY=$REPO_ROOT/build-release/rproxy
  fi
fi
[[ -x $RPROXY ]] || { echo "run.sh: rproxy binary not found or not executable: $RPROXY" >&2; exit 2; }
RPROXY=$(cd "$(dirname "$RPROXY")" && pwd)/$(basename "$RPROXY")
RPROXY_BUILD=unknown
if [[ -f $(dirname "$RPROXY")/CMakeCache.txt ]]; then
  RPROXY_BUILD=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$(dirname "$RPROXY")/CMakeCache.txt")
  RPROXY_BUILD=${RPROXY_BUILD:-unknown}
fi
[[ $RPROXY_BUILD == Release || $RPROXY_BUILD == RelWithDebInfo || $RPROXY_BUILD == unknown ]] ||
  log "warning: $RPROXY is a $RPROXY_BUILD build; numbers will not represent a release"

# ------------------------------------------------------------------------------------------ limits
# 1000 client connections plus as many upstream ones per proxy, plus wrk's own sockets.
want_nofile=65536
hard=$(ulimit -Hn)
if [[ $hard != unlimited && $hard -lt $want_nofile ]]; then
  ulimit -Hn "$want_nofile" 2>/dev/null || want_nofile=$hard
fi
ulimit -n "$want_nofile" 2>/dev/null || true
if [[ $(ulimit -n) != unlimited && $(ulimit -n) -lt 4096 ]]; then
  log "warning: open-file limit is $(ulimit -n); the 1000-connection workload may fail"
fi
# HAProxy refuses to start when its maxconn needs more descriptors than the limit allows (2 per
# connection); some containers cannot raise the hard limit past 20000, so its maxconn follows the limit.
NOFILE=$(ulimit -n); [[ $NOFILE == unlimited ]] && NOFILE=1048576
HAPROXY_MAXCONN=$(( (NOFILE - 200) / 2 )); (( HAPROXY_MAXCONN > 32768 )) && HAPROXY_MAXCONN=32768

# ------------------------------------------------------------------------------------------ workspace and cleanup
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rproxy-bench.XXXXXX")
TS=$(date -u +%Y%m%dT%H%M%SZ)
PIDS=()
NAMES=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$WORK/www" "$WORK/logs" "$WORK/raw" "$WORK/upstream" "$WORK/nginx"
head -c 1024 /dev/zero | tr '\0' 'a' >"$WORK/www/1k"
head -c 1048576 /dev/zero | tr '\0' 'b' >"$WORK/www/1m"
truncate -s "$STREAM_BYTES" "$WORK/www/big"  # sparse: the upstream reads it from the page cache
# mktemp makes a 0700 dir; nginx workers run as an unprivileged user when started as root
chmod 755 "$WORK" "$WORK/www" && chmod 644 "$WORK/www/1k" "$WORK/www/1m"
PROBLEMS="$WORK/problems.txt"; : >"$PROBLEMS"
SKIPPED="$WORK/skipped.tsv"; : >"$SKIPPED"
failed=0

read -r P_UP P_NGINX P_HAPROXY P_RP1 P_RP2 P_RPS P_RPF P_NGINX_TLS P_HAPROXY_TLS P_RP_TLS \
  P_MITM P_RPREC P_RPREP P_RECORDER P_SSE < <(python3 "$LIB" ports 15)

# One certificate for every TLS terminator: rproxy's local CA in a scratch data directory (P-256 leaf).
CA_DIR="$WORK/ca"
RPROXY_DATA_DIR="$CA_DIR" "$RPROXY" ca path >/dev/null
CERT="$CA_DIR/localhost.pem" KEY="$CA_DIR/localhost-key.pem" CA_CERT="$CA_DIR/ca.pem"
cat "$CERT" "$KEY" >"$WORK/haproxy.pem"
chmod 755 "$CA_DIR" && chmod 644 "$CERT" "$KEY"  # nginx reads them as its unprivileged worker

# start NAME LOGBASE CMD...: run CMD in the background, remember its pid under NAME
start() {
  local name=$1 logbase=$2; shift 2
  "$@" >"$logbase.out" 2>"$logbase.err" &
  PIDS+=("$!")
  NAMES+=("$name")
  eval "PID_${name//-/_}=$!"
}
# make_replay_cassette DIR: record GET /1k and GET /r/0 .. /r/N-1 through a temporary `rproxy record`
make_replay_cassette() {
  local dir=$1 ok=0
  start recorder "$WORK/logs/recorder" "$RPROXY" record --listen "127.0.0.1:$P_RECORDER" --workers 1 \
    --to "http://127.0.0.1:$P_UP" --out "$dir" --mode all --quiet
  if python3 "$LIB" wait "127.0.0.1:$P_RECORDER" 10 &&
     python3 "$LIB" prime "http://127.0.0.1:$P_RECORDER" "$REPLAY_EXCHANGES"; then ok=1; fi
  local p; p=$(pid_of recorder)
  kill -TERM "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || ok=0
  if [[ $ok == 1 ]] && python3 "$LIB" count-interactions "$dir" "$((REPLAY_EXCHANGES + 2))"; then
    log "recorded $((REPLAY_EXCHANGES + 2)) exchanges for rproxy-replay"
    return 0
  fi
  local msg="could not record the replay cassette: $(tail -n 3 "$WORK/logs/recorder.err" | tr '\n' ' ')"
  log "$msg"; echo "$msg" >>"$PROBLEMS"; failed=1
  return 1
}
pid_of() { local v="PID_${1//-/_}"; echo "${!v:-}"; }
alive() { local p; p=$(pid_of "$1"); [[ -n $p ]] && kill -0 "$p" 2>/dev/null; }

# nginx refuses to start if it cannot write its temp dirs: keep every path inside the prefix.
nginx_common() {  # $1 = prefix dir
  cat <<EOF
worker_processes 1;
worker_rlimit_nofile 65536;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 32768; }
EOF
}
nginx_http_paths() {
  cat <<EOF
  client_body_temp_path $1/client_body;
  proxy_temp_path $1/proxy;
  fastcgi_temp_path $1/fastcgi;
  uwsgi_temp_path $1/uwsgi;
  scgi_temp_path $1/scgi;
  access_log off;
  keepalive_timeout 75s;
  keepalive_requests 1000000;
EOF
}

# Upstream: static files, keep-alive, 1 worker.
{
  nginx_common "$WORK/upstream"
  echo "http {"
  nginx_http_paths "$WORK/upstream"
  cat <<EOF
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  server {
    listen 127.0.0.1:$P_UP backlog=4096;
    root $WORK/www;
    location / { }
    # 10,000 distinct URLs for the replay workload, all the 1 KiB file
    location /r/ { try_files /1k =404; }
    # an upload sink that reads the whole body before it answers (a bare `return` answers first and
    # discards the body afterwards, which stalls keep-alive clients that send the next request at once):
    # the body is read (in memory up to 16 MiB) and a bodiless GET of /1k is answered by this same nginx
    location /sink {
      client_max_body_size 0;
      client_body_buffer_size 16m;
      proxy_pass http://127.0.0.1:$P_UP/1k;
      proxy_method GET;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
    # the SSE generator (bench/scale.py sse-upstream), unbuffered
    location /sse {
      proxy_pass http://127.0.0.1:$P_SSE;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 1h;
    }
  }
}
EOF
} >"$WORK/upstream/nginx.conf"

# nginx as the reverse proxy: 1 worker, upstream keepalive 64.
{
  nginx_common "$WORK/nginx"
  echo "http {"
  nginx_http_paths "$WORK/nginx"
  cat <<EOF
  tcp_nodelay on;
  client_max_body_size 0;
  proxy_read_timeout 1h;
  upstream backend {
    server 127.0.0.1:$P_UP;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$P_NGINX backlog=4096;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
  server {
    listen 127.0.0.1:$P_NGINX_TLS ssl backlog=4096;
    ssl_certificate $CERT;
    ssl_certificate_key $KEY;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
} >"$WORK/nginx/nginx.conf"

cat >"$WORK/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn $HAPROXY_MAXCONN
defaults
  mode http
  maxconn $HAPROXY_MAXCONN
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 75s
  http-reuse always
frontend fe
  bind 127.0.0.1:$P_HAPROXY
  default_backend be
frontend fe_tls
  bind 127.0.0.1:$P_HAPROXY_TLS ssl crt $WORK/haproxy.pem ssl-min-ver TLSv1.2
  default_backend be
backend be
  server up 127.0.0.1:$P_UP
EOF

# ------------------------------------------------------------------------------------------ start everything
VERSIONS="$WORK/versions.tsv"
{
  printf 'rproxy\t%s\n' "$("$RPROXY" --version 2>&1 | head -1)"
  printf 'nginx\t%s\n' "$("$NGINX" -v 2>&1 | head -1)"
  [[ -n $HAPROXY ]] && printf 'haproxy\t%s\n' "$("$HAPROXY" -v 2>&1 | head -1)"
  printf 'wrk\t%s\n' "$("$WRK" -v 2>&1 | head -1 | sed 's/ *Copyright.*//')"
  [[ -n $MITMDUMP ]] && printf 'mitmproxy\t%s\n' "$("$MITMDUMP" --version 2>&1 | head -1)"
} >"$VERSIONS"

# The SSE generator behind the upstream nginx (its /sse), for the sse-fanout measurement.
start sse-upstream "$WORK/logs/sse-upstream" python3 "$SCALE" sse-upstream --port "$P_SSE" --interval-ms "$SSE_INTERVAL_MS"

start upstream "$WORK/logs/upstream" "$NGINX" -p "$WORK/upstream" -e "$WORK/upstream/error.log" \
  -c "$WORK/upstream/nginx.conf" -g 'daemon off;'
start nginx "$WORK/logs/nginx" "$NGINX" -p "$WORK/nginx" -e "$WORK/nginx/error.log" \
  -c "$WORK/nginx/nginx.conf" -g 'daemon off;'
if [[ -n $HAPROXY ]]; then
  start haproxy "$WORK/logs/haproxy" "$HAPROXY" -db -f "$WORK/haproxy.cfg"
else
  printf 'haproxy\tnot installed%s\n' "$([[ $ALLOW_INSTALL == 1 ]] && echo ' and apt-get install haproxy failed' || echo ' (--no-install)')" >>"$SKIPPED"
  log "HAProxy is not available: skipping that peer"
fi
if [[ -n $MITMDUMP ]]; then
  # mitmproxy in reverse-proxy mode with its defaults (it reads whole bodies before passing them on)
  start mitmproxy "$WORK/logs/mitmproxy" "$MITMDUMP" --mode "reverse:http://127.0.0.1:$P_UP" \
    --listen-host 127.0.0.1 --listen-port "$P_MITM" --set "confdir=$WORK/mitmproxy" -q
else
  printf 'mitmproxy\tnot installed%s\n' "$([[ $ALLOW_INSTALL == 1 ]] && echo ' and apt-get install mitmproxy failed' || echo ' (--no-install)')" >>"$SKIPPED"
  log "mitmproxy is not available: skipping that peer"
fi
# --max-conns: the default (1024) is a safety limit; the idle measurement holds 10,000 connections.
start rproxy "$WORK/logs/rproxy" "$RPROXY" serve --listen "127.0.0.1:$P_RP1" --to "http://127.0.0.1:$P_UP" --workers 1 \
  --max-conns 20000
start rproxy-2w "$WORK/logs/rproxy-2w" "$RPROXY" serve --listen "127.0.0.1:$P_RP2" --to "http://127.0.0.1:$P_UP" \
  --max-conns 20000
# The cost of the record stage: every exchange written to a cassette (a directory in the scratch space).
start rproxy-record "$WORK/logs/rproxy-record" "$RPROXY" record --listen "127.0.0.1:$P_RPREC" --workers 1 \
  --to "http://127.0.0.1:$P_UP" --out "$WORK/recorded/" --mode all --quiet
# The cost of replay: answers from a recording of $REPLAY_EXCHANGES distinct requests, made here first.
if make_replay_cassette "$WORK/cassette/"; then
  start rproxy-replay "$WORK/logs/rproxy-replay" "$RPROXY" replay --listen "127.0.0.1:$P_RPREP" --workers 1 \
    "$WORK/cassette/" --after-last repeat_last --quiet
fi
# The cost of the split stage: 1 worker, two variants 90/10 (both on the one upstream).
start rproxy-split "$WORK/logs/rproxy-split" "$RPROXY" split --listen "127.0.0.1:$P_RPS" --workers 1 \
  --to "a=http://127.0.0.1:$P_UP" --to "b=http://127.0.0.1:$P_UP" --weights 90,10 --quiet
# The cost of the fault stage: 1 worker, three rules evaluated (drawn) on every request that never fire.
start rproxy-fault "$WORK/logs/rproxy-fault" "$RPROXY" fault --listen "127.0.0.1:$P_RPF" --workers 1 \
  --to "http://127.0.0.1:$P_UP" --abort 503@0% --reset 0% --latency 5ms@0% --quiet
# TLS termination, against nginx and HAProxy terminating TLS with the same certificate.
start rproxy-tls "$WORK/logs/rproxy-tls" "$RPROXY" serve --listen "127.0.0.1:$P_RP_TLS" --workers 1 \
  --tls-cert "$CERT" --tls-key "$KEY" --to "http://127.0.0.1:$P_UP" --quiet

declare -A PORT=([direct]=$P_UP [nginx]=$P_NGINX [haproxy]=$P_HAPROXY [mitmproxy]=$P_MITM [rproxy]=$P_RP1
                 [rproxy-2w]=$P_RP2 [rproxy-split]=$P_RPS [rproxy-fault]=$P_RPF [rproxy-record]=$P_RPREC
                 [rproxy-replay]=$P_RPREP [nginx-tls]=$P_NGINX_TLS [haproxy-tls]=$P_HAPROXY_TLS
                 [rproxy-tls]=$P_RP_TLS)
declare -A PROC=([direct]=upstream [nginx]=nginx [haproxy]=haproxy [mitmproxy]=mitmproxy [rproxy]=rproxy
                 [rproxy-2w]=rproxy-2w [rproxy-split]=rproxy-split [rproxy-fault]=rproxy-fault
                 [rproxy-record]=rproxy-record [rproxy-replay]=rproxy-replay [nginx-tls]=nginx
                 [haproxy-tls]=haproxy [rproxy-tls]=rproxy-tls)
CANDIDATES=(direct nginx haproxy mitmproxy rproxy rproxy-2w rproxy-split rproxy-fault rproxy-record rproxy-replay
            nginx-tls haproxy-tls rproxy-tls)
# base_url TARGET: how wrk and the check reach it (https for the TLS terminators)
base_url() { if [[ $1 == *-tls ]]; then echo "https://127.0.0.1:${PORT[$1]}"; else echo "http://127.0.0.1:${PORT[$1]}"; fi; }
TARGETS=()
for t in "${CANDIDATES[@]}"; do
  p=${PROC[$t]}
  [[ -n $(pid_of "$p") ]] || continue
  if ! python3 "$LIB" wait "127.0.0.1:${PORT[$t]}" 10 || ! alive "$p"; then
    msg="$t did not start listening on 127.0.0.1:${PORT[$t]}: $(tail -n 5 "$WORK/logs/$p.err" | tr '\n' ' ')"
    log "$msg"; echo "$msg" >>"$PROBLEMS"; failed=1
    [[ $t == direct ]] && { echo "run.sh: the upstream did not start; nothing to measure" >&2; exit 1; }
    continue
  fi
  ok=1
  for f in 1k:1024 1m:1048576; do
    if ! err=$(python3 "$LIB" check "$(base_url "$t")/${f%%:*}" "${f#*:}" "$CA_CERT" 2>&1); then
      msg="$t did not answer GET /${f%%:*} correctly: $err"
      log "$msg"; echo "$msg" >>"$PROBLEMS"; ok=0; failed=1
    fi
  done
  if [[ $ok == 1 ]]; then
    TARGETS+=("$t")
  elif [[ $t == direct ]]; then
    echo "run.sh: the upstream does not serve the test files; nothing to measure" >&2; exit 1
  fi
done
[[ $failed == 0 ]] || log "some proxies did not answer; they are left out of the table"
log "rproxy: $RPROXY ($RPROXY_BUILD); peers: ${TARGETS[*]}"
log "ports: $(for t in "${CANDIDATES[@]}"; do printf '%s=%s ' "$t" "${PORT[$t]}"; done)upstream-sse=$P_SSE"

# ------------------------------------------------------------------------------------------ workloads
# wrk scripts: a 10 MiB upload, a fixed pace per connection, 10,000 distinct URLs
cat >"$WORK/upload.lua" <<EOF
wrk.method = "POST"
wrk.body = string.rep("u", $UPLOAD_BYTES)
wrk.headers["Content-Type"] = "application/octet-stream"
EOF
cat >"$WORK/paced.lua" <<'EOF'
-- each connection waits 10 ms after every response: 10 connections give about 1,000 requests/s
function delay() return 10 end
EOF
cat >"$WORK/replay.lua" <<EOF
local n = $REPLAY_EXCHANGES
local seed = 12345
function setup(thread) thread:set("seed", seed); seed = seed + 1 end
function init(args) math.randomseed(seed) end
function request() return wrk.format(nil, "/r/" .. math.random(0, n - 1)) end
EOF

# id, path, connections, wrk threads, wrk script ("-" none), extra header ("-" none), request body bytes, description
WORKLOADS="$WORK/workloads.tsv"
cat >"$WORKLOADS" <<EOF
ka-1k-c50	/1k	50	$WRK_THREADS	-	-	0	keep-alive GETs of a 1 KiB static file over 50 connections (throughput at moderate concurrency)
1k-c1000	/1k	1000	$WRK_THREADS	-	-	0	keep-alive GETs of a 1 KiB static file over 1000 connections (tail latency under many connections)
close-1k-c50	/1k	50	$WRK_THREADS	-	Connection: close	0	a new connection for every GET of 1 KiB, 50 at a time (accept and connection set-up cost)
1m-c10	/1m	10	$WRK_THREADS	-	-	0	keep-alive GETs of a 1 MiB static file over 10 connections (bulk transfer; read MB/s)
up-10m-c4	/sink	4	$WRK_THREADS	upload.lua	-	$UPLOAD_BYTES	keep-alive POSTs of 10 MiB over 4 connections (uploads; MB/s is the request bodies moved)
lat-1k-r1k	/1k	10	$WRK_THREADS	paced.lua	-	0	10 connections, each pausing 10 ms between GETs (about 1,000 req/s): the latency a proxy adds at moderate load; compare p50/p99 with direct
replay-10k-c50	/r/	50	$WRK_THREADS	replay.lua	-	0	keep-alive GETs spread at random over $REPLAY_EXCHANGES distinct URLs: rproxy-replay answers from its index of a recording with that many exchanges, rproxy serve proxies them
EOF
if [[ -n $ONLY_WORKLOADS ]]; then
  for w in ${ONLY_WORKLOADS//,/ }; do
    grep -q "^$w"$'\t' "$WORKLOADS" || { echo "run.sh: unknown workload: $w (see bench/README.md)" >&2; exit 2; }
  done
  awk -F'\t' -v only=",$ONLY_WORKLOADS," 'index(only, "," $1 ",")' "$WORKLOADS" >"$WORKLOADS.only"
  mv "$WORKLOADS.only" "$WORKLOADS"
fi
mapfile -t WL_LINES <"$WORKLOADS"

# runs_on WORKLOAD TARGET: which targets each workload is measured on (stage rows show one stage's cost;
# peers run what they can do as configured here)
runs_on() {
  local w=$1 t=$2
  case $t in
    *-tls) [[ $w == ka-1k-c50 || $w == 1m-c10 ]] ;;  # 1,000 fresh handshakes would measure wrk's crypto
    rproxy-2w) [[ $w == ka-1k-c50 || $w == 1k-c1000 || $w == 1m-c10 ]] ;;
    rproxy-split | rproxy-fault | rproxy-record) [[ $w == ka-1k-c50 || $w == lat-1k-r1k ]] ;;
    rproxy-replay) [[ $w == ka-1k-c50 || $w == lat-1k-r1k || $w == replay-10k-c50 ]] ;;
    mitmproxy) [[ $w == ka-1k-c50 || $w == close-1k-c50 || $w == lat-1k-r1k || $w == 1m-c10 ]] ;;
    haproxy) [[ $w != replay-10k-c50 ]] ;;
    *) true ;;
  esac
}

RUNS="$WORK/runs.tsv"; : >"$RUNS"
run_wrk() {  # out path conns threads duration target [script|-] [header|-]
  local out=$1 path=$2 conns=$3 threads=$4 dur=$5 target=$6 script=${7:--} header=${8:--}
  local extra=()
  [[ $script != - ]] && extra+=(-s "$WORK/$script")
  [[ $header != - ]] && extra+=(-H "$header")
  set +e
  timeout $((dur + 60)) "$WRK" -t"$threads" -c"$conns" -d"${dur}s" --timeout "$WRK_TIMEOUT" --latency \
    "${extra[@]}" "$(base_url "$target")$path" >"$out" 2>&1
  local rc=$?
  set -e
  return $rc
}

declare -A DEATH_NOTED=()
note_death() {  # record once, with exit status and the last stderr lines, that a server exited
  local t=$1 when=$2 p st
  [[ -n ${DEATH_NOTED[$t]:-} ]] && return 0
  DEATH_NOTED[$t]=1
  failed=1
  p=$(pid_of "${PROC[$t]}")
  wait "$p" 2>/dev/null && st=0 || st=$?
  local sig=""
  [[ $st -gt 128 ]] && sig=", signal $((st - 128)) ($(kill -l $((st - 128)) 2>/dev/null || echo '?'))"
  local msg="$t exited $when (exit status $st$sig); last stderr: $(tail -n 5 "$WORK/logs/${PROC[$t]}.err" | tr '\n' ' ')"
  log "$msg"; echo "$msg" >>"$PROBLEMS"
}

GAP=1; [[ $SMOKE == 1 ]] && GAP=0.3
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${LOAD_START%% *}" -v c="$(nproc)" 'BEGIN {exit !(l > 0.25 * c)}'; then
  msg="machine was busy when the benchmark started (load average $LOAD_START on $(nproc) CPUs): numbers are noisy"
  log "warning: $msg"; echo "$msg" >>"$PROBLEMS"
fi
log "warm-up: 1 s per proxy"
for t in "${TARGETS[@]}"; do run_wrk "$WORK/raw/warmup-$t.txt" /1k 50 1 1 "$t" || true; done

total=0
for wl in "${WL_LINES[@]}"; do
  for t in "${TARGETS[@]}"; do runs_on "${wl%%$'\t'*}" "$t" && total=$((total + ROUNDS)); done
done
n=0
for ((round = 1; round <= ROUNDS; round++)); do
  # rotate the proxy order each round so no proxy always runs right after the same neighbour
  order=()
  for ((i = 0; i < ${#TARGETS[@]}; i++)); do
    order+=("${TARGETS[$(( (i + round - 1) % ${#TARGETS[@]} ))]}")
  done
  for wl in "${WL_LINES[@]}"; do
    IFS=$'\t' read -r wid wpath wconns wthreads wscript wheader _ <<<"$wl"
    for t in "${order[@]}"; do
      runs_on "$wid" "$t" || continue
      n=$((n + 1))
      raw="$WORK/raw/r$round-$wid-$t.txt"
      if ! alive "${PROC[$t]}"; then
        note_death "$t" "before round $round $wid"
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$wid" "$t" -1 "process-exited" "$raw" >>"$RUNS"
        log "[$n/$total] round $round $wid $t: skipped, the process has exited"
        continue
      fi
      rc=0
      run_wrk "$raw" "$wpath" "$wconns" "$wthreads" "$DURATION" "$t" "$wscript" "$wheader" || rc=$?
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$wid" "$t" "$rc" "ran" "$raw" >>"$RUNS"
      summary=$(awk '/Requests\/sec/ {r=$2} / 99%/ {p=$2} END {printf "%s req/s, p99 %s", r, p}' "$raw")
      errs=$(grep -E 'Socket errors|Non-2xx|unable to' "$raw" | tr '\n' ' ' || true)
      log "[$n/$total] round $round $wid $t: $summary${errs:+  !! $errs}"
      alive "${PROC[$t]}" || note_death "$t" "during round $round $wid"
      # A proxy may still be busy after wrk stops (mitmproxy drains its backlog, a recorder saves): the
      # next target must not share the CPU with it.
      python3 "$LIB" settle 15 "$(pid_of "${PROC[$t]}")" "$(pid_of upstream)" || log "$t was still busy 15 s after its run"
      sleep "$GAP"
    done
  done
done

# ------------------------------------------------------------------------------------------ scale (bench/scale.py)
# Memory with many idle connections, 1 GiB each way, SSE fan-out: one target at a time, the others idle.
SCALE_RUNS="$WORK/scale.tsv"; : >"$SCALE_RUNS"
SCALE_TARGETS=()
[[ $RUN_SCALE == 1 ]] && for t in direct nginx haproxy rproxy; do
  [[ " ${TARGETS[*]} " == *" $t "* ]] && SCALE_TARGETS+=("$t")
done
scale_run() {  # MODE TARGET ARGS...: one scale.py measurement, its JSON kept in raw/
  local mode=$1 t=$2; shift 2
  local out="$WORK/raw/scale-$mode-$t.json" rc=0
  if ! alive "${PROC[$t]}"; then
    note_death "$t" "before the $mode measurement"; return 0
  fi
  timeout 600 python3 "$SCALE" "$mode" "$@" >"$out" 2>"$WORK/raw/scale-$mode-$t.err" || rc=$?
  printf '%s\t%s\t%s\t%s\n' "$mode" "$t" "$rc" "$out" >>"$SCALE_RUNS"
  log "scale $mode $t: $(python3 "$LIB" scale-summary "$out" 2>/dev/null || echo "no result (exit $rc)")"
  [[ $rc == 0 ]] || echo "scale.py $mode on $t failed (exit $rc): $(tail -n 3 "$WORK/raw/scale-$mode-$t.err" | tr '\n' ' ')" >>"$PROBLEMS"
  alive "${PROC[$t]}" || note_death "$t" "during the $mode measurement"
}
log "scale: $IDLE_CONNS idle connections, $STREAM_BYTES bytes each way, SSE to $SSE_CLIENTS clients for $SSE_SECONDS s"
for t in "${SCALE_TARGETS[@]}"; do
  conns=$IDLE_CONNS
  # HAProxy holds at most its maxconn (bounded by the descriptor limit above)
  [[ $t == haproxy ]] && (( conns > HAPROXY_MAXCONN - 50 )) && conns=$(( HAPROXY_MAXCONN - 50 ))
  scale_run idle "$t" --url "$(base_url "$t")/1k" --pid "$(pid_of "${PROC[$t]}")" --conns "$conns" \
    --hold "$([[ $SMOKE == 1 ]] && echo 1 || echo 5)" --probes "$([[ $SMOKE == 1 ]] && echo 50 || echo 300)"
  sleep "$GAP"
done
for t in "${SCALE_TARGETS[@]}"; do
  scale_run stream "$t" --base "$(base_url "$t")" --pid "$(pid_of "${PROC[$t]}")" --size "$STREAM_BYTES" \
    --download-path /big --upload-path /sink
  sleep "$GAP"
done
if [[ ${#SCALE_TARGETS[@]} == 0 ]]; then
  :
elif alive sse-upstream; then
  for t in "${SCALE_TARGETS[@]}"; do
    scale_run sse "$t" --url "$(base_url "$t")/sse" --clients "$SSE_CLIENTS" --seconds "$SSE_SECONDS" --interval-ms "$SSE_INTERVAL_MS" \
      --pid "$(pid_of "${PROC[$t]}")"
    sleep "$GAP"
  done
else
  echo "the SSE generator (scale.py sse-upstream) is not running: $(tail -n 3 "$WORK/logs/sse-upstream.err" | tr '\n' ' ')" >>"$PROBLEMS"
  failed=1
fi

# ------------------------------------------------------------------------------------------ report
for t in "${TARGETS[@]}"; do  # stderr lines from the proxies are worth reading even when nothing crashed
  p=${PROC[$t]}
  if [[ -s $WORK/logs/$p.err ]] && grep -qvE '^rproxy: (listening on|  /|fault seed)' "$WORK/logs/$p.err"; then
    c=$(wc -l <"$WORK/logs/$p.err")
    echo "$t wrote $c line(s) to stderr; last: $(tail -n 3 "$WORK/logs/$p.err" | tr '\n' ' ')" >>"$PROBLEMS"
  fi
done

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
mkdir -p "$OUT/$TS-logs"
cp -r "$WORK/raw" "$WORK/logs" "$WORK/runs.tsv" "$OUT/$TS-logs/" 2>/dev/null || true
cp "$WORK/upstream/nginx.conf" "$OUT/$TS-logs/upstream-nginx.conf"
cp "$WORK/nginx/nginx.conf" "$OUT/$TS-logs/proxy-nginx.conf"
cp "$WORK/upstream/error.log" "$OUT/$TS-logs/upstream-error.log" 2>/dev/null || true
cp "$WORK/nginx/error.log" "$OUT/$TS-logs/proxy-nginx-error.log" 2>/dev/null || true
[[ -n $HAPROXY ]] && cp "$WORK/haproxy.cfg" "$OUT/$TS-logs/haproxy.cfg"
# the runs file names temp paths: point it at the copies
sed -i "s#$WORK/raw/#$OUT/$TS-logs/raw/#" "$OUT/$TS-logs/runs.tsv"

BENCH_TS=$TS BENCH_ROUNDS=$ROUNDS BENCH_DURATION=$DURATION BENCH_SMOKE=$SMOKE \
BENCH_WRK_THREADS=$WRK_THREADS BENCH_WRK_TIMEOUT=$WRK_TIMEOUT BENCH_CPUS=$(nproc) BENCH_KERNEL=$(uname -r) \
BENCH_RPROXY=$RPROXY BENCH_RPROXY_BUILD=$RPROXY_BUILD BENCH_PROXIES="${TARGETS[*]}" \
BENCH_WORKLOADS_FILE=$WORKLOADS BENCH_SKIPPED_FILE=$SKIPPED BENCH_VERSIONS_FILE=$VERSIONS \
BENCH_PROBLEMS_FILE=$PROBLEMS BENCH_LOAD_START=$LOAD_START BENCH_LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)" \
  python3 "$LIB" meta "$WORK/meta.json"

rc=0
sed "s#$WORK/raw/#$OUT/$TS-logs/raw/#" "$SCALE_RUNS" >"$OUT/$TS-logs/scale.tsv"
python3 "$LIB" report --runs "$OUT/$TS-logs/runs.tsv" --scale "$OUT/$TS-logs/scale.tsv" --meta "$WORK/meta.json" \
  --json "$OUT/$TS.json" --md "$OUT/$TS.md" || rc=$?
echo
echo "wrote $OUT/$TS.json, $OUT/$TS.md and raw wrk/proxy logs in $OUT/$TS-logs/"
if [[ $rc != 0 || $failed != 0 ]]; then
  echo "run.sh: FAILED: a proxy did not answer or exited (see 'Problems seen' above)" >&2
  exit 1
fi
exit 0
