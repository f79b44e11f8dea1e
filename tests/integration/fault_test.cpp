// Integration tests for fault injection: real echo upstreams, the proxy in-process (or the rproxy binary
// for the CLI forms), real clients (raw sockets and curl). Each "done when" item of the fault issue has a
// case here; the figures they print are the ones quoted in the closing note.
#include <doctest/doctest.h>
#include <signal.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "admin_server.hpp"
#include "support/proxy_fixture.hpp"
#include "support/raw_client.hpp"
#include "support/subprocess.hpp"

using namespace rproxy;
using namespace rproxy::test;
using nlohmann::json;

namespace {

Scenario fault_scenario(const std::string& upstream, json params, std::uint64_t seed = 42) {
  Route r;
  r.upstreams = {upstream_spec(upstream)};
  r.stages.push_back(StageSpec{"fault", "", std::move(params)});
  auto s = make_scenario({r});
  s.seed = seed;
  return s;
}

json one_rule(const std::string& name, json fault, double p = 1.0, json extra = json::object()) {
  json r = {{"name", name}, {"fault", std::move(fault)}};
  if (p < 1) r["probability"] = p;
  r.update(extra);
  return {{"rules", json::array({r})}};
}

std::string url(std::uint16_t port, const std::string& target = "/") {
  return "http://127.0.0.1:" + std::to_string(port) + target;
}

// count_status sends n requests over `clients` keep-alive connections and counts responses with status.
int count_status(std::uint16_t port, int n, int clients, int status, const std::string& target = "/") {
  std::vector<int> counts(static_cast<std::size_t>(clients), 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t)
    threads.emplace_back([&, t] {
      RawClient c(port);
      for (int i = t; i < n; i += clients) {
        c.send(get_request(target));
        auto r = c.read_response();
        REQUIRE(r.complete);
        counts[static_cast<std::size_t>(t)] += r.status == status;
      }
    });
  for (auto& t : threads) t.join();
  int total = 0;
  for (int c : counts) total += c;
  return total;
}

std::vector<std::string> sorted_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::sort(lines.begin(), lines.end());
  return lines;
}

}  // namespace

