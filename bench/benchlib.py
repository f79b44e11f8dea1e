#!/usr/bin/env python3
"""Helpers for bench/run.sh: free ports, readiness checks, wrk parsing and the report.

Subcommands (all used by run.sh; none needs anything beyond the Python standard library):
  ports N                     print N distinct free TCP ports on 127.0.0.1
  wait HOST:PORT SECONDS      exit 0 once HOST:PORT accepts a TCP connection
  check URL SIZE              exit 0 if GET URL answers 200 with exactly SIZE body bytes
  prime URL N                 GET /1k, /1m and /r/0 .. /r/N-1 from URL on one keep-alive connection
  count-interactions DIR N    exit 0 if the cassette in DIR holds exactly N interactions
  scale-summary FILE.json     one line describing a bench/scale.py result
  settle SECONDS PID...       wait (at most SECONDS) until the processes and their children are idle
  meta OUT.json               build the run description from BENCH_* environment variables
  report --runs TSV --scale TSV --meta JSON --json OUT.json --md OUT.md
                              parse every wrk output listed in TSV and every scale.py result,
                              print the tables, write JSON and Markdown; exit 1 if some run
                              produced nothing
"""

import argparse
import json
import re
import socket
import ssl
import statistics
import sys
import time
import urllib.request

# --------------------------------------------------------------------------- small helpers


def cmd_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        print(" ".join(str(s.getsockname()[1]) for s in socks))
    finally:
        for s in socks:
            s.close()
    return 0


def cmd_wait(hostport, seconds):
    host, port = hostport.rsplit(":", 1)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, int(port)), timeout=0.5):
                return 0
        except OSError:
            time.sleep(0.05)
    return 1


def cmd_check(url, size, cafile=None):
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "rproxy-bench"})
        ctx = ssl.create_default_context(cafile=cafile) if url.startswith("https://") else None
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
            body = r.read()
            if r.status != 200:
                print(f"{url}: HTTP {r.status}", file=sys.stderr)
                return 1
            if len(body) != size:
                print(f"{url}: body is {len(body)} bytes, expected {size}", file=sys.stderr)
                return 1
            return 0
    except Exception as e:  # noqa: BLE001 - any failure means "did not answer"
        print(f"{url}: {e}", file=sys.stderr)
        return 1


