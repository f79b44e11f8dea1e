#include "run_scenario.hpp"

#include "admin_server.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <system_error>
#include <chrono>
#include <thread>

#include "rproxy/proxy_server.hpp"

namespace rproxy::cli {

void report_config_error(const ConfigError& e) {
  for (const auto& p : e.problems()) std::cerr << "rproxy: error: " << p << "\n";
}

void print_scenario(const Scenario& scenario) { std::cout << scenario_to_json(scenario).dump(2) << "\n"; }

namespace {
std::string describe_match(const Route& r) {
  std::string m;
  if (r.match.host) m += *r.match.host;
  if (r.match.path) m += *r.match.path;
  else if (r.match.path_prefix) m += *r.match.path_prefix + (r.match.path_prefix->back() == '/' ? "*" : "/*");
  else m += "/*";
  for (const auto& method : r.match.methods) m += " " + method;
  return m;
}
// LiveView redraws the stages' summary in place on a terminal.
class LiveView {
 public:
  void draw(const std::string& text) {
    std::string out;
    if (lines_ > 0) out += "\x1b[" + std::to_string(lines_) + "A\x1b[J";
    out += text;
    lines_ = 0;
    for (char c : text) lines_ += c == '\n';
    std::cerr << out << std::flush;
  }
  void clear() {
    if (lines_ > 0) std::cerr << "\x1b[" << lines_ << "A\x1b[J" << std::flush;
    lines_ = 0;
  }

