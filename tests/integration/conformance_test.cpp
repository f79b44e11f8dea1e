// Raw-socket conformance suite: one case per row of the hardening checklist
// (/work/shared/notes/http-hardening.md, table (a)), driven through a real proxy on loopback with literal
// bytes. Each rejection case asserts the status, that the answer says Connection: close, that the socket
// is closed, and that the upstream received nothing. Rows 1-21 (and 26) are sent twice: whole, and one
// byte per write with TCP_NODELAY and a pause after each byte, so the proxy reads the input split at every
// byte boundary (the parser unit tests also parse every prefix of the same inputs).
//
// Rows covered by other files (named in docs/conformance.md): 28 (1 GiB streams), 29 (slowloris), 31 (a
// client that never reads), 32 (max_conns), 40-41 (drain and reload), 42 (static traversal), 44
// (redaction), 45 (TLS), 46 (admin loopback).
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <vector>

#include "support/echo_json.hpp"
#include "support/proxy_fixture.hpp"
#include "support/raw_client.hpp"
#include "support/scripted_upstream.hpp"
#include "support/test_bytes.hpp"

using namespace rproxy;
using namespace rproxy::test;
using namespace std::literals;

namespace {

const std::string kOk = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

enum class Delivery { Whole, ByteByByte };

const char* delivery_name(Delivery d) {
  return d == Delivery::Whole ? "whole" : "byte by byte";
}

// deliver sends input on c. Byte by byte stops early once the proxy answered or closed: a proxy may
// reject at the first bad byte, and what it does with bytes it never reads does not matter.
void deliver(RawClient& c, std::string_view input, Delivery how) {
  if (how == Delivery::Whole) {
    c.try_send(input);
    return;
  }
  for (std::size_t i = 0; i < input.size(); ++i) {
    if (!c.try_send(input.substr(i, 1))) return;
    if (c.fill(milliseconds(1)) || c.peer_closed()) return;
  }
}

// Upstream is the origin behind the proxy under test: it answers every request head with 200 "ok" after
// a pause (so a streamed request body is still being read when the client's error is found) and records
// every byte it receives.
struct Rig {
  explicit Rig(Limits limits = {}, milliseconds answer_after = milliseconds(0))
      : up(UpstreamScript{.delay_before = answer_after, .response = kOk}), proxy(scenario(up, limits)) {}

  static Scenario scenario(const ScriptedUpstream& up, Limits limits) {
    auto s = make_scenario({make_route({up.url()})});
    limits.drain_timeout = s.limits.drain_timeout;
    s.limits = limits;
    return s;
  }

