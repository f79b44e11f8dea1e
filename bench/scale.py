#!/usr/bin/env python3
"""Scale measurements wrk cannot make: idle connections, 1 GiB streams, SSE fan-out.

Usage:
  scale.py idle   --url http://127.0.0.1:PORT/1k --pid PID [--conns 10000] [--probes 300] [--hold 5]
                  [--reuse 100] [--window 512] [--timeout 10]
  scale.py stream --base http://127.0.0.1:PORT --pid PID [--size 1073741824] [--download-path /1g]
                  [--upload-path /sink] [--sample-ms 20] [--directions download,upload[,upload-chunked]]
                  [--timeout 30] [--max-seconds 300]
  scale.py sse-upstream --port PORT [--host 127.0.0.1] [--interval-ms 100]
  scale.py sse    --url http://127.0.0.1:PORT/sse [--clients 1000] [--seconds 10] [--interval-ms 100]
                  [--pid PID] [--warmup 2] [--window 256] [--timeout 10]

idle:   opens --conns keep-alive connections to the target (at most --window connecting at once), one
        GET with a whole, checked response on each, keeps them idle, and reports the target's RSS growth
        (pid alone and pid + descendants; per_conn_bytes uses the total) and the latency of --probes
        sequential connect+GET+close requests before and while the connections are held; then it
        counts held connections the peer has closed and sends a second GET on --reuse of them.
        RSS is user memory only: kernel socket buffers are not in it. Use a freshly started target:
        memory an earlier run left behind hides the growth.
stream: downloads --size bytes (GET --download-path) and uploads --size bytes (POST --upload-path with
        Content-Length; upload-chunked: Transfer-Encoding: chunked, 256 KiB chunks), one connection at
        a time, with MB/s (10^6 bytes/s), seconds, the target's CPU seconds and its RSS (pid +
        descendants) sampled every --sample-ms. --timeout bounds each socket wait (also the wait for
        the response head: a proxy that buffers the whole 1 GiB first fails it), --max-seconds each
        transfer.
sse-upstream: a Server-Sent-Events origin. GET /sse answers a chunked text/event-stream and every
        --interval-ms writes to every subscriber `id: N` and `data: <time.monotonic_ns() at the write,
        20 digits> <padding>` (~100 bytes). Writes never block; a subscriber whose socket buffer
        (64 KiB) is full and that has more than 64 KiB unsent is dropped. GET /health -> "ok".
        Runs until SIGTERM/SIGINT; stats on stderr every 10 s ("late" = ticks it fell behind).
sse:    opens --clients subscriptions through the target (chunked or close-delimited bodies), reads
        --warmup seconds without counting (events queued while the others connected), then for
        --seconds counts events, id gaps (after each subscriber's first event) and delivery latency
        (receive CLOCK_MONOTONIC - send CLOCK_MONOTONIC, system-wide on Linux; the receive time is
        taken when epoll reports the batch, so this loop's own work on other sockets is not counted).
        --interval-ms must match the upstream's (for expected_events and upstream_behind).

Each measuring subcommand prints exactly one JSON object on stdout (progress goes to stderr) and exits
0 on success, 1 when the measurement failed (the JSON then has an "error" field; also on SIGTERM), 2
on usage errors. RSS is read from /proc/PID/statm (resident pages, the same counter as VmRSS);
descendants are found by scanning /proc for PPid chains.

Defaults and limits (measured on 2 cores, shared with compiler jobs): 1000 subscribers x 10 events/s
(--interval-ms 100) keeps up through two relays (client -> proxy -> nginx -> sse-upstream); at 20
events/s the upstream still kept ~18-20/s but latency through a proxy rose to 65-70 ms p50 because
the machine was saturated, not the client. The client costs ~10-13 us CPU per event (client_cpu_ratio
~0.10 at 10k events/s, ~0.2 at 20k/s); client_saturated is set above 0.85, i.e. roughly 70k events/s.
One fan-out to 1000 subscribers took the upstream 30-70 ms on the busy machine; each write carries
its own timestamp, so the fan-out time is not counted as proxy latency.
"""

import argparse
import errno
import gc
import json
import os
import re
import resource
import selectors
import signal
import socket
import sys
import threading
import time
from urllib.parse import urlsplit

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def log(*a):
    print("scale.py:", *a, file=sys.stderr, flush=True)


def emit(obj, ok):
    print(json.dumps(obj), flush=True)
    return 0 if ok else 1


class UsageError(Exception):
    pass


class Interrupted(Exception):
    pass


class Deadline(Exception):
    pass


# the JSON object of the running measurement, printed with an "error" if SIGTERM/SIGINT interrupts it
CURRENT = {}


def _interrupt(signum, frame):
    raise Interrupted(f"interrupted by signal {signum}")


def parse_url(url):
    u = urlsplit(url)
    if u.scheme != "http" or not u.hostname:
        raise UsageError(f"only http://host:port/path URLs are supported: {url!r}")
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    port = u.port or 80
    hosthdr = u.hostname if port == 80 else f"{u.hostname}:{port}"
    return u.hostname, port, path, hosthdr


def pct(values, p):
    """Nearest-rank percentile of an unsorted list (None if empty)."""
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))
    return v[k]


def ms_summary(ns_values):
    if not ns_values:
        return {"p50": None, "p99": None, "max": None, "n": 0}
    r = lambda x: round(x / 1e6, 3)
    return {"p50": r(pct(ns_values, 50)), "p99": r(pct(ns_values, 99)), "max": r(max(ns_values)),
            "n": len(ns_values)}


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, want)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as e:
            log("could not raise RLIMIT_NOFILE:", e)
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---------------------------------------------------------------- /proc memory