 private:
  int lines_ = 0;
};
}  // namespace

bool write_file_atomically(const std::string& path, const std::string& content, std::string& error) {
  auto tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) {
      error = "cannot write " + tmp + ": " + std::strerror(errno);
      return false;
    }
    f << content;
    f.flush();
    if (!f) {
      error = "cannot write " + tmp + ": " + std::strerror(errno);
      return false;
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    error = "cannot rename " + tmp + " to " + path + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

int run_scenario(const Scenario& scenario, const RunOptions& options) {
  // Signals are taken synchronously by this thread; block them before any server thread exists so
  // that no worker thread receives them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::unique_ptr<ProxyServer> server;
  try {
    server = std::make_unique<ProxyServer>(scenario);
    server->start();
  } catch (const ConfigError& e) {
    report_config_error(e);
    return 2;
  } catch (const std::system_error& e) {
    std::cerr << "rproxy: error: " << e.what() << "\n";
    return 1;
  } catch (const std::runtime_error& e) {  // a stage that cannot start (e.g. an unwritable recording)
    std::cerr << "rproxy: error: " << e.what() << "\n";
    return 1;
  }
  std::unique_ptr<AdminServer> admin;
  if (scenario.admin) {
    ProxyServer* srv = server.get();
    AdminTarget target{[srv] { return srv->report(); },
                       [srv] { return srv->stage_names(); },
                       [srv](const std::string& stage, const AdminRequest& req) { return srv->admin(stage, req); },
                       [srv] { return srv->metrics(); },
                       [srv] { return srv->upstreams(); },
                       [srv] { return srv->summary_json(); }};
    try {
      admin = std::make_unique<AdminServer>(*scenario.admin, std::move(target));
      admin->start();
    } catch (const std::exception& e) {
      std::cerr << "rproxy: error: admin: " << e.what() << "\n";
      server->stop();
      server->wait();
      return 1;
    }
  }
  auto ports = server->ports();
  std::string https_url;
  for (std::size_t i = 0; i < scenario.listeners.size() && i < ports.size(); ++i) {
    auto l = scenario.listeners[i];
    l.port = ports[i];
    std::cerr << "rproxy: listening on " << (l.tls ? "" : "http://") << l.to_string() << "\n";
    if (l.tls && https_url.empty()) https_url = l.to_string();
  }
  if (scenario.tls.redirect_http && ports.size() > scenario.listeners.size()) {
    auto r = *scenario.tls.redirect_http;
    r.port = ports.back();
    std::cerr << "rproxy: redirecting http://" << r.to_string() << " to " << https_url << "\n";
  }
  for (const auto& line : server->notices()) std::cerr << "rproxy: " << line << "\n";
  for (const auto& r : scenario.routes) {
    std::string ups;
    for (const auto& u : r.upstreams) ups += (ups.empty() ? "" : ", ") + (u.name.empty() ? "" : u.name + "=") + u.url.text;
    std::string how = r.upstreams.size() > 1 ? to_string(r.balance) : "";
    for (const auto& st : r.stages)
      if (st.type == "split") how = "split by stage " + st.name;
    for (const auto& st : scenario.stages)
      if (st.type == "split") how = "split by stage " + st.name;
    std::cerr << "rproxy:   " << describe_match(r) << " -> " << ups << (how.empty() ? "" : " (" + how + ")") << "\n";
  }
  if (admin) std::cerr << "rproxy: admin on " << admin->url() << " (GET /report, /stages)\n";
  std::cerr.flush();

  int sig = 0;
  // An access log on stderr would scroll the live view away, so one of them has to give.
  const bool live = !options.quiet && isatty(STDERR_FILENO) && scenario.access_log.path != "-";
  LiveView view;
  auto last_draw = std::chrono::steady_clock::now();
  std::uint64_t last_requests = 0;
  while (true) {
    if (!live) {
      sigwait(&set, &sig);
      break;
    }
    timespec one_second{1, 0};
    sig = sigtimedwait(&set, nullptr, &one_second);
    if (sig > 0) break;
    // One line of rates and connections over the table of routes and variants and the stages' lines.
    auto st = server->stats();
    auto now = std::chrono::steady_clock::now();
    double secs = std::chrono::duration<double>(now - last_draw).count();
    char rate[160];
    std::snprintf(rate, sizeof rate, "rproxy: %.0f req/s, %llu requests, %llu connections open, %llu upstream errors\n",
                  secs > 0 ? static_cast<double>(st.requests - last_requests) / secs : 0.0,
                  static_cast<unsigned long long>(st.requests), static_cast<unsigned long long>(st.connections_active),
                  static_cast<unsigned long long>(st.upstream_errors));
    last_draw = now;
    last_requests = st.requests;
    view.draw(rate + server->summary());
  }
  view.clear();
  std::cerr << "rproxy: " << (sig == SIGINT ? "SIGINT" : "SIGTERM") << ", draining (up to "
            << format_duration(scenario.limits.drain_timeout) << "; signal again to stop at once)\n";
  if (admin) admin->stop();
  server->stop();
  // A second signal while draining stops at once.
  std::thread([set]() mutable {
    int s2 = 0;
    sigwait(&set, &s2);
    std::cerr << "rproxy: stopping now\n";
    std::_Exit(1);
  }).detach();
  server->wait();
  auto st = server->stats();
  std::cerr << "rproxy: stopped after " << st.requests << " requests on " << st.connections_accepted
            << " connections\n";
  if (!options.quiet) std::cerr << server->summary() << std::flush;
  if (!options.summary_json.empty()) {
    nlohmann::json doc = {{"requests", st.requests},
                          {"connections", st.connections_accepted},
                          {"upstream_errors", st.upstream_errors},
                          {"routes", server->summary_json()},
                          {"upstreams", server->upstreams()}};
    std::string error;
    if (!write_file_atomically(options.summary_json, doc.dump(2) + "\n", error)) {
      std::cerr << "rproxy: error: --summary-json: " << error << "\n";
      return 1;
    }
  }
  if (!scenario.report.empty()) {
    std::string error;
    if (!write_file_atomically(scenario.report, server->report().dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n", error)) {
      std::cerr << "rproxy: error: report: " << error << "\n";
      return 1;
    }
    std::cerr << "rproxy: report written to " << scenario.report << "\n";
  }
  return server->exit_code();
}

int print_or_run(const std::function<Scenario()>& build, bool print, const RunOptions& options) {
  try {
    auto scenario = build();
    if (print) {
      print_scenario(scenario);
      return 0;
    }
    return run_scenario(scenario, options);
  } catch (const ConfigError& e) {
    report_config_error(e);
    return 2;
  }
}

}  // namespace rproxy::cli