  ScriptedUpstream up;
  ProxyFixture proxy;
};

// answer_to delivers input on c and reads the answer, which must have one of statuses.
HttpResponse answer_to(RawClient& c, const std::string& input, Delivery how,
                       std::initializer_list<int> statuses) {
  deliver(c, input, how);
  auto r = c.read_response();
  bool status_ok = false;
  for (int s : statuses) status_ok = status_ok || r.status == s;
  CHECK_MESSAGE(status_ok, "status " << r.status << ", head: " << printable(r.raw_head));
  return r;
}

// expect_rejected: one of statuses, Connection: close, closed, a short explanation, nothing upstream.
void expect_rejected(Rig& rig, const std::string& input, std::initializer_list<int> statuses,
                     std::initializer_list<Delivery> deliveries = {Delivery::Whole, Delivery::ByteByByte}) {
  for (auto how : deliveries) {
    INFO("input (" << delivery_name(how) << "): \"" << printable(input) << "\"");
    RawClient c(rig.proxy.port());
    auto r = answer_to(c, input, how, statuses);
    INFO("response head: " << printable(r.raw_head));
    CHECK(r.complete);
    CHECK(r.header("Connection") == "close");
    CHECK(r.has_header("X-Rproxy-Error"));
    CHECK_FALSE(r.body.empty());
    // Exactly one response: nothing pipelined behind the bad request is answered.
    auto rest = c.read_until_close(milliseconds(3000));
    CHECK_MESSAGE(rest.find("HTTP/1.") == std::string::npos, "a second response: " << printable(rest));
    CHECK(c.peer_closed());
  }
  CHECK_MESSAGE(rig.up.received().empty(), "the upstream received: " << printable(rig.up.received()));
  CHECK(rig.up.connections() == 0);
}

void expect_all_rejected(const std::vector<std::string>& inputs, std::initializer_list<int> statuses,
                         Limits limits = {}) {
  Rig rig(limits);
  for (const auto& in : inputs) expect_rejected(rig, in, statuses);
}

std::string post(std::string_view fields, std::string_view body = "") {
  return "POST / HTTP/1.1\r\nHost: proxy.test\r\n"s + std::string(fields) + "\r\n" + std::string(body);
}
std::string get(std::string_view fields) {
  return "GET / HTTP/1.1\r\nHost: proxy.test\r\n"s + std::string(fields) + "\r\n";
}

// A good request pipelined behind every bad one: it must never be answered or forwarded.
const std::string kGood = "GET /good HTTP/1.1\r\nHost: proxy.test\r\n\r\n";

// expect_body_rejected: a request whose head is fine but whose body is malformed. Request bodies are
// streamed, so the upstream may already have the head and the valid start of the body; it must never
// receive a complete message (the final chunk) or any byte of the bad part, and its connection is closed.
void expect_body_rejected(const std::string& input, std::initializer_list<int> statuses,
                          std::string_view never_upstream) {
  for (auto how : {Delivery::Whole, Delivery::ByteByByte}) {
    Rig rig({}, milliseconds(3000));
    INFO("input (" << delivery_name(how) << "): \"" << printable(input) << "\"");
    RawClient c(rig.proxy.port());
    auto r = answer_to(c, input, how, statuses);
    INFO("response head: " << printable(r.raw_head));
    CHECK(r.header("Connection") == "close");
    CHECK(c.wait_closed());
    auto got = rig.up.received();
    INFO("upstream received: \"" << printable(got) << "\"");
    CHECK(got.find("0\r\n\r\n") == std::string::npos);
    CHECK(got.find(never_upstream) == std::string::npos);
    CHECK(got.find("/good") == std::string::npos);
  }
}

}  // namespace

