// Integration tests for HTTPS: TLS listeners with the local CA (checked with curl and openssl s_client),
// plain HTTP on the TLS port, the HTTP→HTTPS redirect, https:// upstreams with verification, and the core's
// streaming, WebSocket and stages over TLS.
#include <doctest/doctest.h>
#include <openssl/ssl.h>
#include <stdlib.h>

#include <string>
#include <thread>
#include <vector>

#include "support/echo_json.hpp"
#include "support/proxy_fixture.hpp"
#include "support/raw_client.hpp"
#include "support/scripted_upstream.hpp"
#include "support/subprocess.hpp"
#include "tls/local_ca.hpp"

using namespace rproxy;
using namespace rproxy::test;
using nlohmann::json;

namespace {

// A CA of its own per test, in a temporary data directory.
struct TestCa {
  TempDir dir;
  tls::LocalCertificates certs = tls::ensure_local_certificates(dir.path());
};

Scenario tls_scenario(const std::string& upstream, const TestCa& ca) {
  auto s = make_scenario({make_route({upstream})});
  s.listeners[0].tls = true;
  s.tls.cert = ca.certs.cert;
  s.tls.key = ca.certs.key;
  return s;
}

TlsOptions verify_with(const TestCa& ca, const std::string& name = "localhost") {
  TlsOptions o;
  o.ca_file = ca.certs.ca_cert;
  o.server_name = name;
  return o;
}

std::string https(std::uint16_t port, const std::string& target = "/",
                  const std::string& host = "localhost") {
  return "https://" + host + ":" + std::to_string(port) + target;
}

// s_client: one TLS connection with openssl's own client; returns its stdout and stderr together.
RunResult s_client(std::uint16_t port, std::vector<std::string> extra) {
  std::vector<std::string> argv{"openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(port)};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto r = run_command(std::move(argv), std::chrono::seconds(10));
  r.out += r.err;
  return r;
}

}  // namespace

TEST_SUITE("tls") {
  TEST_CASE("tls: curl verifies the local CA chain and the request reaches the upstream") {
    TestCa ca;
    auto e = start_echo("tls");
    ProxyFixture proxy(tls_scenario(echo_url(*e), ca));
    // (*.localhost is in the certificate too, but OpenSSL-based clients refuse a wildcard over a single
    // label, so curl cannot check it here.)
    for (std::string host : {"localhost", "127.0.0.1"}) {
      CAPTURE(host);
      auto r = run_curl({"--cacert", ca.certs.ca_cert, "--resolve",
                         host + ":" + std::to_string(proxy.port()) + ":127.0.0.1", "-D", "-",
                         https(proxy.port(), "/hello?x=1", host)});
      REQUIRE(r.exit_code == 0);
      CHECK(r.out.find("HTTP/1.1 200") == 0);
      auto body = json::parse(r.out.substr(r.out.find("\r\n\r\n") + 4));
      CHECK(body["target"] == "/hello?x=1");
      // The upstream learns the client used HTTPS.
      CHECK(body["headers"].dump().find("\"X-Forwarded-Proto\",\"https\"") != std::string::npos);
    }
    // IPv6 loopback is in the certificate too (when this machine has ::1).
    if (ipv6_loopback_available()) {
      auto s = tls_scenario(echo_url(*e), ca);
      s.listeners[0].host = "::1";
      ProxyFixture v6(s);
      auto r = run_curl({"--cacert", ca.certs.ca_cert, "-o", "/dev/null", "-w", "%{http_code}",
                         "https://[::1]:" + std::to_string(v6.port()) + "/"});
      CHECK(r.exit_code == 0);
      CHECK(r.out == "200");
    }
    // Verification is real: without the CA, or with another CA, curl refuses (exit 60).
    auto untrusted = run_curl({"-o", "/dev/null", https(proxy.port())});
    CHECK(untrusted.exit_code == 60);
    TestCa other;
    auto wrong = run_curl({"--cacert", other.certs.ca_cert, "-o", "/dev/null", https(proxy.port())});
    CHECK(wrong.exit_code == 60);
    // A name the certificate does not cover fails hostname verification.
    auto r = run_curl({"--cacert", ca.certs.ca_cert, "--resolve",
                       "example.com:" + std::to_string(proxy.port()) + ":127.0.0.1", "-o", "/dev/null",
                       https(proxy.port(), "/", "example.com")});
    CHECK(r.exit_code == 60);
  }

  TEST_CASE("tls: openssl s_client sees a valid chain, the SANs, ALPN http/1.1 and TLS 1.2 or newer only") {
    TestCa ca;
    auto e = start_echo();
    ProxyFixture proxy(tls_scenario(echo_url(*e), ca));
    auto ok = s_client(proxy.port(),
                       {"-servername", "localhost", "-CAfile", ca.certs.ca_cert, "-verify_return_error",
                        "-verify_hostname", "localhost", "-alpn", "h2,http/1.1", "-showcerts"});
    CHECK(ok.out.find("Verify return code: 0 (ok)") != std::string::npos);
    CHECK(ok.out.find("ALPN protocol: http/1.1") != std::string::npos);
    CHECK(ok.out.find("New, TLSv1.3, Cipher is TLS_") != std::string::npos);
    // The served leaf's SANs, read back from the wire.
    auto sans = run_command(
        {"sh", "-c",
         "openssl s_client -connect 127.0.0.1:" + std::to_string(proxy.port()) +
             " -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName"});
    CHECK(sans.out.find("DNS:localhost") != std::string::npos);
    CHECK(sans.out.find("DNS:*.localhost") != std::string::npos);
    CHECK(sans.out.find("IP Address:127.0.0.1") != std::string::npos);
    CHECK(sans.out.find("IP Address:0:0:0:0:0:0:0:1") != std::string::npos);
    // h2 alone is not negotiated (rproxy speaks HTTP/1.1): no ALPN answer.
    auto h2 = s_client(proxy.port(), {"-servername", "localhost", "-alpn", "h2"});
    CHECK(h2.out.find("No ALPN negotiated") != std::string::npos);
    // TLS 1.2 works, with a forward-secret AEAD suite.
    auto v12 = s_client(proxy.port(), {"-servername", "localhost", "-CAfile", ca.certs.ca_cert, "-tls1_2"});
    CHECK(v12.out.find("New, TLSv1.2, Cipher is ECDHE-") != std::string::npos);
    // TLS 1.1 and 1.0 are refused by rproxy (the client is allowed to offer them with SECLEVEL=0).
    for (std::string flag : {"-tls1_1", "-tls1"}) {
      CAPTURE(flag);
      auto old = s_client(proxy.port(), {"-servername", "localhost", flag, "-cipher", "DEFAULT:@SECLEVEL=0"});
      CHECK(old.out.find("Cipher is (NONE)") != std::string::npos);
      CHECK(old.out.find("BEGIN CERTIFICATE") == std::string::npos);
    }
    // Our own client, which certainly offers only TLS 1.1: refused with a protocol_version alert.
    RawClient c(proxy.port());
    TlsOptions old = verify_with(ca);
    old.max_version = TLS1_1_VERSION;
    CHECK_FALSE(c.start_tls(old));
    CAPTURE(c.tls_error());
    CHECK(c.tls_error().find("version") != std::string::npos);
  }

  TEST_CASE("tls: a client that stalls before or during the handshake is dropped at the head deadline") {
    TestCa ca;
    auto e = start_echo();
    auto s = tls_scenario(echo_url(*e), ca);
    s.limits.head_timeout = Millis(500);
    ProxyFixture proxy(s);
    {
      RawClient silent(proxy.port());
      auto start = Clock::now();
      CHECK(silent.wait_closed(milliseconds(3000)));
      CHECK(ms_since(start) < 1500);
    }
    {
      // The first bytes of a ClientHello, then nothing.
      RawClient partial(proxy.port());
      partial.send(std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11));
      auto start = Clock::now();
      CHECK(partial.wait_closed(milliseconds(3000)));
      CHECK(ms_since(start) < 1500);
    }
    // Meanwhile and afterwards, real clients are served.
    CHECK(fetch_tls(proxy.port(), get_request("/ok", "localhost"), verify_with(ca)).status == 200);
  }

