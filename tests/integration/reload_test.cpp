// Integration tests for changing a running rproxy: ProxyServer::reload under concurrent load, a broken
// configuration refused with the old one kept, and the same through the binary: --watch (in-place writes
// and atomic renames), SIGHUP and the admin API's PUT and PATCH /scenario. No request may fail.
#include <doctest/doctest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/proxy_fixture.hpp"
#include "support/raw_client.hpp"
#include "support/subprocess.hpp"

using namespace rproxy;
using namespace rproxy::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// Load keeps `threads` keep-alive clients sending GETs until stopped, counting answers by echo name and
// every request that did not get a 200.
class Load {
 public:
  Load(std::uint16_t port, int threads) {
    for (int i = 0; i < threads; ++i)
      threads_.emplace_back([this, port] {
        auto c = std::make_unique<RawClient>(port);
        while (!stop_) {
          c->send(get_request("/load"));
          auto r = c->read_response();
          std::lock_guard lock(mutex_);
          if (r.status != 200) {
            ++failed_;
            c = std::make_unique<RawClient>(port);
            continue;
          }
          ++by_name_[r.header("X-Echo-Name").value_or("?")];
          last_ = r.header("X-Echo-Name").value_or("?");
        }
      });
  }
  ~Load() { finish(); }
  void finish() {
    stop_ = true;
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }
  int failed() {
    std::lock_guard lock(mutex_);
    return failed_;
  }
  int count(const std::string& name) {
    std::lock_guard lock(mutex_);
    return by_name_[name];
  }
  int total() {
    std::lock_guard lock(mutex_);
    int n = 0;
    for (auto& [k, v] : by_name_) n += v;
    return n;
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::map<std::string, int> by_name_;
  std::string last_;
  int failed_ = 0;
};

std::string who(std::uint16_t port) {
  RawClient c(port);
  c.send(get_request("/who"));
  auto r = c.read_response();
  return r.status == 200 ? r.header("X-Echo-Name").value_or("?") : "status " + std::to_string(r.status);
}

// wait_for_answer polls until the proxy answers with name (true) or 5 s passed.
bool wait_for_answer(std::uint16_t port, const std::string& name) {
  for (int i = 0; i < 250; ++i) {
    if (who(port) == name) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

// The listener is port 0 (the kernel picks; rproxy prints it), and stays 0 across reloads.
std::string scenario_text(const std::string& upstream) {
  return json{{"version", 1}, {"listeners", {"127.0.0.1:0"}}, {"routes", {{{"upstreams", {upstream}}}}}}
      .dump();
}

}  // namespace

TEST_SUITE("reload") {
  TEST_CASE("reload: 20 reloads under 4 concurrent clients fail no request, and each applies at once") {
    auto a = start_echo("a");
    auto b = start_echo("b");
    ProxyFixture proxy(make_scenario({make_route({echo_url(*a)})}));
    Load load(proxy.port(), 4);
    for (int i = 0; i < 20; ++i) {
      const bool to_b = i % 2 == 0;
      auto problems = proxy.server().reload(make_scenario({make_route({echo_url(to_b ? *b : *a)})}));
      REQUIRE(problems.empty());
      CHECK(who(proxy.port()) == (to_b ? "b" : "a"));
      std::this_thread::sleep_for(50ms);
    }
    load.finish();
    CHECK(load.failed() == 0);
    CHECK(load.count("a") > 0);
    CHECK(load.count("b") > 0);
  }

  TEST_CASE("reload: a broken or impossible configuration is refused and the running one stays") {
    auto a = start_echo("a");
    ProxyFixture proxy(make_scenario({make_route({echo_url(*a)})}));
    auto broken = make_scenario({make_route({echo_url(*a)})});
    broken.routes[0].upstreams.clear();
    auto problems = proxy.server().reload(broken);
    CHECK(problems ==
          std::vector<std::string>{
              "routes[0].upstreams: at least one upstream is required (unless a stage such as replay "
              "answers every request)"});
    auto moved = make_scenario({make_route({echo_url(*a)})});
    moved.listeners[0].port = 1;
    CHECK(proxy.server().reload(moved) ==
          std::vector<std::string>{"listeners: cannot change while rproxy runs (restart it for that)"});
    CHECK(who(proxy.port()) == "a");
  }

  TEST_CASE(
      "reload: rproxy run --watch follows in-place writes and atomic renames, SIGHUP re-reads, under load") {
    auto a = start_echo("a");
    auto b = start_echo("b");
    TempDir dir;
    auto file = dir.write("s.json", scenario_text(echo_url(*a)));
    auto p = spawn_rproxy({"run", file, "--watch"});
    const auto port = p.port;
    Load load(port, 3);
    // In place, as most editors' plain save does.
    {
      std::ofstream f(file, std::ios::trunc);
      f << scenario_text(echo_url(*b));
    }
    CHECK(wait_for_answer(port, "b"));
    // Atomically, as vim's backupcopy and most config tools do.
    dir.write("s.json.new", scenario_text(echo_url(*a)));
    REQUIRE(std::rename(dir.file("s.json.new").c_str(), file.c_str()) == 0);
    CHECK(wait_for_answer(port, "a"));
    // Broken: reported, the running configuration stays.
    {
      std::ofstream f(file, std::ios::trunc);
      f << R"({"version": 1, "routes": [{"upstreams": ["ftp://nope"]}]})";
    }
    auto refused = p.proc->wait_for_stderr("rproxy: reload (" + file + " changed) refused", 5s);
    CHECK(refused);
    CHECK(p.proc->wait_for_stderr("rproxy:   routes[0].upstreams[0]: \"ftp://nope\" is not an http(s) URL",
                                  2s));
    CHECK(who(port) == "a");
    // SIGHUP re-reads the file (here fixed again, then signalled before the watcher would notice).
    {
      std::ofstream f(file, std::ios::trunc);
      f << scenario_text(echo_url(*b));
    }
    p.proc->signal(SIGHUP);
    CHECK(wait_for_answer(port, "b"));
    load.finish();
    CHECK(load.failed() == 0);
    CHECK(load.total() > 50);
    p.proc->signal(SIGTERM);
    CHECK(p.proc->wait_exit(10s) == 0);
  }

  TEST_CASE("reload: the admin API reads, replaces and patches the scenario under load") {
    auto a = start_echo("a");
    auto b = start_echo("b");
    TempDir dir;
    auto file = dir.write("s.json", scenario_text(echo_url(*a)));
    auto p = spawn_rproxy({"serve", "--scenario", file, "--admin", "127.0.0.1:0"});
    const auto port = p.port;
    auto line = p.proc->wait_for_stderr("rproxy: admin on ", 5s);
    REQUIRE(line);
    auto admin = line->substr(std::string("rproxy: admin on ").size());
    admin = admin.substr(0, admin.find(' '));
    Load load(port, 3);
    auto current = json::parse(run_curl({admin + "/scenario"}).out);
    CHECK(current["routes"][0]["upstreams"][0]["url"] == echo_url(*a));
    // PATCH: a merge patch (arrays are replaced whole).
    auto patched =
        run_curl({"-X", "PATCH", "--data-binary", json{{"routes", {{{"upstreams", {echo_url(*b)}}}}}}.dump(),
                  admin + "/scenario"});
    CHECK(json::parse(patched.out)["ok"] == true);
    CHECK(who(port) == "b");
    // PUT: a whole scenario.
    current["routes"][0]["upstreams"] = {echo_url(*a)};
    auto put = run_curl({"-X", "PUT", "--data-binary", current.dump(), admin + "/scenario"});
    CHECK(json::parse(put.out)["ok"] == true);
    CHECK(who(port) == "a");
    // Invalid: 400 naming the paths, nothing changes.
    auto bad =
        run_curl({"-w", "\n%{http_code}", "-X", "PATCH", "--data-binary",
                  R"({"routes": [{"upstreams": ["ftp://x"], "balance": "fastest"}]})", admin + "/scenario"});
    CHECK(bad.out.substr(bad.out.rfind('\n') + 1) == "400");
    auto problems = json::parse(bad.out.substr(0, bad.out.rfind('\n')))["problems"];
    CHECK(
        problems ==
        json{
            R"(routes[0].upstreams[0]: "ftp://x" is not an http(s) URL)",
            R"(routes[0].balance: must be one of round_robin, least_conn, random, weighted; got "fastest")"});
    CHECK(who(port) == "a");
    load.finish();
    CHECK(load.failed() == 0);
    p.proc->signal(SIGTERM);
    CHECK(p.proc->wait_exit(10s) == 0);
  }
}