def _ppid_map():
    m = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                s = f.read()
            # comm may contain spaces/parens: the fields after the last ')' are fixed
            rest = s[s.rindex(b")") + 2:].split()
            m[int(d)] = int(rest[1])
        except (OSError, ValueError, IndexError):
            pass
    return m


def descendants(pid):
    """pid and all its descendants (threads are not separate processes here)."""
    m = _ppid_map()
    children = {}
    for p, pp in m.items():
        children.setdefault(pp, []).append(p)
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def rss_kib(pid):
    """Resident set of one process in KiB (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_KIB
    except (OSError, ValueError, IndexError):
        return None


def rss_total_kib(pids):
    return sum(r for r in (rss_kib(p) for p in pids) if r is not None)


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    """utime + stime of the given processes (all their threads), in seconds."""
    t = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                st = f.read()
            rest = st[st.rindex(b")") + 2:].split()
            t += int(rest[11]) + int(rest[12])
        except (OSError, ValueError, IndexError):
            pass
    return t / CLK_TCK


def check_pid(pid):
    if rss_kib(pid) is None:
        raise UsageError(f"no such process (or no access to /proc/{pid}/statm): {pid}")


class RssSampler(threading.Thread):
    """Samples RSS of pid + descendants every interval; the process tree is re-scanned every second."""

    def __init__(self, pid, interval_s):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval_s
        self.pids = descendants(pid)
        self.peak = 0
        self.samples = 0
        self.stop_ev = threading.Event()

    def run(self):
        last_scan = time.monotonic()
        while not self.stop_ev.is_set():
            now = time.monotonic()
            if now - last_scan >= 1.0:
                self.pids = descendants(self.pid)
                last_scan = now
            v = rss_total_kib(self.pids)
            self.samples += 1
            if v > self.peak:
                self.peak = v
            self.stop_ev.wait(self.interval)

    def stop(self):
        self.stop_ev.set()
        self.join()
        return self.peak


# ---------------------------------------------------------------- HTTP/1.1 response parsing (small bodies)

def parse_head(buf):
    """(status, headers dict lower-case, head_len) or None if the head is not complete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(buf[:end]).split(b"\r\n")
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise ValueError(f"bad status line {lines[0][:80]!r}")
    status = int(parts[1])
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(b":")
        k = k.strip().lower().decode("latin-1")
        v = v.strip().decode("latin-1")
        hdrs[k] = (hdrs[k] + "," + v) if k in hdrs else v
    return status, hdrs, end + 4


def is_chunked(hdrs):
    return "chunked" in hdrs.get("transfer-encoding", "").lower()


def parse_full_response(buf, eof=False):
    """For a whole small response in buf: (status, body_len, consumed) or None if more bytes are needed."""
    h = parse_head(buf)
    if h is None:
        return None
    status, hdrs, pos = h
    if status in (204, 304) or 100 <= status < 200:
        return status, 0, pos
    if is_chunked(hdrs):
        body = 0
        while True:
            nl = buf.find(b"\r\n", pos)
            if nl < 0:
                return None
            size = int(bytes(buf[pos:nl]).split(b";")[0].strip() or b"0", 16)
            pos = nl + 2
            if size == 0:
                # trailers until an empty line
                while True:
                    nl = buf.find(b"\r\n", pos)
                    if nl < 0:
                        return None
                    if nl == pos:
                        return status, body, nl + 2
                    pos = nl + 2
            if len(buf) < pos + size + 2:
                return None
            body += size
            pos += size + 2
    if "content-length" in hdrs:
        cl = int(hdrs["content-length"].split(",")[0])
        if len(buf) < pos + cl:
            return None
        return status, cl, pos + cl
    # close-delimited
    if eof:
        return status, len(buf) - pos, len(buf)
    return None


def request_bytes(method, path, hosthdr, extra=""):
    return (f"{method} {path} HTTP/1.1\r\nHost: {hosthdr}\r\nUser-Agent: rproxy-bench-scale\r\n"
            f"{extra}\r\n").encode()


def blocking_exchange(sock, req, timeout):
    """Send req on a blocking socket and read one whole (small) response. Returns (status, body_len)."""
    sock.settimeout(timeout)
    sock.sendall(req)
    buf = bytearray()
    while True:
        r = parse_full_response(buf)
        if r is not None:
            return r[0], r[1]
        chunk = sock.recv(65536)
        if not chunk:
            r = parse_full_response(buf, eof=True)
            if r is not None and r[1] >= 0 and buf:
                return r[0], r[1]
            raise ConnectionError("connection closed before a whole response" +
                                  (f" ({len(buf)} bytes read)" if buf else ""))
        buf += chunk


def probe_once(host, port, req, timeout):
    t0 = time.perf_counter_ns()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(timeout)
        s.connect((host, port))
        status, blen = blocking_exchange(s, req, timeout)
    finally:
        s.close()
    return time.perf_counter_ns() - t0, status, blen


def run_probes(host, port, req, n, timeout, want_len):
    # a garbage collection over the 10k held sockets would add milliseconds to one probe
    gc.collect()
    gc.disable()
    try:
        return _run_probes(host, port, req, n, timeout, want_len)
    finally:
        gc.enable()