  TEST_CASE("tls: plain HTTP on the TLS port gets a clear 400 naming the https URL") {
    TestCa ca;
    auto e = start_echo();
    ProxyFixture proxy(tls_scenario(echo_url(*e), ca));
    auto r = fetch(proxy.port(), get_request("/page?q=1", "localhost:" + std::to_string(proxy.port())));
    REQUIRE(r.status == 400);
    CHECK(r.header("X-Rproxy-Error") == "http_request_on_https_port");
    CHECK(r.body.find("https://localhost:" + std::to_string(proxy.port()) + "/page?q=1") !=
          std::string::npos);
    CHECK(r.header("Connection") == "close");
    // The TLS port still serves TLS afterwards.
    auto ok = fetch_tls(proxy.port(), get_request("/after", "localhost"), verify_with(ca));
    CHECK(ok.status == 200);
  }

  TEST_CASE("tls: --redirect-http answers 308 to the same host and path on the HTTPS listener") {
    TestCa ca;
    auto e = start_echo();
    auto s = tls_scenario(echo_url(*e), ca);
    s.tls.redirect_http = ListenAddress{"127.0.0.1", 0, false};
    ProxyFixture proxy(s);
    auto tls_port = proxy.port(0);
    auto plain_port = proxy.server().ports().at(1);
    auto r = fetch(plain_port, get_request("/a/b?c=d", "app.localhost:" + std::to_string(plain_port)));
    REQUIRE(r.status == 308);
    CHECK(r.header("Location") == "https://app.localhost:" + std::to_string(tls_port) + "/a/b?c=d");
    // curl follows it to the HTTPS listener and gets the upstream's answer.
    auto followed = run_curl(
        {"-L", "--cacert", ca.certs.ca_cert, "http://localhost:" + std::to_string(plain_port) + "/x"});
    REQUIRE(followed.exit_code == 0);
    CHECK(json::parse(followed.out)["target"] == "/x");
  }

