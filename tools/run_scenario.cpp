#include "run_scenario.hpp"

#include "admin_server.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <system_error>
#include <chrono>
#include <optional>
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

namespace {
struct FileStamp {
  bool exists = false;
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  std::int64_t mtime_ns = 0;
  bool operator==(const FileStamp&) const = default;
};

FileStamp file_stamp(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return {true, st.st_dev, st.st_ino, st.st_size,
          static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}
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
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // The watched file's stamp is taken before "listening on" is printed: a change made as soon as the
  // address is known (a script, a test) must count as a change, not as the starting point.
  const bool watching = !options.watch_file.empty();
  FileStamp stamp = watching ? file_stamp(options.watch_file) : FileStamp{};

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
  bool admin_token = false;
  if (scenario.admin) {
    ProxyServer* srv = server.get();
    AdminTarget target{[srv] { return srv->report(); },
                       [srv] { return srv->stage_names(); },
                       [srv](const std::string& stage, const AdminRequest& req) { return srv->admin(stage, req); },
                       [srv] { return srv->metrics(); },
                       [srv] { return srv->upstreams(); },
                       [srv] { return srv->summary_json(); },
                       [srv] { return scenario_to_json(srv->scenario()); },
                       [srv](const nlohmann::json& doc) {
                         try {
                           return srv->reload(scenario_from_json(doc));
                         } catch (const ConfigError& e) {
                           return e.problems();
                         }
                       },
                       [srv](std::size_t limit) { return srv->recent_exchanges(limit); },
                       {}};
    if (!options.admin_token_file.empty()) {
      std::ifstream f(options.admin_token_file);
      std::getline(f, target.token);
      if (!f || target.token.empty()) {
        std::cerr << "rproxy: error: --admin-token-file: cannot read a token from " << options.admin_token_file
                  << "\n";
        server->stop();
        server->wait();
        return 2;
      }
    } else if (const char* env = std::getenv("RPROXY_ADMIN_TOKEN"); env && *env) {
      target.token = env;
    }
    try {
      admin_token = !target.token.empty();
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
  if (admin)
    std::cerr << "rproxy: admin on " << admin->url() << " (GET / lists the endpoints"
              << (admin_token ? "; bearer token required" : "") << ")\n";
  std::cerr.flush();

  int sig = 0;
  // An access log on stderr would scroll the live view away, so one of them has to give.
  const bool live = !options.quiet && isatty(STDERR_FILENO) && scenario.access_log.path != "-";
  LiveView view;
  auto last_draw = std::chrono::steady_clock::now();
  std::uint64_t last_requests = 0;
  // Reloads keep the running configuration whenever the new one is broken, and say so.
  auto reload = [&](const std::string& why) {
    view.clear();
    if (!options.rebuild) {
      std::cerr << "rproxy: " << why << ": nothing to reload (this command has no scenario file)\n";
      return;
    }
    std::vector<std::string> problems;
    Scenario next;
    try {
      next = options.rebuild();
      problems = server->reload(next);
    } catch (const ConfigError& e) {
      problems = e.problems();
    } catch (const std::exception& e) {
      problems = {e.what()};
    }
    if (problems.empty()) {
      std::cerr << "rproxy: reloaded (" << why << "): " << next.routes.size() << " route"
                << (next.routes.size() == 1 ? "" : "s") << "\n";
    } else {
      std::cerr << "rproxy: reload (" << why << ") refused, the running configuration stays:\n";
      for (const auto& p : problems) std::cerr << "rproxy:   " << p << "\n";
    }
  };
  bool settling = false;  // a change was seen: reload once the file settles
  auto settle = std::chrono::steady_clock::now();
  if (watching) std::cerr << "rproxy: watching " << options.watch_file << " (reloads when it changes; also on SIGHUP)\n";
  while (true) {
    if (!live && !watching) {
      sigwait(&set, &sig);
    } else {
      timespec tick{0, 100 * 1000 * 1000};
      sig = sigtimedwait(&set, nullptr, &tick);
    }
    if (sig == SIGHUP) {
      reload("SIGHUP");
      sig = 0;
      continue;
    }
    if (sig > 0) break;
    auto now = std::chrono::steady_clock::now();
    if (watching) {
      // Editors replace files by rename or rewrite them in place: any change of inode, size or mtime
      // counts; the reload waits until the file has stopped changing for 150 ms.
      auto next_stamp = file_stamp(options.watch_file);
      if (next_stamp != stamp) {
        stamp = next_stamp;
        settling = true;
        settle = now + std::chrono::milliseconds(150);
      } else if (settling && now >= settle) {
        settling = false;
        if (stamp.exists) reload(options.watch_file + " changed");
      }
    }
    if (live && now - last_draw >= std::chrono::seconds(1)) {
      // One line of rates and connections over the table of routes and variants and the stages' lines.
      auto st = server->stats();
      double secs = std::chrono::duration<double>(now - last_draw).count();
      char rate[160];
      std::snprintf(rate, sizeof rate,
                    "rproxy: %.0f req/s, %llu requests, %llu connections open, %llu upstream errors\n",
                    static_cast<double>(st.requests - last_requests) / secs,
                    static_cast<unsigned long long>(st.requests),
                    static_cast<unsigned long long>(st.connections_active),
                    static_cast<unsigned long long>(st.upstream_errors));
      last_draw = now;
      last_requests = st.requests;
      view.draw(rate + server->summary());
    }
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
    RunOptions with_rebuild = options;
    if (!with_rebuild.rebuild) with_rebuild.rebuild = build;
    return run_scenario(scenario, with_rebuild);
  } catch (const ConfigError& e) {
    report_config_error(e);
    return 2;
  }
}

}  // namespace rproxy::cli