def _run_probes(host, port, req, n, timeout, want_len):
    lat, errors = [], {}
    for _ in range(n):
        try:
            ns, status, blen = probe_once(host, port, req, timeout)
            if status != 200 or (want_len is not None and blen != want_len):
                raise ValueError(f"status {status} body {blen}")
            lat.append(ns)
        except (OSError, ValueError) as e:
            k = type(e).__name__ + ": " + str(e)[:80]
            errors[k] = errors.get(k, 0) + 1
    out = ms_summary(lat)
    out["failed"] = n - len(lat)
    if errors:
        out["errors"] = errors
    return out


# ---------------------------------------------------------------- mass connection opener

def open_many(host, port, n, req, window, timeout, on_response=None, keep_reading=False):
    """Open n connections (at most `window` connecting/handshaking at a time), send req on each, and
    wait for a whole response (or, with keep_reading, just the response head). Returns
    (list of (sock, leftover_bytes), errors dict, seconds)."""
    sel = selectors.DefaultSelector()
    done, errors = [], {}
    started = 0
    inflight = 0
    t0 = time.monotonic()
    deadline_of = {}

    def fail(s, why):
        nonlocal inflight
        errors[why] = errors.get(why, 0) + 1
        try:
            sel.unregister(s)
        except (KeyError, ValueError):
            pass
        deadline_of.pop(s, None)
        s.close()
        inflight -= 1

    last_report = t0
    while started < n or inflight:
        while started < n and inflight < window:
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            except OSError as e:  # EMFILE/ENFILE: count the rest as failed
                why = f"socket: {errno.errorcode.get(e.errno, e.errno)}"
                errors[why] = errors.get(why, 0) + (n - started)
                started = n
                break
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rc = s.connect_ex((host, port))
            started += 1
            inflight += 1
            if rc not in (0, errno.EINPROGRESS):
                fail(s, f"connect: {errno.errorcode.get(rc, rc)}")
                continue
            sel.register(s, selectors.EVENT_WRITE, ["connecting", bytearray()])
            deadline_of[s] = time.monotonic() + timeout
        for key, ev in sel.select(timeout=0.2):
            s, st = key.fileobj, key.data
            if st[0] == "connecting":
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(s, f"connect: {errno.errorcode.get(err, err)}")
                    continue
                try:
                    sent = s.send(req)
                except OSError as e:
                    fail(s, f"send: {type(e).__name__}")
                    continue
                if sent != len(req):  # tiny request: should never happen
                    fail(s, "send: partial")
                    continue
                st[0] = "reading"
                sel.modify(s, selectors.EVENT_READ, st)
            else:
                try:
                    chunk = s.recv(65536)
                except OSError as e:
                    fail(s, f"recv: {type(e).__name__}")
                    continue
                if not chunk:
                    fail(s, "closed before a whole response")
                    continue
                st[1] += chunk
                try:
                    if keep_reading:
                        r = parse_head(st[1])
                    else:
                        r = parse_full_response(st[1])
                except ValueError as e:
                    fail(s, f"bad response: {e}")
                    continue
                if r is None:
                    continue
                why = on_response(r, st[1]) if on_response else None
                if why:
                    fail(s, why)
                    continue
                sel.unregister(s)
                deadline_of.pop(s, None)
                inflight -= 1
                done.append((s, st[1][r[2]:] if not keep_reading else st[1]))
        now = time.monotonic()
        if now - last_report >= 2:
            last_report = now
            log(f"  {len(done)} open, {inflight} in flight, {sum(errors.values())} failed")
            for s, dl in list(deadline_of.items()):
                if dl < now:
                    fail(s, "timeout")
    sel.close()
    return done, errors, time.monotonic() - t0


# ---------------------------------------------------------------- idle

