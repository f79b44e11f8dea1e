// Integration tests: the access log, text and JSON, one line per finished exchange.
#include <doctest/doctest.h>

#include <sstream>
#include <string>
#include <vector>

#include "support/proxy_fixture.hpp"
#include "support/raw_client.hpp"
#include "support/scripted_upstream.hpp"

using namespace rproxy;
using namespace rproxy::test;

namespace {

std::vector<std::string> log_lines(const std::string& path) {
  std::vector<std::string> out;
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::vector<std::string> fields(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  for (std::string f; in >> f;) out.push_back(f);
  return out;
}

bool all_digits(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

// matches_shape: 'd' in shape stands for one digit, every other character for itself.
bool matches_shape(const std::string& s, const std::string& shape) {
  if (s.size() != shape.size()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (shape[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != shape[i]) return false;
  }
  return true;
}

struct Exchanged {
  std::size_t ok_body = 0;  // bytes of the 200's body
  std::string upstream;
};

// run_traffic sends, on one connection: GET /api/items?x=1 (200), POST /api/up with 5 bytes (200),
// GET /nope (404, no route); then a request to a refused upstream (502) on another connection.
Exchanged run_traffic(const std::string& log_path, const std::string& format) {
  auto e = start_echo();
  ClosedPort dead;
  auto s = make_scenario({prefix_route("/api", {echo_url(*e)}, "api"), prefix_route("/dead", {dead.url()}, "dead")});
  s.access_log.path = log_path;
  s.access_log.format = format;
  Exchanged x;
  x.upstream = echo_url(*e);
  {
    ProxyFixture proxy(s);
    RawClient c(proxy.port());
    c.send(get_request("/api/items?x=1"));
    auto r = c.read_response();
    REQUIRE(r.status == 200);
    x.ok_body = r.body.size();
    c.send("POST /api/up HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 5\r\n\r\nhello");
    REQUIRE(c.read_response().status == 200);
    c.send(get_request("/nope"));
    REQUIRE(c.read_response().status == 404);
    REQUIRE(fetch(proxy.port(), get_request("/dead/x")).status == 502);
    proxy.stop();  // every exchange is finished and logged once the server stopped
  }
  return x;
}

}  // namespace

TEST_SUITE("serve") {
  TEST_CASE("serve: text access log has one line per request") {
    TempDir dir;
    auto path = dir.file("access.log");
    auto x = run_traffic(path, "text");
    auto lines = log_lines(path);
    REQUIRE(lines.size() == 4);
    CAPTURE(lines[0]);
    CAPTURE(lines[1]);
    CAPTURE(lines[2]);
    CAPTURE(lines[3]);
    CHECK(lines[0].find(" 127.0.0.1 GET /api/items?x=1 200 " + std::to_string(x.ok_body) + "B ") != std::string::npos);
    CHECK(lines[0].find("ms route=api upstream=" + x.upstream) != std::string::npos);
    CHECK(lines[1].find(" POST /api/up 200 ") != std::string::npos);
    CHECK(lines[1].find("route=api upstream=" + x.upstream) != std::string::npos);
    CHECK(lines[2].find(" GET /nope 404 ") != std::string::npos);
    CHECK(lines[2].find("route=- upstream=-") != std::string::npos);
    CHECK(lines[2].find("error=no_route") != std::string::npos);
    CHECK(lines[3].find(" GET /dead/x 502 ") != std::string::npos);
    CHECK(lines[3].find("route=dead upstream=http://127.0.0.1:") != std::string::npos);
    CHECK(lines[3].find("error=upstream_connect_refused") != std::string::npos);
    for (const auto& l : lines) {
      CAPTURE(l);
      // TIME CLIENT METHOD TARGET STATUS BYTES DURATION route=R upstream=U [error=E]
      auto f = fields(l);
      REQUIRE(f.size() >= 9);
      CHECK(matches_shape(f[0], "dddd-dd-ddTdd:dd:dd.dddZ"));
      CHECK(f[1] == "127.0.0.1");
      CHECK((f[5].size() >= 2 && f[5].back() == 'B' && all_digits(f[5].substr(0, f[5].size() - 1))));
      auto dot = f[6].find('.');
      CHECK((dot != std::string::npos && dot > 0 && all_digits(f[6].substr(0, dot)) &&
             matches_shape(f[6].substr(dot), ".dddms")));
      CHECK(f[7].rfind("route=", 0) == 0);
      CHECK(f[8].rfind("upstream=", 0) == 0);
    }
  }

  TEST_CASE("serve: json access log has one object per request") {
    TempDir dir;
    auto path = dir.file("access.jsonl");
    auto x = run_traffic(path, "json");
    auto lines = log_lines(path);
    REQUIRE(lines.size() == 4);
    std::vector<nlohmann::json> docs;
    for (const auto& l : lines) docs.push_back(nlohmann::json::parse(l));
    for (const auto& d : docs) {
      CAPTURE(d.dump());
      for (const char* key : {"time", "client", "method", "target", "status", "bytes_in", "bytes_out", "duration_ms",
                              "route", "upstream"})
        CHECK(d.contains(key));
      CHECK(d["duration_ms"].is_number());
      CHECK(d["client"] == "127.0.0.1");
    }
    CHECK(docs[0]["method"] == "GET");
    CHECK(docs[0]["target"] == "/api/items?x=1");
    CHECK(docs[0]["status"] == 200);
    CHECK(docs[0]["bytes_out"] == x.ok_body);
    CHECK(docs[0]["route"] == "api");
    CHECK(docs[0]["upstream"] == x.upstream);
    CHECK_FALSE(docs[0].contains("error"));
    CHECK(docs[1]["method"] == "POST");
    CHECK(docs[1]["bytes_in"] == 5);
    CHECK(docs[2]["status"] == 404);
    CHECK(docs[2]["error"] == "no_route");
    CHECK(docs[3]["status"] == 502);
    CHECK(docs[3]["route"] == "dead");
    CHECK(docs[3]["error"] == "upstream_connect_refused");
  }
}