TEST_SUITE("fault") {
  TEST_CASE("fault: a fixed 200 ms latency adds 200-215 ms at the median and never less than 200 ms") {
    auto up = start_echo();
    ProxyFixture proxy(
        fault_scenario(echo_url(*up), one_rule("latency", {{"type", "delay"}, {"delay", "200ms"}})));
    std::vector<long long> samples;
    std::mutex m;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&] {
        RawClient c(proxy.port());
        for (int i = 0; i < 10; ++i) {
          auto t0 = Clock::now();
          c.send(get_request("/"));
          auto r = c.read_response();
          auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
          REQUIRE(r.status == 200);
          std::lock_guard lock(m);
          samples.push_back(us);
        }
      });
    for (auto& t : threads) t.join();
    std::sort(samples.begin(), samples.end());
    auto median = samples[samples.size() / 2];
    MESSAGE("200 ms latency over 40 requests: min " << samples.front() << " us, median " << median
                                                    << " us, max " << samples.back() << " us");
    CHECK(samples.front() >= 200000);
    CHECK(median >= 200000);
    CHECK(median <= 215000);
  }

  TEST_CASE("fault: a 10% abort over 10,000 requests lands in the 99.9% interval, 0% gives none, 100% all") {
    auto up = start_echo();
    {
      ProxyFixture proxy(
          fault_scenario(echo_url(*up), one_rule("abort", {{"type", "abort"}, {"status", 503}}, 0.1)));
      int n = count_status(proxy.port(), 10000, 4, 503);
      MESSAGE("10% abort: " << n << " of 10,000 requests got 503 (99.9% interval 901-1099)");
      CHECK(n >= 901);
      CHECK(n <= 1099);
      proxy.stop();
      CHECK(proxy.server().report()["stages"]["default/fault"]["rules"][0]["fired"] == n);
    }
    {
      ProxyFixture proxy(
          fault_scenario(echo_url(*up), one_rule("abort", {{"type", "abort"}, {"status", 503}}, 0.0)));
      CHECK(count_status(proxy.port(), 2000, 4, 200) == 2000);
    }
    {
      ProxyFixture proxy(
          fault_scenario(echo_url(*up), one_rule("abort", {{"type", "abort"}, {"status", 503}}, 1.0)));
      CHECK(count_status(proxy.port(), 2000, 4, 503) == 2000);
    }
  }

  TEST_CASE("fault: two runs with the same seed and 8 concurrent clients write identical journals") {
    auto up = start_echo();
    TempDir dir;
    json params = {
        {"rules",
         {{{"name", "abort"}, {"probability", 0.1}, {"fault", {{"type", "abort"}, {"status", 503}}}},
          {{"name", "jitter"},
           {"probability", 0.3},
           {"fault",
            {{"type", "delay"}, {"delay", {{"distribution", "uniform"}, {"min", "0"}, {"max", "3ms"}}}}}},
          {{"name", "cut"}, {"every", 7}, {"fault", {{"type", "truncate"}, {"after", 10}}}}}}};
    auto run = [&](const std::string& journal) {
      params["journal"] = journal;
      ProxyFixture proxy(fault_scenario(echo_url(*up), params));
      std::vector<std::thread> threads;
      for (int t = 0; t < 8; ++t)
        threads.emplace_back([&] {
          for (int i = 0; i < 60; ++i) {
            // A fresh connection per request: truncated responses close theirs.
            auto r = fetch(proxy.port(), get_request("/"));
            (void)r;
          }
        });
      for (auto& t : threads) t.join();
      proxy.stop();
      return sorted_lines(journal);
    };
    auto a = run(dir.file("a.jsonl"));
    auto b = run(dir.file("b.jsonl"));
    CHECK(a.size() == 1 + 480 * 3 -
                          static_cast<std::size_t>(std::count_if(a.begin(), a.end(),
                                                                 [](const std::string& l) {
                                                                   return l.find("\"fault\":\"abort\"") !=
                                                                          std::string::npos;
                                                                 })) *
                              2);
    CHECK(a == b);
    MESSAGE("journal lines per run: " << a.size());
  }

  TEST_CASE("fault: reset gives curl ECONNRESET (exit 56), drop an empty reply (exit 52)") {
    auto up = start_echo();
    {
      ProxyFixture proxy(fault_scenario(echo_url(*up), one_rule("reset", {{"type", "reset"}})));
      auto res = run_curl({url(proxy.port())});
      CHECK(res.exit_code == 56);
      CHECK(res.err.find("reset") != std::string::npos);
    }
    {
      ProxyFixture proxy(fault_scenario(echo_url(*up), one_rule("drop", {{"type", "drop"}})));
      auto res = run_curl({url(proxy.port())});
      CHECK(res.exit_code == 52);
      CHECK(res.err.find("Empty reply") != std::string::npos);
    }
    {
      // A reset in the middle of the body: the head and 1000 bytes arrive, then the RST.
      ProxyFixture proxy(
          fault_scenario(echo_url(*up), one_rule("midway", {{"type", "reset"}, {"after", 1000}})));
      auto res = run_curl({"-o", "/dev/null", url(proxy.port(), "/?size=100000")});
      CHECK(res.exit_code == 56);
    }
    {
      ProxyFixture proxy(
          fault_scenario(echo_url(*up), one_rule("cut", {{"type", "truncate"}, {"after", 1000}})));
      auto res = run_curl({"-o", "/dev/null", "-w", "%{size_download}", url(proxy.port(), "/?size=100000")});
      CHECK(res.exit_code == 18);  // partial file: the body is shorter than its Content-Length
      CHECK(res.out == "1000");
    }
    {
      json r = one_rule("refuse", {{"type", "refuse"}}, 1.0, {{"per", "connection"}});
      ProxyFixture proxy(fault_scenario(echo_url(*up), r));
      auto res = run_curl({url(proxy.port())});
      CAPTURE(res.err);
      // The RST usually lands while curl still checks its connect: "Couldn't connect" (7), as for a refused
      // connection; a slower client sees it on send (55) or receive (56).
      CHECK((res.exit_code == 7 || res.exit_code == 55 || res.exit_code == 56));
      CHECK(proxy.server().report()["stages"]["default/fault"]["faulted_connections"] == 1);
    }
  }

  TEST_CASE("fault: blackhole holds until the client gives up, or closes after its timeout") {
    auto up = start_echo();
    {
      ProxyFixture proxy(fault_scenario(echo_url(*up), one_rule("hole", {{"type", "blackhole"}})));
      auto t0 = Clock::now();
      auto res = run_curl({"--max-time", "1", url(proxy.port())});
      CHECK(res.exit_code == 28);  // timed out: nothing ever came
      CHECK(ms_since(t0) >= 1000);
      // A held connection does not hold up a stop for the whole drain timeout.
      RawClient held(proxy.port());
      held.send(get_request("/"));
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      auto s0 = Clock::now();
      proxy.stop();
      CHECK(ms_since(s0) < 2000);
      CHECK(held.wait_closed(std::chrono::milliseconds(1000)));
    }
    {
      ProxyFixture proxy(
          fault_scenario(echo_url(*up), one_rule("hole", {{"type", "blackhole"}, {"timeout", "300ms"}})));
      auto t0 = Clock::now();
      auto res = run_curl({url(proxy.port())});
      auto took = ms_since(t0);
      CHECK(res.exit_code == 52);
      CHECK(took >= 300);
      CHECK(took < 2000);
    }
  }

  TEST_CASE("fault: a 100 KB/s bandwidth limit moves 1000 KB in 10.0-10.5 s") {
    auto up = start_echo();
    ProxyFixture proxy(
        fault_scenario(echo_url(*up), one_rule("bw", {{"type", "bandwidth"}, {"rate", "100KB/s"}})));
    auto res = run_curl(
        {"-o", "/dev/null", "-w", "%{size_download} %{time_total}", url(proxy.port(), "/?size=1000KB")});
    REQUIRE(res.exit_code == 0);
    std::uint64_t size = 0;
    double seconds = 0;
    REQUIRE(std::sscanf(res.out.c_str(), "%lu %lf", &size, &seconds) == 2);
    MESSAGE("1000 KB at 100 KB/s took " << seconds << " s");
    CHECK(size == 1000000);
    CHECK(seconds >= 10.0);
    CHECK(seconds <= 10.5);
  }

  TEST_CASE("fault: request bandwidth, slicing and slow close shape the timing") {
    auto up = start_echo();
    {
      ProxyFixture proxy(fault_scenario(
          echo_url(*up),
          one_rule("up", {{"type", "bandwidth"}, {"rate", "100KB/s"}, {"direction", "request"}})));
      std::string body(50000, 'x');
      auto t0 = Clock::now();
      auto r = fetch(proxy.port(), "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 50000\r\n\r\n" + body);
      auto took = ms_since(t0);
      CHECK(r.status == 200);
      CHECK(r.json()["body_size"] == 50000);
      CHECK(took >= 500);
      CHECK(took < 1500);
    }
    {
      ProxyFixture proxy(fault_scenario(
          echo_url(*up), one_rule("drip", {{"type", "slice"}, {"size", 100}, {"delay", "20ms"}})));
      auto t0 = Clock::now();
      auto r = fetch(proxy.port(), get_request("/?size=1000"));
      auto took = ms_since(t0);
      CHECK(r.status == 200);
      CHECK(r.body.size() == 1000);
      CHECK(first_payload_mismatch(r.body) == -1);
      CHECK(took >= 180);  // 10 slices, 9 gaps of 20 ms
    }
    {
      ProxyFixture proxy(
          fault_scenario(echo_url(*up), one_rule("late-fin", {{"type", "slow_close"}, {"delay", "400ms"}})));
      RawClient c(proxy.port());
      auto t0 = Clock::now();
      c.send(get_request("/"));
      auto r = c.read_response();
      auto got = ms_since(t0);
      CHECK(r.status == 200);
      CHECK(r.header("Connection") == "close");
      CHECK(got < 300);
      CHECK(c.wait_closed(std::chrono::milliseconds(3000)));
      CHECK(ms_since(t0) >= 400);
    }
  }

  TEST_CASE("fault: matching rules never fault a request that does not match") {
    auto up = start_echo();
    json params = one_rule("api", {{"type", "abort"}, {"status", 503}}, 1.0,
                           {{"match", {{"path", "/api/*"}, {"method", "GET"}}}});
    params["mark"] = true;
    ProxyFixture proxy(fault_scenario(echo_url(*up), params));
    CHECK(count_status(proxy.port(), 500, 4, 200, "/other") == 500);
    CHECK(count_status(proxy.port(), 200, 4, 200, "/apix") == 200);
    CHECK(count_status(proxy.port(), 200, 4, 503, "/api/x") == 200);
    auto post = fetch(proxy.port(), "POST /api/x HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    CHECK(post.status == 200);
    auto marked = fetch(proxy.port(), get_request("/api/y"));
    CHECK(marked.header("X-Rproxy-Fault") == "api");
    CHECK(marked.body.find("fault injected by rproxy (rule api)") != std::string::npos);
  }

  TEST_CASE("fault: a live change applies to the next request without failing in-flight ones") {
    auto up = start_echo();
    ProxyFixture proxy(fault_scenario(echo_url(*up), one_rule("slow", {{"type", "delay"}, {"delay", "1s"}})));
    ProxyServer* srv = &proxy.server();
    AdminServer admin(
        ListenAddress{"127.0.0.1", 0},
        AdminTarget{[srv] { return srv->report(); }, [srv] { return srv->stage_names(); },
                    [srv](const std::string& st, const AdminRequest& req) { return srv->admin(st, req); },
                    {}, {}, {}, {}, {}, {}, {}});
    admin.start();
    // Three requests in flight under the slow rule.
    std::vector<HttpResponse> slow(3);
    std::vector<long long> slow_ms(3);
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < 3; ++i)
      threads.emplace_back([&, i] {
        auto t0 = Clock::now();
        slow[i] = fetch(proxy.port(), get_request("/"));
        slow_ms[i] = ms_since(t0);
      });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    auto t0 = Clock::now();
    auto put =
        run_curl({"-X", "PUT", "--data-binary",
                  json::array({{{"name", "abort"}, {"fault", {{"type", "abort"}, {"status", 503}}}}}).dump(),
                  admin.url() + "/stages/default/fault/rules"});
    auto put_ms = ms_since(t0);
    REQUIRE(put.exit_code == 0);
    CHECK(json::parse(put.out)["version"] == 2);
    CHECK(put_ms < 500);  // the admin API does not wait behind the held requests
    auto next = fetch(proxy.port(), get_request("/"));
    CHECK(next.status == 503);
    for (auto& t : threads) t.join();
    for (std::size_t i = 0; i < 3; ++i) {
      CHECK(slow[i].status == 200);
      CHECK(slow_ms[i] >= 1000);
    }
    auto list = run_curl({admin.url() + "/stages/default/fault/rules"});
    CHECK(json::parse(list.out)["rules"][0]["name"] == "abort");
    auto del = run_curl({"-X", "DELETE", admin.url() + "/stages/default/fault/rules/abort"});
    CHECK(json::parse(del.out)["rules"].empty());
    CHECK(fetch(proxy.port(), get_request("/")).status == 200);
  }

  TEST_CASE("fault: the CLI forms of the issue work as written") {
    auto up = start_echo();
    auto to = echo_url(*up);
    {
      auto rp =
          spawn_rproxy({"fault", "--listen", "127.0.0.1:0", "--to", to, "--latency", "200ms", "--quiet"});
      auto t0 = Clock::now();
      auto res = run_curl({url(rp.port)});
      CHECK(res.exit_code == 0);
      CHECK(ms_since(t0) >= 200);
      rp.proc->signal(SIGTERM);
      CHECK(rp.proc->wait_exit(std::chrono::milliseconds(5000)) == 0);
    }
    {
      TempDir dir;
      auto journal = dir.file("faults.jsonl");
      auto rp = spawn_rproxy({"fault", "--listen", "127.0.0.1:0", "--to", to, "--abort", "503@10%", "--seed",
                              "42", "--journal", journal});
      CHECK(rp.proc->stderr_text().find("rproxy: fault seed 42, journal " + journal) != std::string::npos);
      int aborted = 0;
      for (int i = 0; i < 100; ++i) aborted += fetch(rp.port, get_request("/")).status == 503;
      rp.proc->signal(SIGTERM);
      CHECK(rp.proc->wait_exit(std::chrono::milliseconds(5000)) == 0);
      auto lines = sorted_lines(journal);
      REQUIRE(lines.size() == 101);
      CHECK(std::count_if(lines.begin(), lines.end(), [](const std::string& l) {
              return l.find("\"fired\":true") != std::string::npos;
            }) == aborted);
      CHECK(rp.proc->stderr_text().find(std::to_string(aborted) + " fired") != std::string::npos);
    }
    {
      auto rp = spawn_rproxy({"fault", "--listen", "127.0.0.1:0", "--to", to, "--reset", "5%", "--quiet"});
      int resets = 0;
      for (int i = 0; i < 100; ++i) resets += fetch(rp.port, get_request("/")).status == 0;
      CHECK(resets > 0);
      CHECK(resets < 20);
      rp.proc->signal(SIGTERM);
      rp.proc->wait_exit(std::chrono::milliseconds(5000));
    }
    auto printed =
        run_command({rproxy_binary(), "fault", "--to", to, "--latency", "100ms±50ms", "--bandwidth",
                     "100KB/s", "--truncate", "1000", "--blackhole", "10%", "--print-scenario"});
    REQUIRE(printed.exit_code == 0);
    auto doc = json::parse(printed.out);
    auto rules = doc["routes"][0]["stages"][0]["params"]["rules"];
    REQUIRE(rules.size() == 4);
    CHECK(rules[0]["fault"]["delay"] == json{{"distribution", "uniform"}, {"min", "50ms"}, {"max", "150ms"}});
    CHECK(rules[1]["name"] == "blackhole");
    CHECK(rules[1]["probability"] == 0.1);
    CHECK(rules[2]["fault"]["rate"] == "100KB/s");
    CHECK(rules[3]["fault"]["after"] == 1000);
    for (const auto& [args, needle] : std::vector<std::pair<std::vector<std::string>, std::string>>{
             {{"--abort", "50x"}, "--abort 50x"},
             {{"--reset", "150%"}, "--reset 150%"},
             {{"--latency", "fast"}, "--latency fast"},
             {{"--bandwidth", "lots"}, "--bandwidth lots"},
             {{"--slice", "10"}, "--slice 10"}}) {
      std::vector<std::string> argv = {rproxy_binary(), "fault", "--to", to};
      argv.insert(argv.end(), args.begin(), args.end());
      auto bad = run_command(argv);
      CAPTURE(needle);
      CHECK(bad.exit_code == 2);
      CHECK(bad.err.find("rproxy: error: " + needle) != std::string::npos);
    }
    auto none = run_command({rproxy_binary(), "fault", "--to", to});
    CHECK(none.exit_code == 2);
    CHECK(none.err.find("no fault given") != std::string::npos);
  }
}