def cmd_idle(a):
    host, port, path, hosthdr = parse_url(a.url)
    check_pid(a.pid)
    nofile = raise_nofile(a.conns + 100)
    out = CURRENT
    out.update({"mode": "idle", "url": a.url, "pid": a.pid, "conns_requested": a.conns, "conns_open": 0,
                "nofile_limit": nofile})
    if nofile < a.conns + 100:
        out["nofile_warning"] = f"RLIMIT_NOFILE {nofile} < conns+100; connections may fail with EMFILE"
    req = request_bytes("GET", path, hosthdr)

    # body length the target serves (for checking every response)
    try:
        _, st, want_len = probe_once(host, port, req, a.timeout)
        if st != 200:
            raise ValueError(f"status {st}")
    except (OSError, ValueError) as e:
        out["error"] = f"first request to {a.url} failed: {e}"
        return emit(out, False)
    out["body_bytes"] = want_len

    pids = descendants(a.pid)
    out["pids"] = len(pids)
    out["rss_before_kib"] = rss_kib(a.pid)
    out["rss_total_before_kib"] = rss_total_kib(pids)

    log(f"idle: {a.probes} baseline probes")
    out["probe_before_ms"] = run_probes(host, port, req, a.probes, a.timeout, want_len)

    def check(r, buf):
        status, blen, consumed = r
        if status != 200 or blen != want_len:
            return f"bad response: status {status} body {blen}"
        return None

    log(f"idle: opening {a.conns} connections (window {a.window})")
    conns, errors, secs = open_many(host, port, a.conns, req, a.window, a.timeout, on_response=check)
    out["conns_open"] = len(conns)
    out["open_s"] = round(secs, 3)
    if errors:
        out["open_errors"] = errors
    log(f"idle: {len(conns)} open in {secs:.2f}s; holding {a.hold}s")
    time.sleep(a.hold)
    pids = descendants(a.pid)
    held, held_total = [], []
    for i in range(5):
        held.append(rss_kib(a.pid) or 0)
        held_total.append(rss_total_kib(pids))
        time.sleep(0.2)
    out["rss_held_kib"] = max(held)
    out["rss_total_held_kib"] = max(held_total)
    out["rss_growth_kib"] = out["rss_held_kib"] - (out["rss_before_kib"] or 0)
    out["rss_total_growth_kib"] = out["rss_total_held_kib"] - out["rss_total_before_kib"]
    out["per_conn_bytes"] = (round(out["rss_total_growth_kib"] * 1024 / len(conns)) if conns else None)

    log(f"idle: {a.probes} probes while {len(conns)} connections are held")
    out["probe_held_ms"] = run_probes(host, port, req, a.probes, a.timeout, want_len)

    # how many idle connections has the peer closed (EOF/RST makes them readable)?
    sel = selectors.DefaultSelector()
    for s, _ in conns:
        sel.register(s, selectors.EVENT_READ)
    readable = {k.fileobj for k, _ in sel.select(timeout=0)}
    sel.close()
    out["conns_closed_by_peer"] = len(readable)

    # reuse a spread-out sample of the held connections
    tried = ok = 0
    reuse_err = {}
    if conns and a.reuse:
        step = max(1, len(conns) // a.reuse)
        for s, leftover in conns[::step][:a.reuse]:
            tried += 1
            try:
                s.setblocking(True)
                status, blen = blocking_exchange(s, req, a.timeout)
                if status == 200 and blen == want_len:
                    ok += 1
                else:
                    raise ValueError(f"status {status} body {blen}")
            except (OSError, ValueError) as e:
                k = type(e).__name__ + ": " + str(e)[:60]
                reuse_err[k] = reuse_err.get(k, 0) + 1
    out["reuse_ok"], out["reuse_tried"] = ok, tried
    if reuse_err:
        out["reuse_errors"] = reuse_err
    for s, _ in conns:
        s.close()
    time.sleep(1)
    # memory kept after the connections are gone (allocator caches, pools)
    out["rss_total_after_close_kib"] = rss_total_kib(descendants(a.pid))
    out["client_cpu_s"] = round(time.process_time(), 2)

    problems = []
    if len(conns) != a.conns:
        problems.append(f"only {len(conns)}/{a.conns} connections succeeded")
    if out["probe_before_ms"]["failed"] or out["probe_held_ms"]["failed"]:
        problems.append("some probes failed")
    if ok != tried:
        problems.append(f"reuse {ok}/{tried}")
    if rss_kib(a.pid) is None:
        problems.append("target process exited")
    if problems:
        out["error"] = "; ".join(problems)
    return emit(out, not problems)


# ---------------------------------------------------------------- stream

def read_head_blocking(sock):
    buf = bytearray()
    while True:
        h = parse_head(buf)
        if h is not None:
            return h[0], h[1], bytes(buf[h[2]:])
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before the response head ({len(buf)} bytes)")
        buf += chunk
        if len(buf) > 65536:
            raise ValueError("response head too large")


class Reader:
    """Counts body bytes with recv_into a reused buffer; handles leftovers from the head read."""

    def __init__(self, sock, leftover, deadline, bufsize=1 << 20):
        self.sock = sock
        self.deadline = deadline
        self.total = 0
        self.pend = leftover
        self.buf = bytearray(bufsize)
        self.mv = memoryview(self.buf)

    def skip(self, n):
        """Discard exactly n bytes; returns the number discarded (less on EOF)."""
        got = 0
        if self.pend:
            take = min(n, len(self.pend))
            self.pend = self.pend[take:]
            got += take
        mv, cap = self.mv, len(self.buf)
        recv_into = self.sock.recv_into
        deadline = self.deadline
        while got < n:
            r = recv_into(mv, min(cap, n - got))
            if r == 0:
                break
            got += r
            self.total += r
            if time.monotonic() > deadline:
                raise Deadline(f"transfer deadline passed after {self.total} body bytes")
        return got

    def skip_to_eof(self):
        got = len(self.pend)
        self.pend = b""
        mv = self.mv
        while True:
            r = self.sock.recv_into(mv)
            if r == 0:
                return got
            got += r
            self.total += r
            if time.monotonic() > self.deadline:
                raise Deadline(f"transfer deadline passed after {self.total} body bytes")

    def line(self):
        while b"\r\n" not in self.pend:
            c = self.sock.recv(4096)
            if not c:
                raise ConnectionError("EOF in chunked framing")
            self.pend += c
            if len(self.pend) > 8192:
                raise ValueError("chunk size line too long")
        ln, _, self.pend = self.pend.partition(b"\r\n")
        return ln

    def chunked(self):
        total = 0
        while True:
            size = int(self.line().split(b";")[0].strip(), 16)
            if size == 0:
                while self.line():
                    pass
                return total
            if self.skip(size) != size:
                raise ConnectionError("EOF inside a chunk")
            total += size
            if self.line():
                raise ValueError("missing CRLF after chunk data")


def body_framing(status, hdrs):
    if is_chunked(hdrs):
        return "chunked"
    if "content-length" in hdrs:
        return "length"
    return "close"


def stream_download(host, port, path, hosthdr, size, timeout, max_s):
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.settimeout(timeout)
        t0 = time.perf_counter()
        s.sendall(request_bytes("GET", path, hosthdr))
        status, hdrs, left = read_head_blocking(s)
        rd = Reader(s, left, time.monotonic() + max_s)
        fr = body_framing(status, hdrs)
        if fr == "length":
            cl = int(hdrs["content-length"])
            got = rd.skip(cl)
            if got != cl:
                raise ConnectionError(f"EOF after {got} of {cl} body bytes")
        elif fr == "chunked":
            got = rd.chunked()
        else:
            got = rd.skip_to_eof()
        secs = time.perf_counter() - t0
    finally:
        s.close()
    return status, got, secs, fr


def stream_upload(host, port, path, hosthdr, size, timeout, chunked, max_s, chunk=256 * 1024):
    data = b"x" * chunk
    deadline = time.monotonic() + max_s
    s = socket.create_connection((host, port), timeout=timeout)
    early = None
    try:
        s.settimeout(timeout)
        t0 = time.perf_counter()
        if chunked:
            head = request_bytes("POST", path, hosthdr,
                                 "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n")
            frame = b"%x\r\n" % chunk + data + b"\r\n"
        else:
            head = request_bytes("POST", path, hosthdr,
                                 f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n")
            frame = data
        s.sendall(head)
        sent = 0
        try:
            full, rest = divmod(size, chunk)
            sendall = s.sendall
            for _ in range(full):
                sendall(frame)
                sent += chunk
                if time.monotonic() > deadline:
                    raise Deadline(f"transfer deadline passed after {sent} body bytes")
            if rest:
                sendall((b"%x\r\n" % rest + data[:rest] + b"\r\n") if chunked else data[:rest])
                sent += rest
            if chunked:
                sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError) as e:
            early = f"{type(e).__name__} after {sent} body bytes"
        t_sent = time.perf_counter()
        try:
            status, hdrs, left = read_head_blocking(s)
        except (OSError, ValueError) as e:
            raise ConnectionError((early + "; " if early else "") + f"no response: {e}")
        secs = time.perf_counter() - t0
    finally:
        s.close()
    return status, sent, secs, t_sent - t0, early


def cmd_stream(a):
    host, port, _, hosthdr = parse_url(a.base.rstrip("/") + "/")
    check_pid(a.pid)
    dirs = [d.strip() for d in a.directions.split(",") if d.strip()]
    for d in dirs:
        if d not in ("download", "upload", "upload-chunked"):
            raise UsageError(f"unknown direction {d!r}")
    out = CURRENT
    out.update({"mode": "stream", "base": a.base, "pid": a.pid, "size": a.size})
    problems = []
    for d in dirs:
        pids = descendants(a.pid)
        before = rss_total_kib(pids)
        smp = RssSampler(a.pid, a.sample_ms / 1000)
        smp.start()
        cpu0 = time.process_time()
        tcpu0 = cpu_seconds(pids)
        res = {}
        log(f"stream: {d} {a.size} bytes")
        try:
            if d == "download":
                status, got, secs, fr = stream_download(host, port, a.download_path, hosthdr, a.size, a.timeout,
                                                        a.max_seconds)
                res.update(bytes=got, framing=fr, status=status)
                if status != 200:
                    problems.append(f"download: status {status}")
                if got != a.size:
                    problems.append(f"download: {got} bytes, expected {a.size}")
            else:
                status, sent, secs, send_s, early = stream_upload(host, port, a.upload_path, hosthdr, a.size,
                                                                  a.timeout, d == "upload-chunked",
                                                                  a.max_seconds)
                res.update(bytes=sent, status=status, send_seconds=round(send_s, 3))
                if early:
                    res["early_close"] = early
                if status != 200:
                    problems.append(f"{d}: status {status}")
                if sent != a.size:
                    problems.append(f"{d}: sent {sent} of {a.size} bytes ({early})")
            res["seconds"] = round(secs, 3)
            res["mb_s"] = round(res["bytes"] / secs / 1e6, 1) if secs > 0 else None
        except (OSError, ValueError, Deadline) as e:
            problems.append(f"{d}: {type(e).__name__}: {e}")
            res["error"] = f"{type(e).__name__}: {e}"
        peak = smp.stop()
        res["client_cpu_s"] = round(time.process_time() - cpu0, 2)
        res["target_cpu_s"] = round(cpu_seconds(smp.pids) - tcpu0, 2)
        res["rss_before_kib"] = before
        res["rss_peak_kib"] = max(peak, before)
        res["rss_growth_kib"] = res["rss_peak_kib"] - before
        res["rss_samples"] = smp.samples
        res["rss_after_kib"] = rss_total_kib(descendants(a.pid))
        out[d.replace("-", "_")] = res
        log(f"stream: {d}: {res.get('mb_s')} MB/s, rss +{res['rss_growth_kib']} KiB")
    if rss_kib(a.pid) is None:
        problems.append("target process exited")
    if problems:
        out["error"] = "; ".join(problems)
    return emit(out, not problems)


# ---------------------------------------------------------------- sse-upstream

SSE_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n\r\n")
MAX_PENDING = 64 * 1024    # unsent bytes beyond the socket buffer before a subscriber is dropped
EVENT_RE = re.compile(rb"id: ?(\d+)\ndata: ?(\d+)")


def cmd_sse_upstream(a):
    raise_nofile(65536)
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((a.host, a.port))
    lsock.listen(4096)
    lsock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, None)
    subs = {}      # sock -> pending bytearray (or None when nothing is pending)
    reqs = {}      # sock -> request buffer for connections still sending the head
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    interval = a.interval_ms / 1000.0  # seconds
    pad_to = 100
    stats = {"events": 0, "dropped": 0, "late": 0, "max_fanout_ms": 0.0}
    log(f"sse-upstream: listening on {a.host}:{a.port}, interval {a.interval_ms} ms")

    def drop(s, counted=False):
        try:
            sel.unregister(s)
        except (KeyError, ValueError):
            pass
        subs.pop(s, None)
        reqs.pop(s, None)
        s.close()
        if counted:
            stats["dropped"] += 1

    def handle_request(s, buf):
        line = bytes(buf.split(b"\r\n", 1)[0])
        parts = line.split()
        target = parts[1].decode("latin-1") if len(parts) >= 2 else ""
        p = target.split("?", 1)[0]
        reqs.pop(s, None)
        if p == "/sse":
            try:
                s.send(SSE_HEAD)
            except OSError:
                drop(s)
                return
            # a bounded kernel buffer (no autotuning to 4 MB) so a stalled subscriber is noticed
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
            subs[s] = None
            sel.modify(s, selectors.EVENT_READ, "sub")
        else:
            if p == "/health":
                resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
            else:
                resp = b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n"
            try:
                s.send(resp)
            except OSError:
                pass
            drop(s)

    def broadcast(n):
        idb = b"id: %d\ndata: " % n
        t_start = time.monotonic_ns()
        for s in list(subs):
            ts = b"%020d " % time.monotonic_ns()
            ev = idb + ts + b"x" * max(1, pad_to - len(idb) - len(ts) - 2) + b"\n\n"
            frame = b"%x\r\n" % len(ev) + ev + b"\r\n"
            pend = subs.get(s)
            if pend is not None:
                if len(pend) + len(frame) > MAX_PENDING:
                    drop(s, True)
                    continue
                pend += frame
                continue
            try:
                sent = s.send(frame)
            except BlockingIOError:
                sent = 0
            except OSError:
                drop(s)
                continue
            if sent < len(frame):
                subs[s] = bytearray(frame[sent:])
                sel.modify(s, selectors.EVENT_READ | selectors.EVENT_WRITE, "sub")
        fan = (time.monotonic_ns() - t_start) / 1e6
        stats["max_fanout_ms"] = max(stats["max_fanout_ms"], fan)
        stats["events"] += 1

    n = 0
    next_t = time.monotonic() + interval
    last_stat = time.monotonic()
    while not stop:
        timeout = max(0.0, next_t - time.monotonic())
        for key, ev in sel.select(timeout=timeout):
            s = key.fileobj
            if key.data is None:
                for _ in range(256):
                    try:
                        c, _ = lsock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as e:
                        log("accept:", e)
                        break
                    c.setblocking(False)
                    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    reqs[c] = bytearray()
                    sel.register(c, selectors.EVENT_READ, "req")
                continue
            if key.data == "req":
                try:
                    chunk = s.recv(8192)
                except OSError:
                    chunk = b""
                if not chunk:
                    drop(s)
                    continue
                buf = reqs[s]
                buf += chunk
                if b"\r\n\r\n" in buf:
                    handle_request(s, buf)
                elif len(buf) > 65536:
                    drop(s)
                continue
            # subscriber
            if ev & selectors.EVENT_READ:
                try:
                    chunk = s.recv(8192)
                except BlockingIOError:
                    chunk = None
                except OSError:
                    chunk = b""
                if chunk == b"":
                    drop(s)
                    continue
            if ev & selectors.EVENT_WRITE and s in subs:
                pend = subs[s]
                if pend:
                    try:
                        sent = s.send(pend)
                    except BlockingIOError:
                        sent = 0
                    except OSError:
                        drop(s)
                        continue
                    del pend[:sent]
                if not pend:
                    subs[s] = None
                    sel.modify(s, selectors.EVENT_READ, "sub")
        now = time.monotonic()
        if now >= next_t:
            n += 1
            broadcast(n)
            next_t += interval
            if time.monotonic() > next_t:  # fell behind by more than one interval: do not burst
                stats["late"] += 1
                next_t = time.monotonic() + interval
        if now - last_stat >= 10:
            last_stat = now
            log(f"sse-upstream: {len(subs)} subscribers, event {n}, dropped {stats['dropped']}, "
                f"late {stats['late']}, max fan-out {stats['max_fanout_ms']:.1f} ms, "
                f"cpu {time.process_time():.1f}s")
            stats["max_fanout_ms"] = 0.0
    log(f"sse-upstream: stopping ({len(subs)} subscribers, {n} events)")
    return 0