  TEST_CASE("tls: https upstream is verified - right CA passes, wrong CA is a 502 naming the reason") {
    TestCa upstream_ca;
    auto e = start_echo("secure");
    ProxyFixture secure_upstream(tls_scenario(echo_url(*e), upstream_ca));
    const auto upstream = "https://127.0.0.1:" + std::to_string(secure_upstream.port());

    auto route = make_route({upstream});
    route.upstream_tls.ca = upstream_ca.certs.ca_cert;
    {
      ProxyFixture front(make_scenario({route}));
      RawClient c(front.port());
      for (int i = 0; i < 3; ++i) {
        c.send(get_request("/v?i=" + std::to_string(i)));
        auto r = c.read_response();
        REQUIRE(r.status == 200);
        CHECK(r.json()["target"] == "/v?i=" + std::to_string(i));
        CHECK(r.header("X-Echo-Name") == "secure");
      }
    }
    // Three requests, one TLS connection to the upstream: the connection was pooled and reused.
    CHECK(secure_upstream.server().stats().connections_accepted == 1);

    TestCa other;
    route.upstream_tls.ca = other.certs.ca_cert;
    {
      ProxyFixture front(make_scenario({route}));
      auto r = fetch(front.port(), get_request("/"));
      CHECK(r.status == 502);
      CHECK(r.header("X-Rproxy-Error") == "upstream_tls");
      CAPTURE(r.body);
      CHECK(r.body.find("certificate verify failed") != std::string::npos);
      CHECK(r.body.find(upstream) != std::string::npos);
    }
    // The system store alone does not know the local CA either.
    route.upstream_tls.ca.clear();
    {
      ProxyFixture front(make_scenario({route}));
      auto r = fetch(front.port(), get_request("/"));
      CHECK(r.status == 502);
      CHECK(r.header("X-Rproxy-Error") == "upstream_tls");
    }
    // The right CA but a name the certificate does not carry.
    route.upstream_tls.ca = upstream_ca.certs.ca_cert;
    route.upstream_tls.server_name = "api.example.com";
    {
      ProxyFixture front(make_scenario({route}));
      auto r = fetch(front.port(), get_request("/"));
      CHECK(r.status == 502);
      CAPTURE(r.body);
      CHECK(r.body.find("certificate verify failed") != std::string::npos);
    }
    // insecure skips verification.
    route.upstream_tls = UpstreamTls{"", true, ""};
    {
      ProxyFixture front(make_scenario({route}));
      CHECK(fetch(front.port(), get_request("/")).status == 200);
      CHECK_FALSE(front.server().notices().empty());
    }
  }

