// Integration tests: the rproxy binary itself (RPROXY_BINARY) — start-up lines, --print-scenario, flag
// and scenario errors, graceful SIGTERM drain, IPv6 listeners.
#include <signal.h>

#include <doctest/doctest.h>

#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "support/echo_json.hpp"
#include "support/proxy_fixture.hpp"
#include "support/raw_client.hpp"
#include "support/scripted_upstream.hpp"
#include "support/subprocess.hpp"

using namespace rproxy;
using namespace rproxy::test;

namespace {

std::size_t error_lines(const std::string& text) {
  std::size_t n = 0;
  for (const auto& l : lines_of(text))
    if (l.rfind("rproxy: error:", 0) == 0) ++n;
  return n;
}

// is_listening_line: "rproxy: listening on http://HOST:PORT" with a real (non-zero) port.
bool is_listening_line(const std::string& line, const std::string& host) {
  const std::string prefix = "rproxy: listening on http://" + host + ":";
  if (line.rfind(prefix, 0) != 0) return false;
  auto port = line.substr(prefix.size());
  return !port.empty() && port.size() <= 5 && port[0] != '0' &&
         port.find_first_not_of("0123456789") == std::string::npos;
}

RunResult rproxy_run(std::vector<std::string> args) {
  args.insert(args.begin(), rproxy_binary());
  return run_command(std::move(args), std::chrono::seconds(10));
}

}  // namespace