def cmd_prime(base, n):
    """Send the requests the replay cassette is recorded from; every answer must be a 200."""
    import http.client
    host, port = base.split("://", 1)[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    paths = ["/1k", "/1m"] + [f"/r/{i}" for i in range(n)]
    for p in paths:
        conn.request("GET", p, headers={"User-Agent": "rproxy-bench"})
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            print(f"GET {p}: HTTP {r.status}", file=sys.stderr)
            return 1
    conn.close()
    return 0


def cmd_count_interactions(directory, n):
    import os
    try:
        with open(os.path.join(directory, "cassette.json")) as f:
            got = len(json.load(f)["interactions"])
    except (OSError, ValueError, KeyError) as e:
        print(f"{directory}: {e}", file=sys.stderr)
        return 1
    if got != n:
        print(f"{directory}: {got} interactions, expected {n}", file=sys.stderr)
        return 1
    return 0


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def scale_line(r):
    """The few numbers of one scale.py result that matter, as text."""
    mode = r.get("mode")
    if r.get("error"):
        return f"error: {r['error']}"
    if mode == "idle":
        return (f"{r.get('conns_open')}/{r.get('conns_requested')} idle connections held, RSS "
                f"{fmt(kib_to_mib(r.get('rss_total_held_kib')), 1)} MiB (+{fmt(kib_to_mib(r.get('rss_total_growth_kib')), 1)}), "
                f"new-client p99 {fmt(_get(r, 'probe_held_ms', 'p99'), 3)} ms "
                f"(before {fmt(_get(r, 'probe_before_ms', 'p99'), 3)} ms)")
    if mode == "stream":
        return (f"download {fmt(_get(r, 'download', 'mb_s'), 1)} MB/s (RSS +"
                f"{fmt(kib_to_mib(_get(r, 'download', 'rss_growth_kib')), 1)} MiB), upload "
                f"{fmt(_get(r, 'upload', 'mb_s'), 1)} MB/s (RSS +{fmt(kib_to_mib(_get(r, 'upload', 'rss_growth_kib')), 1)} MiB)")
    if mode == "sse":
        return (f"{r.get('connected')}/{r.get('clients')} subscribers, {fmt(r.get('events_per_s'), 0)} events/s, "
                f"gaps {r.get('gaps')}, delivery p50 {fmt(_get(r, 'latency_ms', 'p50'), 3)} ms "
                f"p99 {fmt(_get(r, 'latency_ms', 'p99'), 3)} ms")
    return json.dumps(r)


def kib_to_mib(v):
    return None if v is None else v / 1024.0


def cmd_scale_summary(path):
    with open(path) as f:
        print(scale_line(json.load(f)))
    return 0


def _cpu_ticks(pids):
    """utime + stime of the processes and all their descendants, in clock ticks."""
    import os
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    total, todo, seen = 0, list(pids), set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
        todo.extend(children.get(pid, []))
    return total


def cmd_settle(seconds, pids):
    """Exit 0 once the processes used under 5% of a core over 250 ms; 1 if they never did."""
    import os
    tick = os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + seconds
    before = _cpu_ticks(pids)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = _cpu_ticks(pids)
        if (now - before) / tick <= 0.05 * 0.25:
            return 0
        before = now
    return 1


def _lines(path):
    try:
        with open(path) as f:
            return [l.rstrip("\n") for l in f if l.strip()]
    except OSError:
        return []


def cmd_meta(out):
    """Collect what run.sh knows into one JSON file (values come from BENCH_* variables)."""
    import os
    env = os.environ
    workloads = []
    for l in _lines(env["BENCH_WORKLOADS_FILE"]):
        wid, path, conns, threads, script, header, body, desc = l.split("\t")
        workloads.append({"id": wid, "path": path, "connections": int(conns),
                          "wrk_threads": int(threads), "wrk_script": None if script == "-" else script,
                          "header": None if header == "-" else header, "request_body_bytes": int(body),
                          "description": desc})
    skipped = []
    for l in _lines(env.get("BENCH_SKIPPED_FILE", "")):
        name, reason = l.split("\t", 1)
        skipped.append({"proxy": name, "reason": reason})
    versions = {}
    for l in _lines(env.get("BENCH_VERSIONS_FILE", "")):
        name, v = l.split("\t", 1)
        versions[name] = v
    meta = {
        "timestamp": env["BENCH_TS"],
        "settings": {"rounds": int(env["BENCH_ROUNDS"]), "duration": float(env["BENCH_DURATION"]),
                     "smoke": env.get("BENCH_SMOKE") == "1",
                     "wrk_threads": env.get("BENCH_WRK_THREADS", "1"),
                     "wrk_timeout": env.get("BENCH_WRK_TIMEOUT", "")},
        "host": {"cpus": int(env.get("BENCH_CPUS", "0")), "kernel": env.get("BENCH_KERNEL", ""),
                 "loadavg_start": env.get("BENCH_LOAD_START", ""),
                 "loadavg_end": env.get("BENCH_LOAD_END", "")},
        "rproxy": {"path": env["BENCH_RPROXY"], "build_type": env.get("BENCH_RPROXY_BUILD", "unknown")},
        "versions": versions,
        "workloads": workloads,
        "proxies": env["BENCH_PROXIES"].split(),
        "skipped": skipped,
        "problems": _lines(env.get("BENCH_PROBLEMS_FILE", "")),
        "configs": {
            "upstream": "nginx, 1 worker, static files /1k (1024 B) and /1m (1048576 B), keepalive",
            "nginx": "1 worker, upstream keepalive 64, proxy_http_version 1.1, proxy_set_header Connection \"\"",
            "haproxy": "nbthread 1, mode http, http-reuse always",
            "rproxy": "rproxy serve --workers 1",
            "rproxy-2w": "rproxy serve (default workers: one per core)",
            "rproxy-split": "rproxy split --workers 1, two variants 90/10 (the split stage's cost)",
            "rproxy-fault": "rproxy fault --workers 1, three rules drawn per request, none firing (the fault stage's cost)",
            "rproxy-record": "rproxy record --workers 1 --mode all: every exchange written to a cassette (the record stage's cost)",
            "rproxy-replay": "rproxy replay --workers 1 --after-last repeat_last from a recording of /1k, /1m and "
                             "N distinct /r/ URLs: every answer local, from the index (the replay stage's cost)",
            "mitmproxy": "mitmdump --mode reverse:UPSTREAM, defaults (one Python process)",
            "direct": "wrk straight at the upstream nginx (reference, no proxy)",
            "nginx-tls": "as nginx, terminating TLS (listen ssl; TLS 1.2/1.3; the same P-256 certificate)",
            "haproxy-tls": "as haproxy, terminating TLS (bind ssl crt; the same certificate)",
            "rproxy-tls": "rproxy serve --workers 1 --tls-cert/--tls-key (the same certificate)",
        },
    }
    with open(out, "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    return 0


# --------------------------------------------------------------------------- wrk parsing

_TIME_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}
_BYTES = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}


