// Every example in scenarios/ is loaded and exercised: its upstreams are replaced by echo servers and
// listeners by ephemeral ports, then one request per route must reach that route's upstreams.
#include <doctest/doctest.h>

#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "support/proxy_fixture.hpp"
#include "support/raw_client.hpp"

using namespace rproxy;
using namespace rproxy::test;

namespace {

std::vector<std::string> example_files() {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(std::string(RPROXY_SOURCE_DIR) + "/scenarios")) {
    auto name = e.path().filename().string();
    if (e.path().extension() == ".json" && name != "scenario.schema.json") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// A request that the route's match conditions accept.
std::string request_for(const Route& r) {
  std::string path = r.match.path ? *r.match.path : r.match.path_prefix.value_or("/");
  std::string method = r.match.methods.empty() ? "GET" : r.match.methods.front();
  std::string host = r.match.host ? *r.match.host : "localhost";
  if (host.rfind("*.", 0) == 0) host = "x" + host.substr(1);
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: " + host + "\r\n";
  for (const auto& [name, value] : r.match.headers) req += name + ": " + (value == "*" ? "1" : value) + "\r\n";
  if (method != "GET" && method != "HEAD") req += "Content-Length: 0\r\n";
  return req + "\r\n";
}

}  // namespace

TEST_CASE("scenarios: every example loads and routes traffic to its upstreams") {
  auto files = example_files();
  REQUIRE(files.size() >= 5);
  for (const auto& file : files) {
    CAPTURE(file);
    Scenario s = load_scenario(file);
    // One echo server per distinct upstream URL, named after the URL it stands for.
    std::map<std::string, std::unique_ptr<EchoServer>> echoes;
    for (auto& route : s.routes)
      for (auto& u : route.upstreams) {
        auto& e = echoes[u.url.text];
        if (!e) e = start_echo(u.url.text);
        REQUIRE(!parse_url(echo_url(*e), u.url));
      }
    // TLS examples keep TLS, with a local CA in a scratch directory (never the user's).
    const bool tls = std::any_of(s.listeners.begin(), s.listeners.end(), [](const auto& l) { return l.tls; });
    s.listeners = {ListenAddress{"127.0.0.1", 0, tls}};
    if (s.tls.redirect_http) s.tls.redirect_http->port = 0;
    s.access_log.path.clear();
    s.report.clear();
    // Files stages write (fault journals) go to a scratch directory, not the working directory.
    TempDir scratch;
    if (tls) ::setenv("RPROXY_DATA_DIR", scratch.path().c_str(), 1);
    auto relocate = [&](std::vector<StageSpec>& stages) {
      for (auto& st : stages)
        if (st.params.is_object() && st.params.contains("journal"))
          st.params["journal"] = scratch.file(st.name + ".jsonl");
    };
    relocate(s.stages);
    for (auto& route : s.routes) relocate(route.stages);
    ProxyFixture proxy(s);
    const auto& loaded = load_scenario(file);
    for (std::size_t i = 0; i < s.routes.size(); ++i) {
      const auto& route = s.routes[i];
      CAPTURE(route.name);
      RawClient c(proxy.port());
      if (tls) {
        TlsOptions options;
        options.ca_file = scratch.file("ca.pem");
        options.server_name = "localhost";
        REQUIRE(c.start_tls(options));
      }
      c.send(request_for(route));
      auto resp = c.read_response();
      REQUIRE(resp.status == 200);
      auto name = resp.json()["name"].get<std::string>();
      bool belongs = false;
      for (const auto& u : loaded.routes[i].upstreams) belongs = belongs || u.url.text == name;
      CHECK(belongs);
    }
  }
}