TEST_SUITE("fault") {
  TEST_CASE("fault: a rule on variant b faults only what the split sent to b, and the access log names it") {
    auto a = start_echo("a");
    auto b = start_echo("b");
    TempDir dir;
    Route r;
    auto ua = upstream_spec(echo_url(*a));
    ua.name = "a";
    auto ub = upstream_spec(echo_url(*b));
    ub.name = "b";
    r.upstreams = {ua, ub};
    r.stages.push_back(StageSpec{"split", "", {{"variants", {{{"name", "a"}}, {{"name", "b"}}}}}});
    r.stages.push_back(StageSpec{
        "fault", "",
        one_rule("b-down", {{"type", "abort"}, {"status", 503}}, 1.0, {{"match", {{"variant", "b"}}}})});
    auto s = make_scenario({r});
    s.access_log.path = dir.file("access.log");
    ProxyFixture proxy(s);
    int on_a = 0, on_b = 0;
    RawClient c(proxy.port());
    for (int i = 0; i < 200; ++i) {
      c.send(get_request("/"));
      auto resp = c.read_response();
      auto v = resp.header("X-Rproxy-Variant");
      REQUIRE(v);
      if (*v == "b") {
        ++on_b;
        CHECK(resp.status == 503);
      } else {
        ++on_a;
        CHECK(resp.status == 200);
      }
    }
    CHECK(on_a > 50);
    CHECK(on_b > 50);
    proxy.stop();
    auto log = read_file(dir.file("access.log"));
    int logged = 0;
    for (std::size_t pos = 0; (pos = log.find("fault=b-down", pos)) != std::string::npos; ++pos) ++logged;
    CHECK(logged == on_b);
  }
}