TEST_SUITE("conformance") {
  // ---- request framing (rows 1-8) ---------------------------------------------------------------------

  TEST_CASE("conformance row 1: CL.TE is 400 and close, CL 0 included") {
    expect_all_rejected(
        {post("Content-Length: 13\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\nSMUGGLED") + kGood,
         post("Content-Length: 0\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n") + kGood},
        {400});
  }

  TEST_CASE("conformance row 2: TE before CL and TE with trailing space are 400") {
    expect_all_rejected(
        {post("Transfer-Encoding: chunked\r\nContent-Length: 13\r\n", "0\r\n\r\nSMUGGLED") + kGood,
         post("Transfer-Encoding: chunked \r\nContent-Length: 4\r\n", "0\r\n\r\n") + kGood},
        {400});
  }

  TEST_CASE("conformance row 3: differing or duplicate Content-Length is 400") {
    expect_all_rejected(
        {post("Content-Length: 0\r\nContent-Length: 31\r\n", "GET /evil HTTP/1.1\r\nHost: a\r\n\r\n"),
         post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello") + kGood,
         post("Content-Length: 3, 3\r\n", "abc") + kGood},
        {400});
  }

  TEST_CASE("conformance row 4: invalid Content-Length values are 400") {
    std::vector<std::string> inputs;
    for (std::string v : {"+3",
                          "\x0c"
                          "3",
                          "0x10", "-1", "1_0", "", "18446744073709551616", "3 3", "1e3"})
      inputs.push_back(post("Content-Length: " + v + "\r\n", "abc") + kGood);
    expect_all_rejected(inputs, {400});
  }

  TEST_CASE("conformance row 5: TE whose final coding is not chunked is 400 or 501") {
    std::vector<std::string> inputs;
    for (std::string v : {"gzip", "chunked, gzip", "identity", "chunked, identity", "gzip, chunked"})
      inputs.push_back(post("Transfer-Encoding: " + v + "\r\n", "0\r\n\r\n") + kGood);
    expect_all_rejected(inputs, {400, 501});
  }

  TEST_CASE("conformance row 6: repeated chunked is 400") {
    expect_all_rejected(
        {post("Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n") + kGood,
         post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n") + kGood},
        {400});
  }

  TEST_CASE("conformance row 7: TE obfuscations are 400") {
    std::vector<std::string> inputs;
    for (std::string line :
         {"Transfer-Encoding : chunked", "Transfer-Encoding:\tchunked\r\nContent-Length: 4",
          " Transfer-Encoding: chunked", "Transfer-Encoding: xchunked", "Transfer-Encoding: \"chunked\"",
          "Transfer-Encoding: chunk",
          "Transfer-Encoding: \x0b"
          "chunked",
          "Transfer\r-Encoding: chunked", "X: X\nTransfer-Encoding: chunked", "Transfer-Encoding: ,chunked"})
      inputs.push_back(post("Content-Length: 4\r\n" + line + "\r\n", "0\r\n\r\n") + kGood);
    expect_all_rejected(inputs, {400});
  }

  TEST_CASE("conformance row 8: TE in an HTTP/1.0 request is 400") {
    expect_all_rejected(
        {"POST / HTTP/1.0\r\nHost: proxy.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + kGood},
        {400});
  }

  // ---- field syntax (rows 9-12) -------------------------------------------------------------------------

  TEST_CASE("conformance row 9: whitespace before the colon is 400") {
    expect_all_rejected(
        {"GET / HTTP/1.1\r\nHost : bob\r\n\r\n" + kGood, post("Content-Length : 5\r\n", "hello") + kGood},
        {400});
  }

  TEST_CASE("conformance row 10: obs-fold is 400") {
    expect_all_rejected({post("Transfer-Encoding:\r\n chunked\r\n", "0\r\n\r\n") + kGood,
                         "GET / HTTP/1.1\r\nHost:bob\r\n \r\n\r\n" + kGood, get("X-A: 1\r\n\t2\r\n") + kGood},
                        {400});
  }

  TEST_CASE("conformance row 11: bare CR, NUL, bare LF and lines without a colon are 400") {
    expect_all_rejected({get("X-A: a\rb\r\n") + kGood,
                         get("X-A: a\x00"
                             "b\r\n"s) +
                             kGood,
                         "GET / HTTP/1.1\nHost: proxy.test\n\n" + kGood, get("X-A: 1\nX-B: 2\r\n") + kGood,
                         get("NoColonHere\r\n") + kGood},
                        {400});
  }

  TEST_CASE("conformance row 12: bad field names are 400") {
    expect_all_rejected({get("Header\x85: 1\r\n") + kGood, get("</kie>: 1\r\n") + kGood,
                         get(": x\r\n") + kGood, get("X\x01Y: 1\r\n") + kGood},
                        {400});
  }

  // ---- request bodies (rows 13-15, 27, 30) ----------------------------------------------------------------

  TEST_CASE("conformance row 13: bad chunk sizes are 400, the upstream never gets a complete body") {
    for (std::string size : {"Z", "0x0", "-0", "+1", " 1", "1these-bytes-are-not-hex", "10000000000000001"}) {
      CAPTURE(size);
      expect_body_rejected(
          post("Transfer-Encoding: chunked\r\n", "3\r\nabc\r\n" + size + "\r\nSMUGGLED\r\n0\r\n\r\n") + kGood,
          {400}, "SMUGGLED");
    }
  }

  TEST_CASE("conformance row 14: bad chunk-line terminators are 400") {
    for (std::string body : {"2\r\r;a\r\nSMUGGLED\r\n0\r\n\r\n", "1\r0\nSMUGGLED\r\n0\r\n\r\n",
                             "2\r\nab\nSMUGGLED\r\n0\r\n\r\n", "2;\r\nSMUGGLED\r\n0\r\n\r\n"}) {
      CAPTURE(printable(body));
      expect_body_rejected(post("Transfer-Encoding: chunked\r\n", body) + kGood, {400}, "SMUGGLED");
    }
  }

  TEST_CASE("conformance row 15: chunk data longer than its size is 400") {
    expect_body_rejected(
        post("Transfer-Encoding: chunked\r\n", "4\r\nSEE-THIS-SMUGGLED\r\n0\r\n\r\n") + kGood, {400},
        "THIS-SMUGGLED");
  }

  TEST_CASE("conformance row 27: a body over max_body is 413 before it is read") {
    Limits limits;
    limits.max_body = 1000;
    Rig rig(limits);
    // The declared length alone decides: the client has sent only the head when the 413 arrives.
    RawClient c(rig.proxy.port());
    c.send(post("Content-Length: 1000000000\r\n"));
    auto r = c.read_response();
    CHECK(r.status == 413);
    CHECK(r.header("Connection") == "close");
    CHECK(c.wait_closed());
    CHECK(rig.up.received().empty());
    // A chunked body is cut off as soon as it passes the limit, without draining the rest.
    RawClient d(rig.proxy.port());
    d.send(post("Transfer-Encoding: chunked\r\n"));
    std::string chunk = "400\r\n" + std::string(1024, 'x') + "\r\n";
    auto start = Clock::now();
    HttpResponse answer;
    for (int i = 0; i < 4096 && answer.status == 0; ++i) {
      if (!d.try_send(chunk)) break;
      if (d.fill(milliseconds(0)) || d.peer_closed()) answer = d.read_response();
    }
    if (answer.status == 0) answer = d.read_response();
    CHECK(answer.status == 413);
    CHECK(ms_since(start) < 3000);
    CHECK(d.wait_closed());
    CHECK(rig.up.received().find(std::string(1024, 'x')) == std::string::npos);
  }

  TEST_CASE(
      "conformance row 30: a body shorter than its length stalls into 408, the upstream connection is "
      "aborted") {
    Limits limits;
    limits.body_timeout = Millis(500);
    Rig rig(limits, milliseconds(3000));
    RawClient c(rig.proxy.port());
    c.send(post("Content-Length: 100\r\n", "0123456789"));
    auto r = c.read_response();
    CHECK(r.status == 408);
    CHECK(r.header("Connection") == "close");
    CHECK(c.wait_closed());
    // The upstream got the head (and whatever of the 10 bytes it read), then its connection was closed:
    // with 90 bytes missing it can never take the request for a complete one.
    REQUIRE(rig.up.wait_for_heads(1, milliseconds(2000)));

    // A chunked body that ends without its final chunk when the client closes: the upstream
    // connection is aborted, the final chunk is never sent for it.
    Rig rig2({}, milliseconds(3000));
    {
      RawClient d(rig2.proxy.port());
      d.send(post("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n"));
      REQUIRE(rig2.up.wait_for_heads(1, milliseconds(2000)));
      d.shutdown_write();
      auto r2 = d.read_response();
      CHECK((r2.status == 0 || r2.status == 400));
    }
    std::this_thread::sleep_for(milliseconds(200));
    CHECK(rig2.up.received().find("0\r\n\r\n") == std::string::npos);
  }

  // ---- connection and message rules (rows 16-21) ---------------------------------------------------------

  TEST_CASE("conformance row 16: a bad request followed by a good pipelined one is one 400 and close") {
    // ATS good_request_after_bad: the second request never reaches the backend.
    expect_all_rejected({"GET / HTTP/1.1\r\nHost : a\r\n\r\nGET / HTTP/1.1\r\nHost: boa\r\n\r\n",
                         "GET /\x01 HTTP/1.1\r\nHost: proxy.test\r\n\r\n" + kGood,
                         "GET / HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: +3\r\n\r\nabc" + kGood},
                        {400});
  }

  TEST_CASE("conformance row 17: Host missing, repeated or malformed is 400") {
    expect_all_rejected({"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n" + kGood,
                         "GET / HTTP/1.1\r\nHost: proxy.test\r\nHost: proxy.test\r\n\r\n" + kGood,
                         "GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n" + kGood,
                         "GET / HTTP/1.1\r\nHost: a.test/path\r\n\r\n" + kGood,
                         "GET / HTTP/1.1\r\nHost: user@a.test\r\n\r\n" + kGood,
                         "GET / HTTP/1.1\r\nHost: a.test,b.test\r\n\r\n" + kGood},
                        {400});
  }

  TEST_CASE("conformance row 18: absolute-form never dials its authority, a Host mismatch is 400") {
    // The authority names a live server that is not an upstream: it must never hear from the proxy.
    ScriptedUpstream other(UpstreamScript{.response = kOk});
    const std::string authority = "127.0.0.1:" + std::to_string(other.port());
    auto e = start_echo();
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    for (auto how : {Delivery::Whole, Delivery::ByteByByte}) {
      CAPTURE(delivery_name(how));
      {
        RawClient c(proxy.port());
        deliver(c, "GET http://" + authority + "/abs?x=1 HTTP/1.1\r\nHost: " + authority + "\r\n\r\n", how);
        auto r = c.read_response();
        REQUIRE(r.status == 200);
        auto doc = r.json();
        CHECK(doc["target"] == "/abs?x=1");
        CHECK(echo_header(doc, "Host") == authority);
      }
      {
        RawClient c(proxy.port());
        deliver(c, "GET http://" + authority + "/x HTTP/1.1\r\nHost: proxy.test\r\n\r\n" + kGood, how);
        auto r = c.read_response();
        CHECK(r.status == 400);
        CHECK(r.header("Connection") == "close");
        CHECK(c.wait_closed());
      }
    }
    CHECK(other.connections() == 0);
  }

  TEST_CASE("conformance row 19: request-target misuse is 400 and OPTIONS star is forwarded") {
    {
      Rig rig;
      for (std::string line : {"GET *", "GET admin", "OPTIONS */test", "GET a/b"})
        expect_rejected(rig, line + " HTTP/1.1\r\nHost: proxy.test\r\n\r\n" + kGood, {400});
    }
    auto e = start_echo();
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    for (auto how : {Delivery::Whole, Delivery::ByteByByte}) {
      CAPTURE(delivery_name(how));
      RawClient c(proxy.port());
      deliver(c, "OPTIONS * HTTP/1.1\r\nHost: proxy.test\r\n\r\n", how);
      auto r = c.read_response();
      REQUIRE(r.status == 200);
      CHECK(r.json()["method"] == "OPTIONS");
    }
  }

  TEST_CASE("conformance row 20: CONNECT and TRACE are refused, no tunnel is opened") {
    ScriptedUpstream other(UpstreamScript{.response = kOk});
    const std::string authority = "127.0.0.1:" + std::to_string(other.port());
    expect_all_rejected({"CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n\r\n" + kGood,
                         "CONNECT / HTTP/1.1\r\nHost: proxy.test\r\n\r\n" + kGood,
                         "CONNECT host HTTP/1.1\r\nHost: host\r\n\r\n" + kGood,
                         "TRACE / HTTP/1.1\r\nHost: proxy.test\r\n\r\n" + kGood,
                         "TRACE / HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 4\r\n\r\nbody" + kGood},
                        {405, 501});
    CHECK(other.connections() == 0);
  }

  TEST_CASE("conformance row 21: request-line junk is 400") {
    std::vector<std::string> inputs;
    for (std::string line : {"GET /a b HTTP/1.1", "GET /\x02 HTTP/1.1", "GET /% HTTP/1.1", "GET /%1 HTTP/1.1",
                             "GET / HTTP/11.1", "GET / HTP/1.1", "GET  / HTTP/1.1", "G(T / HTTP/1.1"})
      inputs.push_back(line + "\r\nHost: proxy.test\r\n\r\n" + kGood);
    expect_all_rejected(inputs, {400});
    // An unsupported version is 505, also a rejection.
    expect_all_rejected({"GET / HTTP/2.0\r\nHost: proxy.test\r\n\r\n" + kGood}, {505});
  }

  // ---- headers on the way through (rows 22-25) --------------------------------------------------------

  TEST_CASE("conformance row 22: Connection-named and hop-by-hop fields never reach the upstream") {
    ScriptedUpstream up(UpstreamScript{.response = kOk});
    ProxyFixture proxy(make_scenario({make_route({up.url()})}));
    auto r = fetch(
        proxy.port(),
        "GET /hop HTTP/1.1\r\nHost: proxy.test\r\nConnection: X-Internal-Auth, keep-alive, X-Foo\r\n"
        "Connection: X-Bar\r\nX-Internal-Auth: admin\r\nX-Foo: 1\r\nX-Bar: 2\r\nKeep-Alive: timeout=5\r\n"
        "Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\nX-Kept: "
        "yes\r\n\r\n");
    REQUIRE(r.status == 200);
    REQUIRE(up.wait_for_heads(1, milliseconds(2000)));
    auto got = up.received();
    INFO("upstream received: " << printable(got));
    std::string lower;
    for (char ch : got) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    for (std::string name : {"x-internal-auth", "x-foo", "x-bar", "keep-alive:", "proxy-connection",
                             "\r\nte:", "trailer:", "upgrade:", "admin"}) {
      CAPTURE(name);
      CHECK(lower.find(name) == std::string::npos);
    }
    CHECK(lower.find("x-kept: yes") != std::string::npos);
  }

  TEST_CASE("conformance row 23: X-Forwarded-For is appended in order and Via is added") {
    auto e = start_echo();
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    auto r = fetch(proxy.port(),
                   "GET / HTTP/1.1\r\nHost: proxy.test\r\nX-Forwarded-For: 1.2.3.4\r\n"
                   "X-Forwarded-For: 5.6.7.8, 9.9.9.9\r\nVia: 1.1 edge\r\n\r\n");
    REQUIRE(r.status == 200);
    auto doc = r.json();
    CHECK(echo_header_count(doc, "X-Forwarded-For") == 1);
    CHECK(echo_header(doc, "X-Forwarded-For") == "1.2.3.4, 5.6.7.8, 9.9.9.9, 127.0.0.1");
    auto via = echo_header(doc, "Via");
    REQUIRE(via.has_value());
    CHECK(via->rfind("1.1 edge, 1.1 ", 0) == 0);
  }

  TEST_CASE("conformance row 24: Expect 100-continue once, unknown expectations 417, none for HTTP/1.0") {
    auto e = start_echo();
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    {
      RawClient c(proxy.port());
      c.send(post("Content-Length: 5\r\nExpect: 100-continue\r\n"));
      auto interim = c.read_response();
      REQUIRE(interim.status == 100);
      c.send("hello");
      auto r = c.read_response();
      CHECK(r.status == 200);
      CHECK(r.json()["body_size"] == 5);
      // Nothing more: exactly one 100.
      c.send(get_request("/next"));
      CHECK(c.read_response().status == 200);
    }
    {
      RawClient c(proxy.port());
      c.send(post("Content-Length: 5\r\nExpect: foo\r\n", "hello"));
      auto r = c.read_response();
      CHECK(r.status == 417);
    }
    {
      RawClient c(proxy.port());
      c.send("POST / HTTP/1.0\r\nHost: proxy.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello");
      auto r = c.read_response();
      CHECK(r.status == 200);  // the body was sent with the head; a 100 would have come first
    }
  }

  TEST_CASE("conformance row 25: a field name with an underscore never reaches the upstream by default") {
    ScriptedUpstream up(UpstreamScript{.response = kOk});
    ProxyFixture proxy(make_scenario({make_route({up.url()})}));
    auto r = fetch(proxy.port(), get("X_Auth: admin\r\nX-Auth: user\r\n"));
    REQUIRE(r.status == 200);
    REQUIRE(up.wait_for_heads(1, milliseconds(2000)));
    auto got = up.received();
    INFO("upstream received: " << printable(got));
    CHECK(got.find("X_Auth") == std::string::npos);
    CHECK(got.find("X-Auth: user") != std::string::npos);
  }

  TEST_CASE("conformance row 25: underscore_headers reject answers 400") {
    Limits limits;
    limits.underscore_headers = UnderscoreHeaders::Reject;
    // Also when Connection names the field (it would be stripped as hop-by-hop) and with a body.
    expect_all_rejected({get("X_Auth: admin\r\n") + kGood, get("Connection: X_Auth\r\nX_Auth: admin\r\n") + kGood,
                         post("Content-Length: 5\r\nX_Auth: admin\r\n", "hello") + kGood},
                        {400}, limits);
  }

  // ---- limits (row 26) ----------------------------------------------------------------------------------

  TEST_CASE("conformance row 26: long line 414, big field or head 431, too many fields 431") {
    std::string many;
    for (int i = 0; i < 101; ++i) many += "X-F" + std::to_string(i) + ": v\r\n";
    std::string big_head;
    for (int i = 0; i < 5; ++i)
      big_head += "X-Big" + std::to_string(i) + ": " + std::string(7000, 'b') + "\r\n";
    Rig rig;
    // Whole only: byte by byte would take thousands of writes, and the parser test covers their splits.
    expect_rejected(rig, "GET /" + std::string(9000, 'a') + " HTTP/1.1\r\nHost: proxy.test\r\n\r\n", {414},
                    {Delivery::Whole});
    expect_rejected(rig, get("X-Long: " + std::string(9000, 'l') + "\r\n"), {431}, {Delivery::Whole});
    expect_rejected(rig, get(big_head), {431}, {Delivery::Whole});
    expect_rejected(rig, get(many), {431}, {Delivery::Whole});
    // The same after a good request on a keep-alive connection, and pipelined behind one.
    auto e = start_echo();
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    RawClient c(proxy.port());
    c.send(kGood);
    CHECK(c.read_response().status == 200);
    c.send(kGood + get(many));
    CHECK(c.read_response().status == 200);
    auto r = c.read_response();
    CHECK(r.status == 431);
    CHECK(c.wait_closed());
  }

  // ---- misbehaving upstreams (rows 33-39) -------------------------------------------------------------

  TEST_CASE("conformance row 35: an upstream closing before its head is 502 and a sent POST is not retried") {
    ScriptedUpstream up(UpstreamScript{.response = ""});
    ProxyFixture proxy(make_scenario({make_route({up.url()})}));
    auto r = fetch(proxy.port(), post("Content-Length: 5\r\n", "hello"));
    CHECK(r.status == 502);
    CHECK(r.has_header("X-Rproxy-Error"));
    std::this_thread::sleep_for(milliseconds(100));
    CHECK(up.heads_received() == 1);
    auto g = fetch(proxy.port(), "GET /x HTTP/1.1\r\nHost: proxy.test\r\n\r\n");
    CHECK(g.status == 502);
  }

  TEST_CASE("conformance row 36: bad response framing is 502 and split bytes never reach the client") {
    for (std::string response : {"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nok",
                                 "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 30\r\n\r\nok",
                                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: "
                                 "30\r\n\r\n0\r\n\r\nHTTP/1.1 200 Response splitting",
                                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, "
                                 "chunked\r\n\r\n0\r\n\r\nHTTP/1.1 200 Response splitting"}) {
      CAPTURE(printable(response));
      ScriptedUpstream up(UpstreamScript{.response = response, .exchanges = 2});
      ProxyFixture proxy(make_scenario({make_route({up.url()})}));
      RawClient c(proxy.port());
      c.send(kGood);
      auto r = c.read_response();
      CHECK(r.status == 502);
      CHECK(r.header("X-Rproxy-Error") == "upstream_bad_response");
      c.send(kGood);
      auto rest = c.read_until_close(milliseconds(1500));
      CHECK(rest.find("Response splitting") == std::string::npos);
    }
  }

  TEST_CASE("conformance row 38: extra bytes after a body are dropped and that connection is not reused") {
    for (std::string response :
         {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL",
          "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL"}) {
      CAPTURE(printable(response));
      ScriptedUpstream up(UpstreamScript{.response = response, .exchanges = 3});
      ProxyFixture proxy(make_scenario({make_route({up.url()})}));
      RawClient c(proxy.port());
      for (int i = 0; i < 3; ++i) {
        CAPTURE(i);
        c.send(kGood);
        auto r = c.read_response();
        CHECK((r.status == 200 || r.status == 204));
        CHECK(r.body.find("EVIL") == std::string::npos);
      }
      CHECK(up.connections() == 3);
    }
    // A body on a response to HEAD.
    ScriptedUpstream up(
        UpstreamScript{.response = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL", .exchanges = 2});
    ProxyFixture proxy(make_scenario({make_route({up.url()})}));
    RawClient c(proxy.port());
    c.send("HEAD / HTTP/1.1\r\nHost: proxy.test\r\n\r\n");
    auto h = c.read_response({.head_request = true});
    CHECK(h.status == 200);
    c.send(kGood);
    auto r = c.read_response();
    CHECK(r.status == 200);
    CHECK(r.body == "EVIL");  // the real answer to the GET, from a fresh connection
    CHECK(up.connections() == 2);
  }

  TEST_CASE("conformance row 37: a response cut off mid-body is passed on truncated and never recorded") {
    TempDir dir;
    ScriptedUpstream up(UpstreamScript{.response = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial",
                                       .end = UpstreamScript::End::Reset});
    auto s = make_scenario({make_route({up.url()})});
    StageSpec rec;
    rec.type = "record";
    rec.params = {{"out", dir.file("rec.json")}};
    s.routes[0].stages.push_back(rec);
    {
      ProxyFixture proxy(s);
      RawClient c(proxy.port());
      c.send(kGood);
      auto r = c.read_response();
      CHECK(r.status == 200);
      CHECK_FALSE(r.complete);
      CHECK(r.body == "partial");
      CHECK(c.wait_closed());
    }
    auto doc = nlohmann::json::parse(read_file(dir.file("rec.json")));
    CHECK(doc["interactions"].empty());
  }

  // ---- safe defaults (row 43) ---------------------------------------------------------------------------

  TEST_CASE("conformance row 43: Host and absolute-form cannot aim the proxy at another server") {
    ScriptedUpstream other(UpstreamScript{.response = kOk});
    const std::string authority = "127.0.0.1:" + std::to_string(other.port());
    auto e = start_echo();
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    for (const std::string& req : std::vector<std::string>{
             "GET / HTTP/1.1\r\nHost: " + authority + "\r\n\r\n",
             "GET http://" + authority + "/ HTTP/1.1\r\nHost: " + authority + "\r\n\r\n",
             "GET http://169.254.169.254/latest/meta-data HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n",
             "GET http://localhost:" + std::to_string(proxy.port()) +
                 "/ HTTP/1.1\r\nHost: localhost:" + std::to_string(proxy.port()) + "\r\n\r\n"}) {
      CAPTURE(printable(req));
      auto r = fetch(proxy.port(), req);
      REQUIRE(r.status == 200);
      CHECK(r.json()["name"] == "echo");  // answered by the configured upstream
    }
    CHECK(other.connections() == 0);
  }

  TEST_CASE("conformance row 43: a request that went round through rproxy 8 times gets 508") {
    std::string seven;
    for (int i = 0; i < 7; ++i) seven += (i ? ", " : "") + "1.1 rproxy"s;
    {
      Rig rig;
      expect_rejected(rig, get("Via: " + seven + ", 1.1 rproxy (loop)\r\n") + kGood, {508});
      expect_rejected(rig, get("Via: 1.0 rproxy\r\nVia: " + seven + "\r\n") + kGood, {508});
      // RWS may be tabs or several spaces, and the protocol may carry its name.
      expect_rejected(rig, get("Via: " + seven + ", HTTP/1.1\t \trproxy\r\n") + kGood, {508});
    }
    // Seven hops, or other proxies' entries, are not a loop.
    auto e = start_echo();
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    for (const auto& via :
         {seven, "1.1 a, 1.1 b, 1.1 c, 1.1 d, 1.1 e, 1.1 f, 1.1 g, 1.1 h, 1.1 rproxy-other"s}) {
      auto r = fetch(proxy.port(), get("Via: " + via + "\r\n"));
      CHECK(r.status == 200);
    }
  }

  TEST_CASE("conformance row 43: listeners default to loopback and a bare port means loopback") {
    auto s = scenario_from_json(
        nlohmann::json::parse(R"({"version": 1, "routes": [{"upstreams": ["http://127.0.0.1:9"]}]})"));
    REQUIRE(s.listeners.size() == 1);
    CHECK(s.listeners[0].host == "127.0.0.1");
    for (std::string listen : {"9000", ":9000"}) {
      auto t = scenario_from_json(
          nlohmann::json::parse(R"({"version": 1, "listeners": [")" + listen +
                                R"("], "routes": [{"upstreams": ["http://127.0.0.1:9"]}]})"));
      CHECK(t.listeners.at(0).host == "127.0.0.1");
    }
  }
}