# ---------------------------------------------------------------- sse client

class SseConn:
    __slots__ = ("framing", "raw", "body", "chunk_left", "first_id", "last_id", "events", "gaps", "closed")

    def __init__(self, framing, rest):
        self.framing = framing
        self.raw = bytearray(rest)   # undecoded bytes (chunked framing)
        self.body = bytearray()      # decoded event-stream bytes not yet split into events
        self.chunk_left = 0          # data bytes left in the current chunk (-1: expecting CRLF after data)
        self.first_id = None
        self.last_id = None
        self.events = 0
        self.gaps = 0
        self.closed = False

    def fast(self, data, lat, t_recv):
        """Fast path for the common case (one whole chunk holding one whole event, nothing buffered).
        Returns True if data was handled."""
        if self.raw or self.body or self.chunk_left or self.framing != "chunked":
            return False
        nl = data.find(b"\r\n")
        if nl <= 0:
            return False
        try:
            size = int(data[:nl], 16)
        except ValueError:
            return False
        end = nl + 2 + size
        if size == 0 or len(data) != end + 2 or data[end - 2:end + 2] != b"\n\n\r\n":
            return False
        m = EVENT_RE.match(data, nl + 2)
        if m is None or data.find(b"\n\n", nl + 2) != end - 2:
            return False
        self.event(int(m.group(1)), int(m.group(2)), lat, t_recv)
        return True

    def event(self, eid, ts, lat, t_recv):
        if lat is None:  # warm-up: only remember the id
            self.last_id = eid
            return
        if self.first_id is None:
            self.first_id = eid
        elif self.last_id is not None and eid > self.last_id + 1:
            self.gaps += eid - self.last_id - 1
        self.last_id = eid
        self.events += 1
        if ts is not None:
            lat.append(t_recv - ts)

    def feed(self, data):
        """Add received bytes; decoded event-stream bytes are appended to body."""
        if self.framing != "chunked":
            self.body += data
            return
        raw = self.raw
        raw += data
        pos = 0
        n = len(raw)
        while pos < n:
            if self.chunk_left > 0:
                take = min(self.chunk_left, n - pos)
                self.body += raw[pos:pos + take]
                pos += take
                self.chunk_left -= take
                if self.chunk_left == 0:
                    self.chunk_left = -1
                continue
            if self.chunk_left == -1:
                if n - pos < 2:
                    break
                pos += 2
                self.chunk_left = 0
                continue
            nl = raw.find(b"\r\n", pos)
            if nl < 0:
                break
            size = int(bytes(raw[pos:nl]).split(b";")[0].strip() or b"0", 16)
            pos = nl + 2
            if size == 0:
                self.closed = True
                break
            self.chunk_left = size
        del raw[:pos]


