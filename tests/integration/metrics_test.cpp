// Integration tests for what a running rproxy shows about itself: Prometheus metrics that equal the access
// log for a known request mix, the admin endpoints, the exit summary as JSON, and the live view drawn on a
// pseudo-terminal.
#include <doctest/doctest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "support/proxy_fixture.hpp"
#include "support/raw_client.hpp"
#include "support/subprocess.hpp"

using namespace rproxy;
using namespace rproxy::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// metric_sum adds the values of every sample of a family whose labels contain all of `with`.
double metric_sum(const std::string& text, const std::string& name,
                  const std::vector<std::string>& with = {}) {
  double sum = 0;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line.compare(0, name.size(), name) != 0 || (line[name.size()] != '{' && line[name.size()] != ' '))
      continue;
    bool all = true;
    for (const auto& w : with) all = all && line.find(w) != std::string::npos;
    if (all) sum += std::stod(line.substr(line.rfind(' ') + 1));
  }
  return sum;
}

void get(std::uint16_t port, const std::string& target) {
  RawClient c(port);
  c.send(get_request(target));
  c.read_response();
}

}  // namespace

TEST_SUITE("metrics") {
  TEST_CASE("metrics: counts for a known request mix equal the access log's lines") {
    auto api = start_echo("api");
    auto web = start_echo("web");
    TempDir dir;
    auto s =
        make_scenario({prefix_route("/api", {echo_url(*api)}, "api"), make_route({echo_url(*web)}, "web")});
    s.access_log.path = dir.file("access.jsonl");
    s.access_log.format = "json";
    ProxyFixture proxy(s);
    for (int i = 0; i < 5; ++i) get(proxy.port(), "/api/items");
    for (int i = 0; i < 3; ++i) get(proxy.port(), "/api/items?status=503");
    for (int i = 0; i < 2; ++i) get(proxy.port(), "/page?status=404");
    get(proxy.port(), "/page?size=5000");
    // Exchanges are counted as they are logged, just after the last byte: wait for all eleven.
    std::string text;
    for (int i = 0; i < 100 && metric_sum(text = proxy.server().metrics(), "rproxy_requests_total") < 11; ++i)
      std::this_thread::sleep_for(20ms);
    CHECK(metric_sum(text, "rproxy_requests_total") == 11);
    CHECK(metric_sum(text, "rproxy_requests_total", {"route=\"api\"", "code=\"2xx\""}) == 5);
    CHECK(metric_sum(text, "rproxy_requests_total", {"route=\"api\"", "code=\"5xx\""}) == 3);
    CHECK(metric_sum(text, "rproxy_requests_total", {"route=\"web\"", "code=\"4xx\""}) == 2);
    CHECK(metric_sum(text, "rproxy_request_duration_seconds_count") == 11);
    CHECK(metric_sum(text, "rproxy_request_duration_seconds_bucket", {"le=\"+Inf\""}) == 11);
    CHECK(text.find("rproxy_requests_total{route=\"api\",upstream=\"" + echo_url(*api) +
                    "\",variant=\"\",code=\"2xx\"} 5") != std::string::npos);
    CHECK(text.find("# TYPE rproxy_request_duration_seconds histogram") != std::string::npos);
    CHECK(text.find("rproxy_upstream_up{route=\"api\",upstream=\"" + echo_url(*api) +
                    "\",backup=\"false\"} 1") != std::string::npos);
    // The access log says the same, line for line and byte for byte.
    std::ifstream log(dir.file("access.jsonl"));
    std::map<std::string, int> by_class;
    double bytes_out = 0;
    int lines = 0;
    for (std::string line; std::getline(log, line); ++lines) {
      auto j = json::parse(line);
      by_class[j["route"].get<std::string>() + " " + std::to_string(j["status"].get<int>() / 100)]++;
      bytes_out += j["bytes_out"].get<double>();
    }
    CHECK(lines == 11);
    CHECK(by_class["api 2"] == 5);
    CHECK(by_class["api 5"] == 3);
    CHECK(by_class["web 4"] == 2);
    CHECK(metric_sum(text, "rproxy_response_bytes_total") == bytes_out);
    // The summary rows agree too.
    auto rows = proxy.server().summary_json();
    REQUIRE(rows.size() == 2);
    CHECK(rows[0]["route"] == "api");
    CHECK(rows[0]["requests"] == 8);
    CHECK(rows[0]["status"]["5xx"] == 3);
    CHECK(rows[1]["route"] == "web");
    CHECK(rows[1]["requests"] == 3);
  }

  TEST_CASE(
      "metrics: rproxy serve --admin serves /metrics, /upstreams and /summary, --summary-json on exit") {
    auto e = start_echo();
    TempDir dir;
    auto p = spawn_rproxy({"serve", "--listen", "127.0.0.1:0", "--to", echo_url(*e), "--admin", "127.0.0.1:0",
                           "--summary-json", dir.file("summary.json")});
    auto admin_line = p.proc->wait_for_stderr("rproxy: admin on ", 5s);
    REQUIRE(admin_line);
    auto admin = admin_line->substr(std::string("rproxy: admin on ").size());
    admin = admin.substr(0, admin.find(' '));
    for (int i = 0; i < 4; ++i) get(p.port, "/x");
    std::this_thread::sleep_for(100ms);
    auto m = run_curl({"-D", "-", admin + "/metrics"});
    CHECK(m.out.find("Content-Type: text/plain; version=0.0.4") != std::string::npos);
    CHECK(metric_sum(m.out, "rproxy_requests_total", {"code=\"2xx\""}) == 4);
    auto up = json::parse(run_curl({admin + "/upstreams"}).out);
    CHECK(up["default"][0]["url"] == echo_url(*e));
    CHECK(up["default"][0]["up"] == true);
    auto summary = json::parse(run_curl({admin + "/summary"}).out);
    CHECK(summary[0]["requests"] == 4);
    p.proc->signal(SIGTERM);
    REQUIRE(p.proc->wait_exit(10s) == 0);
    std::ifstream f(dir.file("summary.json"));
    REQUIRE(f);
    auto doc = json::parse(f);
    CHECK(doc["requests"] == 4);
    CHECK(doc["routes"][0]["status"]["2xx"] == 4);
    CHECK(doc["routes"][0]["p99_ms"].get<double>() > 0);
    CHECK(doc["upstreams"]["default"][0]["up"] == true);
    // The exit summary table is on stderr.
    auto err = p.proc->stderr_text();
    CHECK(err.find("route    variant  requests  2xx") != std::string::npos);
  }

  TEST_CASE("metrics: the live view redraws in place on a pseudo-terminal") {
    auto e = start_echo();
    // script(1) gives rproxy a terminal on stderr and copies what is drawn there to its stdout.
    std::string cmd = rproxy_binary() + " serve --listen 127.0.0.1:0 --to " + echo_url(*e);
    Subprocess term({"script", "-qfec", cmd, "/dev/null"});
    std::string out;
    std::uint16_t port = 0;
    for (int i = 0; i < 100 && port == 0; ++i) {
      std::this_thread::sleep_for(50ms);
      out = term.stdout_text();
      auto at = out.find("listening on http://127.0.0.1:");
      if (at != std::string::npos) port = static_cast<std::uint16_t>(std::stoi(out.substr(at + 30)));
    }
    REQUIRE(port != 0);
    for (int i = 0; i < 3; ++i) get(port, "/live");
    std::this_thread::sleep_for(2500ms);
    out = term.stdout_text();
    CHECK(out.find(" req/s, 3 requests, ") != std::string::npos);
    CHECK(out.find("\x1b[") != std::string::npos);  // cursor up + clear: redrawn in place
    CHECK(out.find("default  -               3    3") != std::string::npos);
    term.signal(SIGTERM);
    term.wait_exit(5s);
  }
  TEST_CASE("metrics: GET /exchanges lists the latest exchanges, and an admin token is enforced") {
    auto e = start_echo();
    TempDir dir;
    auto token = dir.write("token", "s3cret-admin-token\n");
    auto p = spawn_rproxy({"serve", "--listen", "127.0.0.1:0", "--to", echo_url(*e), "--admin", "127.0.0.1:0",
                           "--admin-token-file", token});
    auto admin_line = p.proc->wait_for_stderr("rproxy: admin on ", 5s);
    REQUIRE(admin_line);
    CHECK(admin_line->find("bearer token required") != std::string::npos);
    auto admin = admin_line->substr(std::string("rproxy: admin on ").size());
    admin = admin.substr(0, admin.find(' '));
    for (int i = 1; i <= 3; ++i) get(p.port, "/n" + std::to_string(i) + "?status=20" + std::to_string(i));
    std::this_thread::sleep_for(100ms);
    auto denied = run_curl({"-w", "%{http_code}", "-o", "/dev/null", admin + "/exchanges"});
    CHECK(denied.out == "401");
    auto wrong = run_curl(
        {"-w", "%{http_code}", "-o", "/dev/null", "-H", "Authorization: Bearer nope", admin + "/metrics"});
    CHECK(wrong.out == "401");
    CHECK(run_curl({"-w", "%{http_code}", "-o", "/dev/null", admin + "/health"}).out == "200");
    auto list = json::parse(
        run_curl({"-H", "Authorization: Bearer s3cret-admin-token", admin + "/exchanges?limit=2"}).out);
    REQUIRE(list.size() == 2);
    CHECK(list[0]["target"] == "/n3?status=203");
    CHECK(list[0]["status"] == 203);
    CHECK(list[1]["target"] == "/n2?status=202");
    CHECK(list[0]["id"].get<int>() > list[1]["id"].get<int>());
    CHECK(list[0]["upstream"] == echo_url(*e));
  }
}