TEST_SUITE("serve") {
  TEST_CASE("serve: cli prints the listening address with the real port") {
    auto e = start_echo("cli");
    auto rp = spawn_rproxy({"serve", "--listen", "127.0.0.1:0", "--to", echo_url(*e)});
    CHECK(is_listening_line(rp.listening_line, "127.0.0.1"));
    CHECK(rp.port != 0);
    auto routes_line = rp.proc->wait_for_stderr("rproxy:   ", milliseconds(2000));
    REQUIRE(routes_line);
    CHECK(routes_line->find(echo_url(*e)) != std::string::npos);

    auto res = run_curl({"-H", "Host: cli.test", "http://127.0.0.1:" + std::to_string(rp.port) + "/hello?x=1"});
    REQUIRE(res.exit_code == 0);
    auto doc = nlohmann::json::parse(res.out);
    CHECK(doc["name"] == "cli");
    CHECK(doc["target"] == "/hello?x=1");

    rp.proc->signal(SIGTERM);
    auto code = rp.proc->wait_exit(milliseconds(5000));
    REQUIRE(code.has_value());
    CHECK(*code == 0);
    auto err = rp.proc->stderr_text();
    CHECK(err.find("rproxy: SIGTERM, draining") != std::string::npos);
    CHECK(err.find("rproxy: stopped after 1 requests") != std::string::npos);
    CHECK(rp.proc->stdout_text().empty());
  }

  TEST_CASE("serve: print-scenario prints json and exits 0") {
    auto res = rproxy_run({"serve", "--to", "http://127.0.0.1:3001", "--to", "http://127.0.0.1:3002", "--balance",
                           "least_conn", "--max-body", "10MiB", "--print-scenario"});
    CAPTURE(res.err);
    REQUIRE(res.exit_code == 0);
    CHECK(res.err.empty());
    auto doc = nlohmann::json::parse(res.out);
    CHECK(doc["version"] == 1);
    REQUIRE(doc["routes"].size() == 1);
    auto dump = doc["routes"][0].dump();
    CHECK(dump.find("http://127.0.0.1:3001") != std::string::npos);
    CHECK(dump.find("http://127.0.0.1:3002") != std::string::npos);
    CHECK(doc["routes"][0]["balance"] == "least_conn");
    CHECK(doc["listeners"].dump().find("127.0.0.1:8080") != std::string::npos);

    // What it prints is a valid scenario file.
    TempDir dir;
    auto file = dir.write("printed.json", res.out);
    auto v = rproxy_run({"validate", file});
    CAPTURE(v.err);
    CHECK(v.exit_code == 0);
    CHECK(v.out.find("ok (1 route)") != std::string::npos);
  }

  TEST_CASE("serve: bad flag value exits 2 with one message naming the flag") {
    const std::vector<std::pair<std::vector<std::string>, std::string>> cases{
        {{"--to", "htp://x"}, "--to"},
        {{"--to", "http://127.0.0.1:1", "--read-timeout", "soon"}, "--read-timeout"},
        {{"--to", "http://127.0.0.1:1", "--max-body", "lots"}, "--max-body"},
        {{"--to", "http://127.0.0.1:1", "--listen", "nowhere"}, "--listen"},
        {{"--to", "http://127.0.0.1:1", "--balance", "fastest"}, "--balance"},
        {{"--route", "api"}, "--route"},
    };
    for (const auto& [flags, name] : cases) {
      std::vector<std::string> args{"serve"};
      args.insert(args.end(), flags.begin(), flags.end());
      auto res = rproxy_run(args);
      CAPTURE(name);
      CAPTURE(res.err);
      CHECK(res.exit_code == 2);
      CHECK(error_lines(res.err) == 1);
      CHECK(res.err.find(name) != std::string::npos);
      CHECK(res.out.empty());
    }
  }

  TEST_CASE("serve: validate reports a bad file with exit 2 and the JSON path") {
    TempDir dir;
    auto bad = dir.write("bad.json", R"({"version": 1, "routes": [{"match": {"path_prefix": "/api"},
        "upstreams": ["htp://x"]}], "limits": {"head_timeout": "soon"}})");
    auto res = rproxy_run({"validate", bad});
    CAPTURE(res.err);
    CHECK(res.exit_code == 2);
    CHECK(res.err.find("routes[0].upstreams[0]") != std::string::npos);
    CHECK(res.err.find("limits.head_timeout") != std::string::npos);  // every problem, not just the first
    for (const auto& l : lines_of(res.err)) CHECK(l.rfind("rproxy: error: ", 0) == 0);

    auto syntax = dir.write("syntax.json", "{\"version\": 1,,}");
    res = rproxy_run({"validate", syntax});
    CHECK(res.exit_code == 2);
    CHECK(res.err.find("syntax.json") != std::string::npos);

    auto good = dir.write("good.json", R"({"version": 1, "routes": [{"upstreams": ["http://127.0.0.1:3000"]}]})");
    res = rproxy_run({"validate", good});
    CHECK(res.exit_code == 0);
  }

  TEST_CASE("serve: SIGTERM lets an in-flight request finish with Connection close") {
    // The upstream answers 1 s after it got the head, so the request is certainly in flight at SIGTERM.
    ScriptedUpstream up(UpstreamScript{.delay_before = milliseconds(1000),
                                       .response = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone"});
    auto rp = spawn_rproxy({"serve", "--listen", "127.0.0.1:0", "--to", up.url()});
    auto c = std::make_unique<RawClient>(rp.port);
    c->send(get_request("/slow"));
    REQUIRE(up.wait_for_heads(1, milliseconds(5000)));
    auto start = Clock::now();
    rp.proc->signal(SIGTERM);
    auto r = c->read_response({.timeout = milliseconds(5000)});
    CHECK(r.status == 200);
    CHECK(r.body == "done");
    CHECK(r.header("Connection") == "close");
    CHECK(c->wait_closed());
    c.reset();  // rproxy lingers (reading) until the client closes its side too
    auto code = rp.proc->wait_exit(milliseconds(5000));
    REQUIRE(code.has_value());
    CHECK(*code == 0);
    CHECK(ms_since(start) < 4000);
    CHECK(rp.proc->stderr_text().find("rproxy: SIGTERM, draining") != std::string::npos);
  }

  TEST_CASE("serve: SIGTERM with pooled upstream connections exits 0") {
    // Regression: destroying the server with idle pooled upstream sockets after their event loop was gone
    // corrupted the heap (abort at exit). Several rounds, since it depended on timing.
    auto a = start_echo("a");
    auto b = start_echo("b");
    auto c = start_echo("c");
    for (int round = 0; round < 5; ++round) {
      CAPTURE(round);
      auto rp = spawn_rproxy({"serve", "--listen", "127.0.0.1:0", "--to", echo_url(*a), "--to", echo_url(*b), "--to",
                              echo_url(*c), "--workers", "2"});
      for (int i = 0; i < 12; ++i) {
        auto r = fetch(rp.port, get_request("/pool/" + std::to_string(i)));
        REQUIRE(r.status == 200);
      }
      rp.proc->signal(SIGTERM);
      auto code = rp.proc->wait_exit(milliseconds(5000));
      REQUIRE(code.has_value());
      CAPTURE(rp.proc->stderr_text());
      CHECK(*code == 0);
    }
  }

  TEST_CASE("serve: IPv6 listener works") {
    if (!ipv6_loopback_available()) {
      MESSAGE("skipped: ::1 cannot be bound here");
      return;
    }
    auto e = start_echo("v6");
    auto rp = spawn_rproxy({"serve", "--listen", "[::1]:0", "--to", echo_url(*e)});
    CHECK(is_listening_line(rp.listening_line, "[::1]"));
    RawClient c(rp.port, "::1");
    c.send(get_request("/six", "[::1]:" + std::to_string(rp.port)));
    auto r = c.read_response();
    REQUIRE(r.status == 200);
    auto doc = r.json();
    CHECK(doc["name"] == "v6");
    CHECK(echo_header(doc, "X-Forwarded-For") == "::1");
    CHECK(echo_header(doc, "Host") == "[::1]:" + std::to_string(rp.port));
    // An IPv6 upstream works too (in-process, to keep it quick).
    auto e6 = start_echo("v6-upstream", "::1");
    auto s = make_scenario({make_route({echo_url(*e6)})});
    s.listeners = {ListenAddress{"::1", 0}};
    ProxyFixture proxy(s);
    RawClient c6(proxy.port(), "::1");
    c6.send(get_request("/up6"));
    auto r6 = c6.read_response();
    REQUIRE(r6.status == 200);
    CHECK(r6.json()["name"] == "v6-upstream");
  }
}