  TEST_CASE("tls: a plain HTTP upstream behind an https URL is a 502 or a 504 that says so, never a hang") {
    // An upstream that answers the ClientHello with plain HTTP (as nginx does): 502 at once.
    UpstreamScript script;
    script.read_head = false;
    script.response = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    ScriptedUpstream plain(script);
    auto route = make_route({"https://127.0.0.1:" + std::to_string(plain.port())});
    {
      ProxyFixture front(make_scenario({route}));
      auto start = Clock::now();
      auto r = fetch(front.port(), get_request("/"));
      CHECK(r.status == 502);
      CHECK(r.header("X-Rproxy-Error") == "upstream_tls");
      CAPTURE(r.body);
      CHECK(r.body.find("wrong version number") != std::string::npos);
      CHECK(ms_since(start) < 1000);
    }
    // One that waits for more bytes (the echo upstream): the connect timeout ends it, naming TLS.
    auto e = start_echo();
    route = make_route({"https://127.0.0.1:" + std::to_string(e->port())});
    route.connect_timeout = Millis(1000);
    ProxyFixture front(make_scenario({route}));
    auto start = Clock::now();
    auto r = fetch(front.port(), get_request("/"), {.timeout = milliseconds(8000)});
    CHECK(r.status == 504);
    CAPTURE(r.body);
    CHECK(r.body.find("TLS handshake with https://127.0.0.1:") != std::string::npos);
    CHECK(ms_since(start) < 2500);
  }