def cmd_sse(a):
    host, port, path, hosthdr = parse_url(a.url)
    raise_nofile(a.clients + 100)
    req = request_bytes("GET", path, hosthdr, "Accept: text/event-stream\r\nCache-Control: no-cache\r\n")
    out = CURRENT
    out.update({"mode": "sse", "url": a.url, "clients": a.clients, "connected": 0, "seconds": a.seconds})
    if a.pid:
        check_pid(a.pid)

    def check(r, buf):
        status, hdrs, _ = r
        if status != 200:
            return f"status {status}"
        if "text/event-stream" not in hdrs.get("content-type", ""):
            return f"content-type {hdrs.get('content-type')!r}"
        return None

    log(f"sse: connecting {a.clients} subscribers")
    opened, errors, secs = open_many(host, port, a.clients, req, a.window, a.timeout,
                                     on_response=check, keep_reading=True)
    out["connected"] = len(opened)
    out["connect_s"] = round(secs, 3)
    if errors:
        out["connect_errors"] = errors
    sel = selectors.DefaultSelector()
    conns = {}
    framings = {}
    for s, buf in opened:
        status, hdrs, hl = parse_head(buf)
        fr = body_framing(status, hdrs)
        framings[fr] = framings.get(fr, 0) + 1
        c = SseConn(fr, b"")
        conns[s] = c
        sel.register(s, selectors.EVENT_READ, c)
        if len(buf) > hl:
            c.feed(bytes(buf[hl:]))
    out["framing"] = framings
    log(f"sse: {len(opened)} connected in {secs:.2f}s; measuring {a.seconds}s")

    lat = []
    total_events = 0
    closed = 0
    mono = time.monotonic_ns
    # warm-up: read (and only track ids of) what queued up while the other subscribers connected,
    # so stale buffered events do not count as latency
    warm_end = time.monotonic() + a.warmup
    measure_start = None
    cpu0 = None
    while True:
        now = time.monotonic()
        if measure_start is None and now >= warm_end:
            measure_start, cpu0 = now, time.process_time()
            if a.pid:
                tpids = descendants(a.pid)
                tcpu0 = cpu_seconds(tpids)
            measure_end = now + a.seconds
        if measure_start is not None and now >= measure_end:
            break
        limit = (warm_end if measure_start is None else measure_end) - now
        measuring = measure_start is not None
        ready = sel.select(timeout=max(0.0, min(0.5, limit)))
        # one receive time per readiness batch: the data was in the socket when select returned, so
        # the time this loop spends on the batch's other sockets is not counted as delivery latency
        t_recv = mono()
        lat_or_none = lat if measuring else None
        for key, _ in ready:
            s, c = key.fileobj, key.data
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                c.closed = True
                closed += 1
                continue
            before = c.events
            if not c.fast(data, lat_or_none, t_recv):
                c.feed(data)
                c.body = _consume_events(c, c.body, lat_or_none, t_recv)
            total_events += c.events - before
            if c.closed:
                sel.unregister(s)
                closed += 1
    wall = time.monotonic() - measure_start
    cpu = time.process_time() - cpu0
    if a.pid:
        out["target_cpu_s"] = round(cpu_seconds(tpids) - tcpu0, 2)
        out["target_rss_total_kib"] = rss_total_kib(descendants(a.pid))
    sel.close()
    for s in conns:
        s.close()
    ids = [(c.first_id, c.last_id) for c in conns.values() if c.first_id is not None]
    expected_ids = sum(l - f + 1 for f, l in ids)
    expected = round(len(opened) * wall * 1000 / a.interval_ms)
    gaps = sum(c.gaps for c in conns.values())
    rate = None
    if ids:
        span = max(l for _, l in ids) - min(f for f, _ in ids)
        rate = round(span / wall, 2) if wall > 0 else None
    out.update({
        "events": total_events,
        "events_per_s": round(total_events / wall, 1) if wall > 0 else None,
        "expected_events": expected,
        "expected_events_from_ids": expected_ids,
        "interval_ms": a.interval_ms,
        "gaps": gaps,
        "gaps_per_client": round(gaps / len(conns), 3) if conns else None,
        "clients_without_events": sum(1 for c in conns.values() if c.events == 0),
        "closed_during": closed,
        "upstream_rate_hz": rate,
        "latency_ms": ms_summary(lat),
        "client_cpu_s": round(cpu, 2),
        "client_cpu_ratio": round(cpu / wall, 3) if wall > 0 else None,
    })
    out["client_saturated"] = bool(out["client_cpu_ratio"] and out["client_cpu_ratio"] > 0.85)
    problems = []
    if len(opened) != a.clients:
        problems.append(f"only {len(opened)}/{a.clients} subscribers connected")
    if total_events == 0:
        problems.append("no events received (buffering proxy?)")
    elif out["clients_without_events"]:
        problems.append(f"{out['clients_without_events']} subscribers received no event")
    if closed:
        problems.append(f"{closed} subscriptions closed during the measurement")
    if rate is not None and rate < 0.9 * 1000 / a.interval_ms:
        out["upstream_behind"] = True
        log(f"sse: warning: ids advanced at {rate}/s, below the nominal {1000 / a.interval_ms:.1f}/s "
            "(upstream or machine saturated: lower the rate or the clients)")
    if problems:
        out["error"] = "; ".join(problems)
    return emit(out, not problems)


