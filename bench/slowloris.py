#!/usr/bin/env python3
"""Latency of a normal client while 500 slowloris clients trickle request heads: rproxy vs nginx.

Usage: bench/slowloris.py [--rproxy build/rproxy] [--nginx /usr/sbin/nginx] [--tricklers 500]
                          [--interval 0.3] [--requests 3000] [--json OUT]

Both proxies run with one worker in front of the same `rproxy echo` upstream, with the same whole-head
deadline (--head-timeout, default 10 s as rproxy's default; nginx client_header_timeout). For each proxy: a normal client sends
--requests sequential keep-alive GETs and records each latency (idle), then a separate process opens the
tricklers (one header byte each per --interval, never finishing the head) and the client measures again.
It prints p50/p99 for both phases and the ratio. The client is a raw socket in this process; the
tricklers live in their own process, so they never hold this interpreter's lock during a measurement.
This is a benchmark, not a test: it judges nothing and exits 0 when every request was answered.
"""

import argparse
import json
import os
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def trickle(port, n, interval, seconds):
    """Runs in the child process: n sockets, one header byte each per interval, for seconds."""
    head = b"GET /slow HTTP/1.1\r\nHost: bench\r\nX-Pad: " + b"a" * 4000
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks.append([s, 0])
    print("ready", flush=True)
    end = time.monotonic() + seconds
    answered = 0
    while time.monotonic() < end:
        tick = time.monotonic()
        for entry in socks:
            s, at = entry
            if s is None:
                continue
            try:
                s.send(head[at:at + 1])
                entry[1] = (at + 1) % len(head)
            except OSError:
                # The proxy gave up on it (408 and close): open a fresh trickler to keep n going.
                answered += 1
                s.close()
                try:
                    fresh = socket.create_connection(("127.0.0.1", port))
                    fresh.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    fresh.setblocking(False)
                    entry[0], entry[1] = fresh, 0
                except OSError:
                    entry[0] = None
        time.sleep(max(0.0, interval - (time.monotonic() - tick)))
    print(f"closed-by-proxy {answered}", flush=True)


def measure(port, requests):
    """Sequential keep-alive GETs; returns latencies in ms (raises if any request fails)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    req = b"GET /bench HTTP/1.1\r\nHost: bench\r\n\r\n"
    out = []
    buf = b""
    for _ in range(requests):
        t0 = time.perf_counter()
        s.sendall(req)
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                head = buf[:end].decode("latin-1").lower()
                length = 0
                for line in head.split("\r\n")[1:]:
                    if line.startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                if len(buf) >= end + 4 + length:
                    if not head.startswith("http/1.1 200"):
                        raise RuntimeError("unexpected answer: " + head.split("\r\n")[0])
                    buf = buf[end + 4 + length:]
                    break
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed")
            buf += chunk
        out.append((time.perf_counter() - t0) * 1000.0)
    s.close()
    return out


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p / 100.0))]


def run_one(name, port, args):
    measure(port, 200)  # warm up
    idle = measure(port, args.requests)
    child = subprocess.Popen([sys.executable, __file__, "--trickle-child", str(port), str(args.tricklers),
                              str(args.interval), str(args.trickle_seconds)],
                             stdout=subprocess.PIPE, text=True)
    if child.stdout.readline().strip() != "ready":
        raise RuntimeError("trickler did not start")
    time.sleep(1.0)
    loaded = measure(port, args.requests)
    child.send_signal(signal.SIGTERM)
    child.wait()
    row = {"proxy": name, "idle_p50_ms": statistics.median(idle), "idle_p99_ms": pct(idle, 99),
           "trickle_p50_ms": statistics.median(loaded), "trickle_p99_ms": pct(loaded, 99)}
    row["p99_ratio"] = row["trickle_p99_ms"] / row["idle_p99_ms"]
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rproxy", default="build/rproxy")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    ap.add_argument("--tricklers", type=int, default=500)
    ap.add_argument("--interval", type=float, default=0.3)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--trickle-seconds", type=float, default=60.0)
    ap.add_argument("--head-timeout", type=int, default=10,
                    help="whole-head deadline in seconds for both proxies; below the measuring time, the "
                         "tricklers' 408s and reconnects happen during the measurement")
    ap.add_argument("--json")
    ap.add_argument("--trickle-child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.trickle_child:
        port, n, interval, seconds = args.trickle_child
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        trickle(int(port), int(n), float(interval), float(seconds))
        return 0

    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    work = tempfile.mkdtemp(prefix="rproxy-slowloris-")
    procs = []
    rows = []
    try:
        up = free_port()
        procs.append(subprocess.Popen([args.rproxy, "echo", "--listen", f"127.0.0.1:{up}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        assert wait_port(up), "echo upstream did not start"
        rp = free_port()
        procs.append(subprocess.Popen([args.rproxy, "serve", "--listen", f"127.0.0.1:{rp}", "--to",
                                       f"http://127.0.0.1:{up}", "--workers", "1", "--max-conns", "4096", "--quiet",
                                       "--head-timeout", f"{args.head_timeout}s"],
                                      stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "rproxy.err"), "w")))
        assert wait_port(rp), "rproxy did not start"
        rows.append(run_one("rproxy", rp, args))
        if os.path.exists(args.nginx):
            ng = free_port()
            conf = os.path.join(work, "nginx.conf")
            with open(conf, "w") as f:
                f.write(f"""worker_processes 1; daemon off; pid {work}/nginx.pid; error_log {work}/nginx.err;
events {{ worker_connections 4096; }}
http {{ access_log off; client_header_timeout {args.head_timeout}s;
  client_body_temp_path {work}; proxy_temp_path {work}; fastcgi_temp_path {work}; uwsgi_temp_path {work}; scgi_temp_path {work};
  large_client_header_buffers 4 8k;
  upstream u {{ server 127.0.0.1:{up}; keepalive 16; }}
  server {{ listen 127.0.0.1:{ng}; keepalive_requests 1000000;
    location / {{ proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}
""")
            procs.append(subprocess.Popen([args.nginx, "-c", conf, "-p", work], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
            assert wait_port(ng), "nginx did not start"
            rows.append(run_one("nginx", ng, args))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.tricklers} tricklers, one byte each every {args.interval}s, {args.head_timeout}s head deadline; "
          f"{args.requests} sequential keep-alive GETs per phase (ms)")
    print(f"{'proxy':8} {'idle p50':>9} {'idle p99':>9} {'trickle p50':>12} {'trickle p99':>12} {'p99 ratio':>10}")
    for r in rows:
        print(f"{r['proxy']:8} {r['idle_p50_ms']:9.3f} {r['idle_p99_ms']:9.3f} {r['trickle_p50_ms']:12.3f} "
              f"{r['trickle_p99_ms']:12.3f} {r['p99_ratio']:10.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"tricklers": args.tricklers, "interval_s": args.interval, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