def to_ms(text):
    """'443.63us' / '1.20ms' / '2.00s' / '1.00m' -> milliseconds (float)."""
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"unparseable wrk time {text!r}")
    return float(m.group(1)) * _TIME_MS[m.group(2)]


def to_bytes(text):
    """'1.17GB' / '140.00MB' / '512.00B' (wrk uses 1024-based units) -> bytes."""
    m = re.fullmatch(r"([0-9.]+)([KMGTP]?)B", text.strip())
    if not m:
        raise ValueError(f"unparseable wrk size {text!r}")
    return float(m.group(1)) * _BYTES[m.group(2)]


def parse_wrk(text):
    """Return a dict of the numbers in one `wrk --latency` output (missing ones are None)."""
    out = {
        "requests": None, "requests_per_sec": None, "bytes_per_sec": None,
        "p50_ms": None, "p75_ms": None, "p90_ms": None, "p99_ms": None,
        "errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0, "non_2xx_3xx": 0},
        "error_lines": [],
    }
    in_dist = False
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("Latency Distribution"):
            in_dist = True
            continue
        if in_dist:
            m = re.fullmatch(r"(50|75|90|99)%\s+(\S+)", s)
            if m:
                out[f"p{m.group(1)}_ms"] = to_ms(m.group(2))
                continue
            in_dist = False
        m = re.match(r"(\d+) requests in ", s)
        if m:
            out["requests"] = int(m.group(1))
        m = re.match(r"Requests/sec:\s+([0-9.]+)", s)
        if m:
            out["requests_per_sec"] = float(m.group(1))
        m = re.match(r"Transfer/sec:\s+(\S+)", s)
        if m:
            out["bytes_per_sec"] = to_bytes(m.group(1))
        m = re.match(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", s)
        if m:
            for k, v in zip(("connect", "read", "write", "timeout"), m.groups()):
                out["errors"][k] = int(v)
            out["error_lines"].append(s)
        m = re.match(r"Non-2xx or 3xx responses:\s+(\d+)", s)
        if m:
            out["errors"]["non_2xx_3xx"] = int(m.group(1))
            out["error_lines"].append(s)
        if s.startswith("unable to") or "error" in s.lower() and not s.startswith("Socket errors"):
            if s not in out["error_lines"]:
                out["error_lines"].append(s)
    return out


# --------------------------------------------------------------------------- report


# Why a row other than plain rproxy is not held to the acceptance targets.
INFO_NOTE = {"rproxy-2w": "2 workers vs nginx's 1", "rproxy-split": "the split stage's cost, 1 worker",
             "rproxy-fault": "the fault stage's cost, 1 worker", "rproxy-record": "the record stage's cost",
             "rproxy-replay": "the replay stage's cost"}


def median(values):
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, digits=2):
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def fmt_ratio(v):
    return "-" if v is None else f"{v:.2f}x"


def err_summary(errs):
    parts = [f"{k}={v}" for k, v in errs.items() if v]
    return ", ".join(parts) if parts else "0"