  TEST_CASE("tls: websocket over TLS (wss) is tunnelled to the upstream") {
    TestCa ca;
    auto e = start_echo("ws");
    ProxyFixture proxy(tls_scenario(echo_url(*e), ca));
    RawClient c(proxy.port());
    REQUIRE(c.start_tls(verify_with(ca)));
    c.send(websocket_upgrade("/ws", "localhost"));
    auto head = c.read_head();
    REQUIRE(head.status == 101);
    CHECK(head.header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    const WebSocketMask mask{0x11, 0x22, 0x33, 0x44};
    c.send(websocket_client_frame(WebSocketOpcode::Text, "hello over wss", mask));
    auto frame = c.read_frame();
    REQUIRE(frame.has_value());
    CHECK(frame->payload == "hello over wss");
    std::string big(200000, 'x');
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
    c.send(websocket_client_frame(WebSocketOpcode::Binary, big, mask));
    frame = c.read_frame();
    REQUIRE(frame.has_value());
    CHECK(frame->payload == big);
    c.send(websocket_client_frame(WebSocketOpcode::Close, std::string("\x03\xe8", 2), mask));
    frame = c.read_frame();
    REQUIRE(frame.has_value());
    CHECK(frame->header.opcode == WebSocketOpcode::Close);
    CHECK(c.wait_closed());
  }

  TEST_CASE("tls: SSE and large bodies stream through TLS on both sides") {
    TestCa ca;
    auto e = start_echo("stream");
    ProxyFixture secure_upstream(tls_scenario(echo_url(*e), ca));
    auto route = make_route({"https://127.0.0.1:" + std::to_string(secure_upstream.port())});
    route.upstream_tls.ca = ca.certs.ca_cert;
    auto s = make_scenario({route});
    s.listeners[0].tls = true;
    s.tls.cert = ca.certs.cert;
    s.tls.key = ca.certs.key;
    ProxyFixture proxy(s);

    RawClient c(proxy.port());
    REQUIRE(c.start_tls(verify_with(ca)));
    auto start = Clock::now();
    c.send(get_request("/events?sse=3&interval=300ms", "localhost", "Accept: text/event-stream\r\n"));
    auto head = c.read_head();
    REQUIRE(head.status == 200);
    auto first = c.read_chunk();
    REQUIRE(first.has_value());
    CHECK(first->find("\"seq\":1") != std::string::npos);
    auto first_ms = ms_since(start);
    std::string rest;
    while (auto chunk = c.read_chunk()) {
      if (chunk->empty()) break;
      rest += *chunk;
    }
    CHECK(rest.find("\"seq\":3") != std::string::npos);
    CHECK(first_ms < 450);          // the first event was not held back
    CHECK(ms_since(start) >= 550);  // the stream really took its time

    // 32 MiB down and 8 MiB up, content checked.
    c.send(get_request("/?size=32MiB"));
    auto big = c.read_response({.timeout = milliseconds(30000)});
    REQUIRE(big.status == 200);
    CHECK(big.body.size() == 32u << 20);
    CHECK(first_payload_mismatch(big.body) == -1);
    std::string upload(8u << 20, '\0');
    for (std::size_t i = 0; i < upload.size(); ++i) upload[i] = static_cast<char>(i * 7 + 3);
    c.send("POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: " + std::to_string(upload.size()) +
           "\r\n\r\n");
    c.send(upload);
    auto up = c.read_response({.timeout = milliseconds(30000)});
    REQUIRE(up.status == 200);
    CHECK(up.json()["body_size"] == upload.size());
  }

  TEST_CASE("tls: stages work over TLS - a fault rule and a recording replayed over HTTPS") {
    TestCa ca;
    TempDir dir;
    auto e = start_echo("rec");
    auto s = tls_scenario(echo_url(*e), ca);
    s.routes[0].stages.push_back(
        StageSpec{"fault",
                  "",
                  {{"rules", json::array({{{"name", "teapot"},
                                           {"match", {{"path", "/teapot"}}},
                                           {"fault", {{"type", "abort"}, {"status", 418}}}}})}}});
    s.stages.push_back(StageSpec{"record", "", {{"out", dir.file("tls.json")}}});
    {
      ProxyFixture proxy(s);
      auto tea = fetch_tls(proxy.port(), get_request("/teapot", "localhost"), verify_with(ca));
      CHECK(tea.status == 418);
      auto ok = fetch_tls(proxy.port(), get_request("/recorded?n=1", "localhost"), verify_with(ca));
      CHECK(ok.status == 200);
    }
    Route r;
    auto rs = make_scenario({r});
    rs.listeners[0].tls = true;
    rs.tls.cert = ca.certs.cert;
    rs.tls.key = ca.certs.key;
    rs.stages.push_back(StageSpec{"replay", "", {{"cassette", dir.file("tls.json")}}});
    e.reset();  // the backend is gone: the answer can only come from the recording
    ProxyFixture replay(rs);
    auto again = fetch_tls(replay.port(), get_request("/recorded?n=1", "localhost"), verify_with(ca));
    REQUIRE(again.status == 200);
    CHECK(again.json()["target"] == "/recorded?n=1");
  }

  TEST_CASE("tls: split shadows copies of variant a traffic to an https variant b over TLS") {
    TestCa ca;
    auto a = start_echo("a");
    auto b = start_echo("b");
    ProxyFixture secure_b(tls_scenario(echo_url(*b), ca));
    Route r;
    auto ua = upstream_spec(echo_url(*a));
    ua.name = "a";
    auto ub = upstream_spec("https://127.0.0.1:" + std::to_string(secure_b.port()));
    ub.name = "b";
    r.upstreams = {ua, ub};
    r.upstream_tls.ca = ca.certs.ca_cert;
    r.stages.push_back(
        StageSpec{"split",
                  "",
                  {{"variants", {{{"name", "a"}}, {{"name", "b"}}}},
                   {"shadow", {{"variant", "b"}, {"ignore", {"name", "remote_addr", "headers"}}}}}});
    ProxyFixture proxy(make_scenario({r}));
    int from_b = 0;
    for (int i = 0; i < 20; ++i) {
      auto resp = fetch(proxy.port(), get_request("/s?i=" + std::to_string(i)));
      REQUIRE(resp.status == 200);
      from_b += resp.header("X-Echo-Name") == "b";
    }
    CHECK(from_b == 0);  // the shadow variant gets copies only
    json sh;
    for (int i = 0; i < 50; ++i) {
      sh = proxy.server().report()["stages"]["default/split"]["shadow"];
      if (sh["compared"] == 20 - from_b) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    CAPTURE(sh.dump());
    CHECK(sh["compared"] == 20 - from_b);  // every request served by a was copied to b, over TLS
    CHECK(sh["identical"] == sh["compared"]);
  }

  TEST_CASE("tls: rproxy serve --tls with the local CA, then curl --cacert $(rproxy ca path)") {
    TempDir data;
    auto e = start_echo("cli");
    ::setenv("RPROXY_DATA_DIR", data.path().c_str(), 1);
    auto rp = spawn_rproxy({"serve", "--tls", "--listen", "127.0.0.1:0", "--to", echo_url(*e)});
    CHECK(rp.listening_line.find("rproxy: listening on https://127.0.0.1:") == 0);
    auto path = run_command({rproxy_binary(), "ca", "path"});
    REQUIRE(path.exit_code == 0);
    auto ca_path = path.out.substr(0, path.out.find('\n'));
    CHECK(ca_path == data.file("ca.pem"));
    auto r = run_curl({"--cacert", ca_path, https(rp.port, "/cli")});
    REQUIRE(r.exit_code == 0);
    CHECK(json::parse(r.out)["target"] == "/cli");
    auto notice = rp.proc->wait_for_stderr("rproxy: created a local CA", milliseconds(1000));
    CHECK(notice.has_value());
    // A second run reuses the CA: same file, no "created" line.
    auto before = read_file(ca_path);
    auto rp2 = spawn_rproxy({"serve", "--tls", "--listen", "127.0.0.1:0", "--to", echo_url(*e)});
    CHECK(read_file(ca_path) == before);
    CHECK(rp2.proc->wait_for_stderr("rproxy: HTTPS certificate", milliseconds(2000)).has_value());
    CHECK(rp2.proc->stderr_text().find("created a local CA") == std::string::npos);
    ::unsetenv("RPROXY_DATA_DIR");
  }

  TEST_CASE(
      "tls: with the local CA, every name under localhost gets a certificate naming it (SNI on demand)") {
    TempDir data;
    ::setenv("RPROXY_DATA_DIR", data.path().c_str(), 1);
    auto e = start_echo("sni");
    auto s = make_scenario({make_route({echo_url(*e)})});
    s.listeners[0].tls = true;  // no cert: the local CA's
    ProxyFixture proxy(s);
    const auto port = std::to_string(proxy.port());
    for (std::string host : {"app.localhost", "api.app.localhost", "localhost"}) {
      CAPTURE(host);
      auto r = run_curl({"--cacert", data.file("ca.pem"), "--resolve", host + ":" + port + ":127.0.0.1",
                         https(proxy.port(), "/n", host)});
      REQUIRE(r.exit_code == 0);
      CHECK(json::parse(r.out)["target"] == "/n");
    }
    auto served = [&](const std::string& sni) {
      return run_command({"sh", "-c",
                          "openssl s_client -connect 127.0.0.1:" + port + " -servername " + sni +
                              " </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName"})
          .out;
    };
    auto app = served("app.localhost");
    CHECK(app.find("DNS:app.localhost") != std::string::npos);
    CHECK(app.find("DNS:localhost") == std::string::npos);
    // Names outside localhost get the default certificate, which does not name them.
    auto other = served("example.com");
    CHECK(other.find("DNS:localhost, DNS:*.localhost") != std::string::npos);
    auto r = run_curl({"--cacert", data.file("ca.pem"), "--resolve", "example.com:" + port + ":127.0.0.1",
                       "-o", "/dev/null", https(proxy.port(), "/", "example.com")});
    CHECK(r.exit_code == 60);
    ::unsetenv("RPROXY_DATA_DIR");
  }

  TEST_CASE("tls: bad certificate flags are reported with the flag or JSON path and exit code 2") {
    TempDir dir;
    auto junk = dir.write("junk.pem", "not a certificate\n");
    auto r = run_command(
        {rproxy_binary(), "serve", "--tls-cert", junk, "--tls-key", junk, "--to", "http://127.0.0.1:9"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("rproxy: error: tls.cert: cannot load certificate " + junk) != std::string::npos);
    auto half = run_command({rproxy_binary(), "serve", "--tls-cert", junk, "--to", "http://127.0.0.1:9"});
    CHECK(half.exit_code == 2);
    CHECK(half.err.find("--tls-cert: give --tls-cert and --tls-key together") != std::string::npos);
    auto ca = run_command({rproxy_binary(), "serve", "--upstream-ca", junk, "--to", "https://127.0.0.1:9"});
    CHECK(ca.exit_code == 2);
    CHECK(ca.err.find("routes[0].upstream_tls.ca: cannot load CA file " + junk) != std::string::npos);
    auto both = run_command(
        {rproxy_binary(), "serve", "--upstream-ca", junk, "--insecure", "--to", "https://127.0.0.1:9"});
    CHECK(both.exit_code == 2);
    CHECK(both.err.find("ca and insecure contradict") != std::string::npos);
    auto redirect =
        run_command({rproxy_binary(), "serve", "--redirect-http", "8080", "--to", "http://127.0.0.1:9"});
    CHECK(redirect.exit_code == 2);
    CHECK(redirect.err.find("tls.redirect_http: redirects to an https:// listener, and there is none") !=
          std::string::npos);
  }
}
