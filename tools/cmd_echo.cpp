// `rproxy echo`: runs EchoServer in the foreground until SIGINT or SIGTERM.
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>

#include <cstdint>
#include <exception>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "cli.hpp"
#include "echo_server.hpp"
#include "rproxy/scenario.hpp"

namespace rproxy::cli {
namespace {

// Flags are taken as strings and validated here, so every bad value gets one message naming its flag.
struct EchoFlags {
  std::string listen = "127.0.0.1:3000";
  std::string name = "echo";
  std::string delay = "0";
  std::string status = "200";
  std::string body_size;  // empty = answer with JSON
  std::string sse = "0";
  std::string sse_interval = "1s";
};

std::optional<std::string> parse_int(const std::string& text, long lo, long hi, int& out) {
  auto error = "expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi) + ", got \"" +
               text + "\"";
  if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != std::string::npos)
    return error;
  auto value = std::stol(text);
  if (value < lo || value > hi) return error;
  out = static_cast<int>(value);
  return std::nullopt;
}

bool is_printable_name(const std::string& name) {
  if (name.empty()) return false;
  for (unsigned char c : name)
    if (c < 0x20 || c > 0x7e) return false;  // it is also sent as the X-Echo-Name header value
  return true;
}

// SignalMaskGuard blocks SIGINT/SIGTERM for this thread and every thread started while it lives (threads
// inherit the mask), so the signals stay pending until sigwait picks them up here.
class SignalMaskGuard {
 public:
  SignalMaskGuard() {
    sigemptyset(&signals_);
    sigaddset(&signals_, SIGINT);
    sigaddset(&signals_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals_, &previous_);
  }
  ~SignalMaskGuard() { pthread_sigmask(SIG_SETMASK, &previous_, nullptr); }
  SignalMaskGuard(const SignalMaskGuard&) = delete;
  SignalMaskGuard& operator=(const SignalMaskGuard&) = delete;

  int wait() const {
    int signal = 0;
    while (sigwait(&signals_, &signal) != 0) {
    }
    return signal;
  }

 private:
  sigset_t signals_;
  sigset_t previous_;
};

// raise_fd_limit lifts the soft RLIMIT_NOFILE to the hard one: every connection holds a descriptor and the
// usual soft limit of 1024 would cap the echo below its thread cap.
void raise_fd_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

int run_echo(const EchoFlags& flags) {
  auto usage = [](const char* flag, const std::string& message) {
    std::cerr << "rproxy echo: " << flag << ": " << message << "\n";
    return kExitUsage;
  };
  EchoOptions options;
  ListenAddress listen;
  if (auto err = parse_listen_address(flags.listen, listen)) return usage("--listen", *err);
  options.host = listen.host;
  options.port = listen.port;
  if (!is_printable_name(flags.name)) return usage("--name", "must be non-empty printable ASCII");
  options.name = flags.name;
  if (auto err = parse_duration(flags.delay, options.delay)) return usage("--delay", *err);
  if (auto err = parse_int(flags.status, 200, 599, options.status)) return usage("--status", *err);
  if (!flags.body_size.empty()) {
    std::uint64_t size = 0;
    if (auto err = parse_size(flags.body_size, size)) return usage("--body-size", *err);
    options.body_size = size;
  }
  if (auto err = parse_int(flags.sse, 0, 1000000, options.sse_events)) return usage("--sse", *err);
  if (auto err = parse_duration(flags.sse_interval, options.sse_interval))
    return usage("--sse-interval", *err);

  raise_fd_limit();
  SignalMaskGuard signals;  // before EchoServer starts any thread
  EchoServer server(options);
  try {
    server.start();
  } catch (const std::exception& e) {
    std::cerr << "rproxy echo: " << e.what() << "\n";
    return kExitRuntime;
  }
  const ListenAddress bound{options.host, server.port()};  // the real port when --listen asked for port 0
  std::cerr << "rproxy echo: listening on http://" << bound.to_string() << " (name " << options.name << ")"
            << std::endl;
  signals.wait();
  server.stop();
  return kExitOk;
}

}  // namespace

void setup_echo(CLI::App& app, CliState& state) {
  auto* cmd =
      app.add_subcommand("echo", "a built-in upstream that answers with a JSON description of the request");
  auto flags = std::make_shared<EchoFlags>();
  cmd->add_option("--listen", flags->listen, "address to listen on: 127.0.0.1:3000, [::1]:3000 or :3000")
      ->capture_default_str();
  cmd->add_option("--name", flags->name, "name reported in every response (tells upstreams apart)")
      ->capture_default_str();
  cmd->add_option("--delay", flags->delay, "default delay before answering, e.g. 250ms or 2s (query: delay=)")
      ->capture_default_str();
  cmd->add_option("--status", flags->status, "default response status, 200-599 (query: status=)")
      ->capture_default_str();
  cmd->add_option(
      "--body-size", flags->body_size,
      "answer with this many payload bytes instead of JSON, e.g. 1048576 or 10MiB (query: size=)");
  cmd->add_option("--sse", flags->sse, "answer with an event stream of N events (query: sse=)")
      ->capture_default_str();
  cmd->add_option("--sse-interval", flags->sse_interval, "time between events, e.g. 100ms (query: interval=)")
      ->capture_default_str();
  cmd->footer(
      "Query parameters override the defaults per request: delay=, status=, size=, sse=, interval=.\n"
      "Examples:\n"
      "  rproxy echo --listen 127.0.0.1:3000 --name a\n"
      "  rproxy echo --listen 127.0.0.1:3001 --delay 250ms --status 503\n"
      "  curl 'http://127.0.0.1:3000/any/path?status=404&delay=1s'\n");
  cmd->callback([flags, &state] { state.exit_code = run_echo(*flags); });
}

}  // namespace rproxy::cli