TEST_SUITE("fault") {
  TEST_CASE("fault: slicing and bandwidth together pause only between slices, a cut body is paced too") {
    auto up = start_echo();
    {
      // 40 KB in 20 KB slices 500 ms apart at 100 KB/s: 0.2 s + 0.5 s + 0.2 s.
      json params = {
          {"rules",
           {{{"name", "drip"}, {"fault", {{"type", "slice"}, {"size", "20KB"}, {"delay", "500ms"}}}},
            {{"name", "bw"}, {"fault", {{"type", "bandwidth"}, {"rate", "100KB/s"}}}}}}};
      ProxyFixture proxy(fault_scenario(echo_url(*up), params));
      auto t0 = Clock::now();
      auto r = fetch(proxy.port(), get_request("/?size=40KB"),
                     ReadOptions{false, std::chrono::milliseconds(10000)});
      auto took = ms_since(t0);
      MESSAGE("40 KB in 20 KB slices 500 ms apart at 100 KB/s took " << took << " ms");
      CHECK(r.body.size() == 40000);
      CHECK(took >= 880);
      CHECK(took < 1400);
    }
    {
      json params = {{"rules",
                      {{{"name", "drip"}, {"fault", {{"type", "slice"}, {"size", 10}, {"delay", "50ms"}}}},
                       {{"name", "cut"}, {"fault", {{"type", "truncate"}, {"after", 100}}}}}}};
      ProxyFixture proxy(fault_scenario(echo_url(*up), params));
      auto t0 = Clock::now();
      auto r = fetch(proxy.port(), get_request("/?size=4000"));
      auto took = ms_since(t0);
      CHECK_FALSE(r.complete);
      CHECK(r.body.size() == 100);
      CHECK(took >= 450);  // ten slices, nine pauses: the cut piece went through the pacing too
    }
  }

  TEST_CASE("fault: a slow close is logged at once and does not hold up a stop") {
    auto up = start_echo();
    ProxyFixture proxy(
        fault_scenario(echo_url(*up), one_rule("late-fin", {{"type", "slow_close"}, {"delay", "20s"}})));
    RawClient c(proxy.port());
    c.send(get_request("/"));
    auto r = c.read_response();
    CHECK(r.status == 200);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    CHECK(proxy.server().report()["stages"]["default/fault"]["active"] == 0);  // the exchange is complete
    auto s0 = Clock::now();
    proxy.stop();
    CHECK(ms_since(s0) < 2000);
    CHECK(c.wait_closed(std::chrono::milliseconds(1000)));
  }
}