def cmd_report(args):
    meta = json.load(open(args.meta))
    workloads = meta["workloads"]            # list of {id, ...}
    proxies = meta["proxies"]                # ordered list of names (incl. "direct")
    body_bytes = {wl["id"]: wl.get("request_body_bytes", 0) for wl in workloads}
    runs = []
    with open(args.runs) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            rnd, wl, proxy, rc, status, path = line.split("\t")
            runs.append({"round": int(rnd), "workload": wl, "proxy": proxy,
                         "wrk_exit": int(rc), "status": status, "raw": path})

    problems = list(meta.get("problems", []))
    harness_ok = True
    cells = {}
    for r in runs:
        rec = {"round": r["round"], "wrk_exit": r["wrk_exit"], "status": r["status"]}
        if r["status"] == "ran":
            try:
                text = open(r["raw"], errors="replace").read()
            except OSError:
                text = ""
            p = parse_wrk(text)
            rec.update({k: p[k] for k in ("requests", "requests_per_sec", "p50_ms", "p75_ms",
                                          "p90_ms", "p99_ms", "errors")})
            # wrk's Transfer/sec counts what it received; an upload's MB/s is the request bodies sent.
            up = body_bytes.get(r["workload"], 0)
            if up and p["requests_per_sec"] is not None:
                rec["mb_per_sec"] = p["requests_per_sec"] * up / 1e6
            else:
                rec["mb_per_sec"] = None if p["bytes_per_sec"] is None else p["bytes_per_sec"] / 1e6
            if not p["requests"]:
                harness_ok = False
                problems.append(f"round {r['round']} {r['workload']} {r['proxy']}: wrk got no "
                                f"responses (exit {r['wrk_exit']}): "
                                + " | ".join(text.strip().splitlines()[-3:]))
            if any(p["errors"].values()):
                problems.append(f"round {r['round']} {r['workload']} {r['proxy']}: "
                                + "; ".join(p["error_lines"]))
        else:
            harness_ok = False
            problems.append(f"round {r['round']} {r['workload']} {r['proxy']}: not run ({r['status']})")
        cells.setdefault((r["workload"], r["proxy"]), []).append(rec)

    results = []
    by_key = {}
    for wl in workloads:
        for proxy in proxies:
            recs = cells.get((wl["id"], proxy))
            if recs is None:
                continue
            errs = {}
            for rec in recs:
                for k, v in (rec.get("errors") or {}).items():
                    errs[k] = errs.get(k, 0) + v
            med = {
                "requests_per_sec": median(r.get("requests_per_sec") for r in recs),
                "mb_per_sec": median(r.get("mb_per_sec") for r in recs),
                "p50_ms": median(r.get("p50_ms") for r in recs),
                "p99_ms": median(r.get("p99_ms") for r in recs),
            }
            row = {"workload": wl["id"], "proxy": proxy, "rounds": recs, "median": med,
                   "errors_total": errs,
                   "runs_missing": sum(1 for r in recs if r["status"] != "ran")}
            results.append(row)
            by_key[(wl["id"], proxy)] = row

    def ratio(a, b):
        return a / b if a is not None and b else None

    for row in results:
        # TLS rows compare with nginx terminating TLS too.
        ref = by_key.get((row["workload"], "nginx-tls" if row["proxy"].endswith("-tls") else "nginx"))
        thr = p99 = None
        if ref:
            thr = ratio(row["median"]["requests_per_sec"], ref["median"]["requests_per_sec"])
            p99 = ratio(row["median"]["p99_ms"], ref["median"]["p99_ms"])
        row["ratio_vs_nginx"] = {"throughput": thr, "p99": p99}
        direct = by_key.get((row["workload"], "direct"))
        added = None
        if direct and row["proxy"] != "direct" and not row["proxy"].endswith("-tls"):
            a, b = row["median"]["p99_ms"], direct["median"]["p99_ms"]
            added = a - b if a is not None and b is not None else None
        row["p99_added_ms"] = added

    scale = []
    if args.scale:
        for l in _lines(args.scale):
            mode, proxy, rc, path = l.split("\t")
            try:
                with open(path) as f:
                    res = json.load(f)
            except (OSError, ValueError) as e:
                res = {"mode": mode, "error": f"no result ({e})"}
            if int(rc) != 0:
                harness_ok = False
                res.setdefault("error", f"scale.py exited {rc}")
            scale.append({"mode": mode, "proxy": proxy, "exit": int(rc), "result": res})
    scale_by = {(s_["mode"], s_["proxy"]): s_["result"] for s_ in scale}

    # Acceptance targets (issue 10): reported, never turned into an exit code.
    acceptance = []

    def accept(proxy, target, workload, value, shown, ok, official=None):
        acceptance.append({"proxy": proxy, "target": target, "workload": workload, "value": value,
                           "shown": shown, "official": proxy == "rproxy" if official is None else official,
                           "pass": None if value is None else ok})

    for proxy in [p for p in proxies if p.startswith("rproxy") and not p.endswith("-tls")]:
        r = by_key.get(("ka-1k-c50", proxy))
        if r:
            v = r["ratio_vs_nginx"]["throughput"]
            accept(proxy, "throughput >= 0.8x nginx at 50 connections (1 KiB)", "ka-1k-c50", v,
                   fmt_ratio(v), v is not None and v >= 0.8)
        r = by_key.get(("1k-c1000", proxy))
        if r:
            v = r["ratio_vs_nginx"]["p99"]
            accept(proxy, "p99 <= 2x nginx at 1000 connections (1 KiB)", "1k-c1000", v, fmt_ratio(v),
                   v is not None and v <= 2.0)
        r = by_key.get(("lat-1k-r1k", proxy))
        if r:
            v = r["p99_added_ms"]
            accept(proxy, "p99 added at about 1,000 req/s <= 1 ms over direct", "lat-1k-r1k", v,
                   "-" if v is None else f"{v:+.3f} ms", v is not None and v <= 1.0)
    serve = by_key.get(("replay-10k-c50", "rproxy"))
    rep = by_key.get(("replay-10k-c50", "rproxy-replay"))
    if serve and rep:
        v = ratio(rep["median"]["requests_per_sec"], serve["median"]["requests_per_sec"])
        accept("rproxy-replay", "replay from a 10,000-exchange recording >= 0.8x serve", "replay-10k-c50", v,
               fmt_ratio(v), v is not None and v >= 0.8, official=True)
    idle = scale_by.get(("idle", "rproxy"))
    if idle and not idle.get("error"):
        rss = kib_to_mib(idle.get("rss_total_held_kib"))
        n = idle.get("conns_requested")
        ok_open = idle.get("conns_open") == n
        accept("rproxy", f"{n} idle keep-alive connections held in <= 256 MiB resident", "idle", rss,
               "-" if rss is None else f"{rss:.1f} MiB" + ("" if ok_open else f" (only {idle.get('conns_open')} open)"),
               rss is not None and rss <= 256 and ok_open)
        v = _get(idle, "probe_held_ms", "p99")
        accept("rproxy", "a new client is served within 10 ms at p99 while they are held", "idle", v,
               "-" if v is None else f"{v:.3f} ms", v is not None and v <= 10)
    st, ng = scale_by.get(("stream", "rproxy")), scale_by.get(("stream", "nginx"))
    if st and not st.get("error"):
        for d in ("download", "upload"):
            g = kib_to_mib(_get(st, d, "rss_growth_kib"))
            accept("rproxy", f"{d} of {st.get('size')} bytes: resident growth < 64 MiB", "stream", g,
                   "-" if g is None else f"{g:.1f} MiB", g is not None and g < 64)
            if ng and not ng.get("error"):
                v = ratio(_get(st, d, "mb_s"), _get(ng, d, "mb_s"))
                accept("rproxy", f"{d} of {st.get('size')} bytes: >= 0.8x nginx's MB/s", "stream", v,
                       fmt_ratio(v), v is not None and v >= 0.8)

    # ---------------------------------------------------------------- render
    header = ["workload", "proxy", "req/s", "MB/s", "p50 ms", "p99 ms", "p99 added ms",
              "req/s vs nginx", "p99 vs nginx", "errors (all rounds)"]
    table = []
    for row in results:
        m = row["median"]
        added = row["p99_added_ms"]
        table.append([row["workload"], row["proxy"], fmt(m["requests_per_sec"], 1),
                      fmt(m["mb_per_sec"], 1), fmt(m["p50_ms"], 3), fmt(m["p99_ms"], 3),
                      "-" if added is None else f"{added:+.3f}",
                      fmt_ratio(row["ratio_vs_nginx"]["throughput"]),
                      fmt_ratio(row["ratio_vs_nginx"]["p99"]),
                      err_summary(row["errors_total"])
                      + (f"; {row['runs_missing']} run(s) not done" if row["runs_missing"] else "")])
    right = {2, 3, 4, 5, 6, 7, 8}
    scale_header = ["measurement", "proxy", "result"]
    scale_table = [[s_["mode"], s_["proxy"], scale_line(s_["result"])] for s_ in scale]

    def render(hdr, rows, right_cols):
        widths = [max(len(h), *(len(t[i]) for t in rows)) if rows else len(h) for i, h in enumerate(hdr)]

        def line(cols):
            return "  ".join(c.rjust(widths[i]) if i in right_cols else c.ljust(widths[i])
                             for i, c in enumerate(cols)).rstrip()
        print(line(hdr))
        print(line(["-" * w for w in widths]))
        prev = None
        for t in rows:
            if prev is not None and t[0] != prev:
                print()
            print(line(t))
            prev = t[0]

    def verdict_lines():
        for a in acceptance:
            verdict = "n/a" if a["pass"] is None else ("PASS" if a["pass"] else "FAIL")
            note = "" if a["official"] else " (informational: " + INFO_NOTE.get(a["proxy"], "not a target") + ")"
            yield verdict, f"{a['proxy']}: {a['target']}: {a['shown']}{note}"

    s = meta["settings"]
    title = (f"rproxy bench {meta['timestamp']}: medians of {s['rounds']} round(s) x "
             f"{s['duration']} s, wrk -t{s['wrk_threads']}, {meta['host']['cpus']} CPUs"
             + ("  [SMOKE: numbers are not meaningful]" if s["smoke"] else ""))
    print(title)
    render(header, table, right)
    if scale_table:
        print()
        render(scale_header, scale_table, set())
    if acceptance:
        print("\nAcceptance targets" + (" (smoke run: informational only)" if s["smoke"] else "") + ":")
        for verdict, text in verdict_lines():
            print(f"  {verdict:4}  {text}")
    if problems:
        print("\nProblems seen:")
        for p in problems:
            print("  - " + p)

    doc = dict(meta)
    doc.update({"results": results, "scale": scale, "acceptance": acceptance, "problems": problems,
                "harness_ok": harness_ok})
    with open(args.json, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")

    with open(args.md, "w") as f:
        f.write(f"# rproxy benchmark {meta['timestamp']}\n\n")
        if s["smoke"]:
            f.write("**Smoke run** (1 short round): checks the harness only; the numbers mean nothing.\n\n")
        f.write(f"- medians of {s['rounds']} round(s) x {s['duration']} s per workload, "
                f"workloads interleaved, wrk -t{s['wrk_threads']} --latency\n")
        f.write(f"- host: {meta['host']['cpus']} CPUs, kernel {meta['host']['kernel']}, load average "
                f"{meta['host']['loadavg_start']} at start, {meta['host']['loadavg_end']} at end\n")
        for k, v in meta["versions"].items():
            f.write(f"- {k}: {v}\n")
        f.write(f"- rproxy binary: `{meta['rproxy']['path']}` (build type: {meta['rproxy']['build_type']})\n")
        for sk in meta.get("skipped", []):
            f.write(f"- skipped {sk['proxy']}: {sk['reason']}\n")
        f.write("\n| " + " | ".join(header) + " |\n")
        f.write("|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|\n")
        for t in table:
            f.write("| " + " | ".join(t) + " |\n")
        if scale_table:
            f.write("\n| " + " | ".join(scale_header) + " |\n|---|---|---|\n")
            for t in scale_table:
                f.write("| " + " | ".join(t) + " |\n")
        f.write("\nWorkloads:\n\n")
        for wl in workloads:
            f.write(f"- `{wl['id']}`: {wl['description']}\n")
        if acceptance:
            f.write("\nAcceptance targets:\n\n")
            for verdict, text in verdict_lines():
                f.write(f"- **{verdict}** {text}\n")
        if problems:
            f.write("\nProblems seen:\n\n")
            for p in problems:
                f.write(f"- {p}\n")
    return 0 if harness_ok else 1


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, rest = sys.argv[1], sys.argv[2:]
    if cmd == "ports":
        return cmd_ports(int(rest[0]))
    if cmd == "wait":
        return cmd_wait(rest[0], float(rest[1]))
    if cmd == "check":
        return cmd_check(rest[0], int(rest[1]), rest[2] if len(rest) > 2 else None)
    if cmd == "meta":
        return cmd_meta(rest[0])
    if cmd == "prime":
        return cmd_prime(rest[0], int(rest[1]))
    if cmd == "count-interactions":
        return cmd_count_interactions(rest[0], int(rest[1]))
    if cmd == "scale-summary":
        return cmd_scale_summary(rest[0])
    if cmd == "settle":
        return cmd_settle(float(rest[0]), [int(p) for p in rest[1:] if p])
    if cmd == "report":
        ap = argparse.ArgumentParser(prog="benchlib.py report")
        ap.add_argument("--runs", required=True)
        ap.add_argument("--scale")
        ap.add_argument("--meta", required=True)
        ap.add_argument("--json", required=True)
        ap.add_argument("--md", required=True)
        return cmd_report(ap.parse_args(rest))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
