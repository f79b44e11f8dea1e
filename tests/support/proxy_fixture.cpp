#include "support/proxy_fixture.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace rproxy::test {

std::string upstream_url(std::uint16_t port, const std::string& host) {
  bool v6 = host.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

UpstreamSpec upstream_spec(const std::string& url, unsigned weight) {
  UpstreamSpec u;
  if (auto err = parse_url(url, u.url)) throw std::runtime_error("bad upstream URL in test: " + url + ": " + *err);
  u.weight = weight;
  return u;
}

Route make_route(const std::vector<std::string>& urls, const std::string& name) {
  Route r;
  r.name = name;
  for (const auto& u : urls) r.upstreams.push_back(upstream_spec(u));
  return r;
}

Route prefix_route(const std::string& prefix, const std::vector<std::string>& urls, const std::string& name) {
  auto r = make_route(urls, name);
  r.match.path_prefix = prefix;
  return r;
}

Scenario make_scenario(std::vector<Route> routes) {
  Scenario s;
  s.listeners = {ListenAddress{"127.0.0.1", 0}};
  s.workers = 2;
  s.limits.drain_timeout = Millis(2000);
  s.routes = std::move(routes);
  return s;
}

ProxyFixture::ProxyFixture(Scenario scenario) {
  fill_default_names(scenario);
  server_ = std::make_unique<ProxyServer>(std::move(scenario));
  server_->start();
  ports_ = server_->ports();
}

ProxyFixture::~ProxyFixture() { stop(); }

void ProxyFixture::stop() {
  if (stopped_) return;
  stopped_ = true;
  server_->stop();
  server_->wait();
}

std::unique_ptr<EchoServer> start_echo(const std::string& name, const std::string& host, std::uint16_t port) {
  EchoOptions o;
  o.name = name;
  o.host = host;
  o.port = port;
  auto e = std::make_unique<EchoServer>(o);
  e->start();
  return e;
}

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/rproxy-it-XXXXXX";
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::write(const std::string& name, const std::string& content) const {
  auto p = file(name);
  std::ofstream out(p, std::ios::binary);
  out << content;
  return p;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

bool ipv6_loopback_available() {
  int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

}  // namespace rproxy::test