def _consume_events(c, body, lat, t_recv):
    """Split complete events (blank-line terminated) from body; update ids/gaps/latency.
    With lat None (warm-up) only ids are tracked, nothing is counted."""
    if b"\n\n" not in body:
        return body
    parts = bytes(body).split(b"\n\n")
    rest = parts.pop()
    for ev in parts:
        eid = None
        ts = None
        for line in ev.split(b"\n"):
            if line.startswith(b"id:"):
                eid = int(line[3:])
            elif line.startswith(b"data:"):
                ts = int(line[5:].split(None, 1)[0])
        if eid is not None:
            c.event(eid, ts, lat, t_recv)
    return bytearray(rest)


# ---------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(prog="scale.py", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("idle", help="memory for many idle keep-alive connections + new-client latency")
    p.add_argument("--url", required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--conns", type=int, default=10000)
    p.add_argument("--probes", type=int, default=300)
    p.add_argument("--hold", type=float, default=5)
    p.add_argument("--reuse", type=int, default=100, help="idle connections to reuse at the end (default 100)")
    p.add_argument("--window", type=int, default=512, help="connections being set up at once (default 512)")
    p.add_argument("--timeout", type=float, default=10)

    p = sub.add_parser("stream", help="1 GiB download and upload through the target")
    p.add_argument("--base", required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--size", type=int, default=1 << 30)
    p.add_argument("--download-path", default="/1g")
    p.add_argument("--upload-path", default="/sink")
    p.add_argument("--sample-ms", type=float, default=20)
    p.add_argument("--directions", default="download,upload",
                   help="comma list of download, upload, upload-chunked (default download,upload)")
    p.add_argument("--timeout", type=float, default=30, help="per socket operation (default 30 s)")
    p.add_argument("--max-seconds", type=float, default=300,
                   help="give up a transfer after this long (default 300 s: 1 GiB at 3.6 MB/s)")

    p = sub.add_parser("sse-upstream", help="SSE origin server (runs until killed)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--interval-ms", type=float, default=100,
                   help="event period (default 100: 1000 subscribers x 10 events/s through two relays "
                        "kept up on a 2-core machine; 50 did not)")

    p = sub.add_parser("sse", help="SSE fan-out through the target")
    p.add_argument("--url", required=True)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--window", type=int, default=256)
    p.add_argument("--pid", type=int, default=0, help="target pid: report its (and descendants') CPU and RSS")
    p.add_argument("--warmup", type=float, default=2, help="seconds read but not counted after connecting")
    p.add_argument("--interval-ms", type=float, default=100,
                   help="the upstream's --interval-ms, for expected_events (default 100)")
    p.add_argument("--timeout", type=float, default=10)

    a = ap.parse_args(argv)
    for k in ("conns", "probes", "size", "clients", "window", "reuse"):
        if getattr(a, k, 1) is not None and getattr(a, k, 1) < 0:
            ap.error(f"--{k} must be >= 0")
    if a.cmd != "sse-upstream":
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)
    try:
        if a.cmd == "idle":
            return cmd_idle(a)
        if a.cmd == "stream":
            return cmd_stream(a)
        if a.cmd == "sse-upstream":
            return cmd_sse_upstream(a)
        return cmd_sse(a)
    except Interrupted as e:
        print(f"scale.py: {e}", file=sys.stderr)
        CURRENT.setdefault("mode", a.cmd)
        CURRENT["error"] = ((CURRENT["error"] + "; ") if "error" in CURRENT else "") + str(e)
        print(json.dumps(CURRENT), flush=True)
        return 1
    except UsageError as e:
        print(f"scale.py: {e}", file=sys.stderr)
        if a.cmd != "sse-upstream":
            print(json.dumps({"mode": a.cmd, "error": f"usage: {e}"}), flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
