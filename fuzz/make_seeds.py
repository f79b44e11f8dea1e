#!/usr/bin/env python3
"""Writes the fuzz seed corpora under fuzz/corpus/<target>/.

Seeds are small, one interesting input each: valid messages (so the fuzzer starts from what gets deep into
the parser) and the near-misses of /work/shared/notes/http-hardening.md rows 1-26 and
tests/unit/http_parser_test.cpp (so it starts next to every rejection). The chunked decoder and scenario
seeds follow the same idea. Rerun after editing; it rewrites the generated files and removes stale ones
(scenario seeds copied from scenarios/*.json included). The checked-in corpus is never grown by fuzzing:
scripts/fuzz.sh fuzzes a copy.
"""
import pathlib
import shutil

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def get11(fields: str) -> str:
    return "GET / HTTP/1.1\r\n" + fields + "\r\n"


def post11(fields: str) -> str:
    return "POST / HTTP/1.1\r\n" + fields + "\r\n"


GOOD = "GET / HTTP/1.1\r\nHost: boa\r\n\r\n"

# name -> request bytes. Names say which checklist row or test a seed comes from.
REQUESTS = {
    "ok-minimal-get": "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "ok-http10-no-host": "GET / HTTP/1.0\r\n\r\n",
    "ok-http10-fields": "GET /x HTTP/1.0\r\nHost: a\r\nUser-Agent: t\r\n\r\n",
    "ok-target-query": "GET /%7Euser/x;p=1?q=a+b&r=%2B HTTP/1.1\r\nHost: a\r\n\r\n",
    "ok-target-query-bad-escape": "GET /a?b=% HTTP/1.1\r\nHost: a\r\n\r\n",
    "ok-options-star": "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    "ok-absolute-form": "GET http://host:8080/x?y=1 HTTP/1.1\r\nHost: host:8080\r\n\r\n",
    "ok-leading-empty-lines": "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "ok-ows-and-obs-text": get11("Host: \t a.example \t\r\nX-A:\t a  b\tc \t\r\nX-B: caf\xc3\xa9\r\nX-C:\r\n"),
    "ok-order-and-case": get11("x-B: 1\r\nhOsT: a\r\nX-A: 1\r\nx-b: 2\r\nACCEPT: */*\r\n"),
    "ok-ipv6-host": get11("Host: [::1]:8080\r\n"),
    "ok-content-length-body": post11("Host: a\r\nContent-Length: 5\r\n") + "hello",
    "ok-chunked-body": post11("Host: a\r\nTransfer-Encoding: Chunked\r\n") + "5\r\nhello\r\n0\r\n\r\n",
    "ok-pipelined": get11("Host: a\r\n") + "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
    "ok-expect-continue": post11("Host: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n"),
    "ok-connection-fields": get11("Host: a\r\nConnection: X-Internal-Auth, keep-alive\r\nX-Internal-Auth: admin\r\n"
                                  "Keep-Alive: 5\r\nUpgrade: websocket\r\n"),
    "ok-xff-via": get11("Host: a\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\nVia: 1.1 x\r\n"),
    "ok-tchar-name": get11("Host: a\r\n!#$%&'*+-.^_`|~09azAZ: 1\r\n"),
    "ok-underscore-name": post11("Host: a\r\nContent-Length: 4\r\nTransfer_Encoding: chunked\r\n") + "0\r\n\r\n",
    "incomplete-no-end": "GET / HTTP/1.1\r\nHost: a\r\n\r",
    "row01-cl-te": post11("Host: a\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n"),
    "row01-cl0-te": post11("Host: a\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n"),
    "row02-te-trailing-space-cl": post11("Host: a\r\nTransfer-Encoding: chunked \r\nContent-Length: 4\r\n"),
    "row03-duplicate-cl-smuggle": post11("Host: a\r\nContent-Length: 0\r\nContent-Length: 31\r\n")
    + "GET /evil HTTP/1.1\r\nHost: a\r\n\r\n",
    "row03-cl-list": post11("Host: a\r\nContent-Length: 3, 3\r\n"),
    "row04-cl-plus": post11("Host: a\r\nContent-Length: +3\r\n"),
    "row04-cl-formfeed": post11("Host: a\r\nContent-Length: \x0c" "3\r\n"),
    "row04-cl-overflow": post11("Host: a\r\nContent-Length: 18446744073709551616\r\n"),
    "row04-cl-leading-zeros": post11("Host: a\r\nContent-Length: 0005\r\n"),
    "row05-te-gzip": post11("Host: a\r\nTransfer-Encoding: chunked, gzip\r\n"),
    "row05-te-gzip-chunked": post11("Host: a\r\nTransfer-Encoding: gzip, chunked\r\n"),
    "row06-te-twice": post11("Host: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
    "row07-te-space-before-colon": post11("Host: a\r\nContent-Length: 4\r\nTransfer-Encoding : chunked\r\n"),
    "row07-te-vtab": post11("Host: a\r\nTransfer-Encoding: \x0b" "chunked\r\n"),
    "row07-te-quoted": post11("Host: a\r\nTransfer-Encoding: \"chunked\"\r\n"),
    "row07-te-bare-cr-name": post11("Host: a\r\nContent-Length: 4\r\nTransfer\r-Encoding: chunked\r\n"),
    "row07-te-after-bare-lf": post11("Host: a\r\nContent-Length: 4\r\nX: X\nTransfer-Encoding: chunked\r\n"),
    "row07-te-empty-element": post11("Host: a\r\nTransfer-Encoding: ,chunked\r\n"),
    "row08-te-http10": "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    "row09-space-before-colon": "GET / HTTP/1.1\r\nHost : bob\r\n\r\n",
    "row10-obs-fold": post11("Host: a\r\nTransfer-Encoding:\r\n chunked\r\n"),
    "row11-bare-lf": "GET / HTTP/1.1\nHost: a\n\n",
    "row11-bare-cr": "GET / HTTP/1.1\r\nHost: a\r\r\n\r\n",
    "row11-nul-in-value": get11("Host: a\x00.evil\r\n"),
    "row11-no-colon": get11("Host: a\r\nNoColon\r\n"),
    "row12-empty-name": get11("Host: a\r\n: x\r\n"),
    "row12-obs-text-name": get11("Host: a\r\nHeader\x85: 1\r\n"),
    "row16-bad-then-good": "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc" + GOOD,
    "row17-no-host": "GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n",
    "row17-two-hosts": get11("Host: a\r\nhost: a\r\n"),
    "row17-host-userinfo": get11("Host: user:pw@a.example\r\n"),
    "row18-authority-mismatch": "GET http://evil/ HTTP/1.1\r\nHost: good\r\n\r\n",
    "row19-get-star": "GET * HTTP/1.1\r\nHost: a\r\n\r\n",
    "row19-relative-target": "GET admin HTTP/1.1\r\nHost: a\r\n\r\n",
    "row20-connect": "CONNECT host:443 HTTP/1.1\r\nHost: host:443\r\n\r\n",
    "row20-trace-body": "TRACE / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody",
    "row21-control-in-target": "GET /a\x02 HTTP/1.1\r\nHost: a\r\n\r\n",
    "row21-bad-percent": "GET /%1 HTTP/1.1\r\nHost: a\r\n\r\n",
    "row21-version-11-1": "GET / HTTP/11.1\r\nHost: a\r\n\r\n",
    "row21-version-2-0": "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
    "row21-double-space": "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    "row26-long-target": "GET /" + "a" * 300 + " HTTP/1.1\r\nHost: a\r\n\r\n",
    "row26-many-fields": get11("Host: a\r\n" + "".join(f"X-{i}: {i}\r\n" for i in range(12))),
    "row26-long-field": get11("Host: a\r\nX-Long: " + "v" * 300 + "\r\n"),
}

RESPONSES = {
    "ok-200-length": "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    "ok-200-chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "ok-200-until-close": "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nbody",
    "ok-204": "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
    "ok-304": "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
    "ok-100-continue": "HTTP/1.1 100 Continue\r\n\r\n",
    "ok-101-upgrade": "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    "ok-no-reason": "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
    "ok-empty-reason": "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n",
    "ok-reason-obs-text": "HTTP/1.1 200 D\xc3\xa9j\xc3\xa0 vu\r\nContent-Length: 0\r\n\r\n",
    "ok-999": "HTTP/1.1 999 Odd\r\n\r\n",
    "ok-cl-list-same": "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc",
    "ok-sse": "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\ndata: x\n\n",
    "ok-cache-headers": "HTTP/1.1 200 OK\r\nCache-Control: max-age=60, public\r\nETag: W/\"1\"\r\nVary: Accept-Encoding"
    "\r\nLast-Modified: Tue, 15 Nov 1994 12:45:26 GMT\r\nContent-Length: 0\r\n\r\n",
    "ok-set-cookie": "HTTP/1.1 302 Found\r\nLocation: /x\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",
    "ok-leading-empty-lines": "\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    "row35-garbage": "garbage\r\n\r\n",
    "row35-http09": "<html>\r\n\r\n",
    "row35-status-2digits": "HTTP/1.1 20 OK\r\n\r\n",
    "row35-status-leading-zero": "HTTP/1.1 099 x\r\n\r\n",
    "row35-http2": "HTTP/2 200\r\n\r\n",
    "row35-no-space": "HTTP/1.1 200OK\r\n\r\n",
    "row35-lowercase": "http/1.1 200 OK\r\n\r\n",
    "row36-cl-abc": "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
    "row36-cl-conflict": "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "row36-cl-list-conflict": "HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabcd",
    "row36-te-cl": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n"
    "0\r\n\r\nResponse splitting",
    "row36-te-gzip": "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    "row36-te-gzip-chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    "row36-te-split-lines": "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
    "row36-cl-overflow": "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
    "row11-bare-lf": "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
    "row11-bare-cr": "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
    "row11-nul": "HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n",
    "row09-space-before-colon": "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello",
    "row10-obs-fold": "HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\n\r\n",
    "row39-long-field": "HTTP/1.1 200 OK\r\nX-Long: " + "v" * 300 + "\r\n\r\n",
    "row39-many-fields": "HTTP/1.1 200 OK\r\n" + "".join(f"X-{i}: {i}\r\n" for i in range(12)) + "\r\n",
    "row39-long-status-line": "HTTP/1.1 200 " + "R" * 300 + "\r\n\r\n",
}

# Chunked decoder seeds: the first byte is the control byte of fuzz_chunked_decoder.cpp (piece sizes;
# 0 = one byte at a time), the rest is the body.
CHUNKED = {
    "ok-empty": "0\r\n\r\n",
    "ok-one": "1\r\na\r\n0\r\n\r\n",
    "ok-two": "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    "ok-hex-lower-upper": "a\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\n",
    "ok-leading-zeros": "00A\r\n0123456789\r\n000\r\n\r\n",
    "ok-16-digits": "000000000000000f\r\n0123456789abcde\r\n0\r\n\r\n",
    "ok-crlf-in-data": "5\r\nhe\r\nl\r\n0\r\n\r\n",
    "ok-binary-data": "4\r\n\x00\x01\xff\n\r\n0\r\n\r\n",
    "ok-extensions": "5;a=b;c\r\nhello\r\n0;name=\"q \\\" v\"\r\n\r\n",
    "ok-ext-bws": "5 ; a = b\r\nhello\r\n0\r\n\r\n",
    "ok-trailers": "5\r\nhello\r\n0\r\nX-Trailer: v\r\nX-Other:\r\n\r\n",
    "ok-then-pipelined": "1\r\na\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "ok-big-chunk": "100\r\n" + "x" * 256 + "\r\n0\r\n\r\n",
    "incomplete-data": "10\r\nshort",
    "incomplete-no-last-crlf": "1\r\na\r\n0\r\n",
    "row13-z": "Z\r\n\r\n",
    "row13-0x": "0x0\r\n\r\n",
    "row13-minus": "-0\r\n\r\n",
    "row13-plus": "+1\r\na\r\n0\r\n\r\n",
    "row13-leading-space": " 1\r\na\r\n0\r\n\r\n",
    "row13-trailing-junk": "1these-bytes-are-junk\r\na\r\n0\r\n\r\n",
    "row13-17-digits": "00000000000000001\r\na\r\n0\r\n\r\n",
    "row13-overflow": "ffffffffffffffff\r\nabc",
    "row14-cr-cr": "2\r\r;a\r\nab\r\n0\r\n\r\n",
    "row14-cr-only": "1\r0\n\r\n",
    "row14-bare-lf-after-data": "1\r\na\n0\r\n\r\n",
    "row14-bare-lf-size": "1\na\r\n0\r\n\r\n",
    "row14-bare-semicolon": "1;\r\na\r\n0\r\n\r\n",
    "row14-ext-no-value": "1;a=\r\na\r\n0\r\n\r\n",
    "row14-ext-open-quote": "1;a=\"x\r\na\r\n0\r\n\r\n",
    "row14-ext-control": "1;a\x01\r\na\r\n0\r\n\r\n",
    "row15-runaway": "4\r\nSEE-THIS\r\n0\r\n\r\n",
    "trailer-obs-fold": "0\r\nX: a\r\n b\r\n\r\n",
    "trailer-no-colon": "0\r\nbad\r\n\r\n",
    "trailer-space-before-colon": "0\r\nX : a\r\n\r\n",
    "trailer-bare-lf": "0\r\nX: a\n\r\n",
    "trailer-nul": "0\r\nX: a\x00\r\n\r\n",
    "end-bare-lf": "0\r\n\n",
    "empty-input": "",
}

# Broken scenario documents, next to the valid examples copied from scenarios/.
SCENARIOS = {
    "broken-not-object.json": "[1, 2, 3]",
    "broken-empty-object.json": "{}",
    "broken-unknown-key.json": '{"routes": [], "bogus": 1}',
    "broken-route-types.json": '{"routes": [{"match": {"path_prefix": 5}, "upstreams": "x"}]}',
    "broken-bad-url.json": '{"routes": [{"upstreams": ["ftp://a"]}]}',
    "broken-stage-params.json": '{"stages": [{"type": "headers", "params": {"request": {"set": [1]}}}],'
    ' "routes": [{"upstreams": ["http://127.0.0.1:3000"]}]}',
    "broken-unknown-stage.json": '{"stages": [{"type": "nope"}], "routes": [{"upstreams": ["http://127.0.0.1:1"]}]}',
    "broken-limits.json": '{"limits": {"max_body": -1, "max_conns": 1e400}, "routes": []}',
    "broken-listen.json": '{"listen": "127.0.0.1:99999", "routes": [{"upstreams": ["http://127.0.0.1:1"]}]}',
    "broken-deep.json": '{"routes": [{"upstreams": [[[[[[[[[["http://a"]]]]]]]]]]}]}',
    "ok-minimal.json": '{"routes": [{"upstreams": ["http://127.0.0.1:3000"]}]}',
}


def write(target: str, name: str, data: bytes) -> None:
    (CORPUS / target / name).write_bytes(data)


def main() -> None:
    for target in ("request_parser", "response_parser", "chunked_decoder", "scenario_loader"):
        d = CORPUS / target
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    # latin-1 maps each code point below 256 to one byte, so "\x85" in a seed is the byte 0x85.
    for name, text in REQUESTS.items():
        write("request_parser", name, text.encode("latin-1"))
    for name, text in RESPONSES.items():
        write("response_parser", name, text.encode("latin-1"))
    for i, (name, text) in enumerate(CHUNKED.items()):
        control = bytes([0 if i % 4 == 0 else (i * 37) % 256])
        write("chunked_decoder", name, control + text.encode("latin-1"))
    for example in sorted((ROOT / "scenarios").glob("*.json")):
        if example.name.endswith(".schema.json"):
            continue
        write("scenario_loader", "example-" + example.name, example.read_bytes())
    for name, text in SCENARIOS.items():
        write("scenario_loader", name, text.encode("utf-8"))


if __name__ == "__main__":
    main()
