// In-process proxy fixture and scenario builders for integration tests. A ProxyFixture starts a
// ProxyServer on 127.0.0.1:0 (unless the scenario says otherwise) and stops and waits for it in its
// destructor; EchoFixture does the same for an EchoServer.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "echo_server.hpp"
#include "rproxy/proxy_server.hpp"
#include "rproxy/scenario.hpp"

namespace rproxy::test {

// upstream_url renders "http://127.0.0.1:PORT".
std::string upstream_url(std::uint16_t port, const std::string& host = "127.0.0.1");
// upstream_spec parses a URL into an UpstreamSpec (throws on a bad URL: a test bug).
UpstreamSpec upstream_spec(const std::string& url, unsigned weight = 1);

// make_route builds a route to the given upstream URLs (no match = every request).
Route make_route(const std::vector<std::string>& urls, const std::string& name = "");
Route prefix_route(const std::string& prefix, const std::vector<std::string>& urls, const std::string& name = "");

// make_scenario: one listener on 127.0.0.1:0, 2 workers, drain_timeout 2s, the given routes.
Scenario make_scenario(std::vector<Route> routes);

class ProxyFixture {
 public:
  // Names unnamed routes (fill_default_names), constructs and starts the server. Throws ConfigError or
  // std::system_error like ProxyServer does.
  explicit ProxyFixture(Scenario scenario);
  ~ProxyFixture();
  ProxyFixture(const ProxyFixture&) = delete;
  ProxyFixture& operator=(const ProxyFixture&) = delete;

  std::uint16_t port(std::size_t listener = 0) const { return ports_.at(listener); }
  ProxyServer& server() { return *server_; }
  // stop stops the server and waits for it (idempotent; the destructor calls it).
  void stop();

 private:
  std::unique_ptr<ProxyServer> server_;
  std::vector<std::uint16_t> ports_;
  bool stopped_ = false;
};

// start_echo starts an in-process echo upstream named name on 127.0.0.1 (port 0: a free one).
// port 0 picks a free one; a given port brings an upstream back where one was (a restarted dev server).
std::unique_ptr<EchoServer> start_echo(const std::string& name = "echo", const std::string& host = "127.0.0.1",
                                       std::uint16_t port = 0);
inline std::string echo_url(const EchoServer& e) { return upstream_url(e.port(), e.options().host); }

// TempDir is a fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  // write creates name with content and returns its path.
  std::string write(const std::string& name, const std::string& content) const;

 private:
  std::string path_;
};

std::string read_file(const std::string& path);

// ipv6_loopback_available tells whether ::1 can be bound here.
bool ipv6_loopback_available();

}  // namespace rproxy::test
