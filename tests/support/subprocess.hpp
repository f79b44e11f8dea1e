// Subprocess helpers: spawn a program (posix_spawn) with its stdout and stderr captured by background
// threads, wait for a stderr line, signal it, wait for its exit, read its memory figures from /proc.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace rproxy::test {

// MemoryStatus is from /proc/PID/status, in KiB (-1 when unreadable).
struct MemoryStatus {
  long vm_rss_kib = -1;
  long vm_hwm_kib = -1;
};
MemoryStatus memory_status(pid_t pid);

class Subprocess {
 public:
  // Starts argv[0] (searched in PATH when it has no '/'); throws std::runtime_error when it cannot.
  // stdin is /dev/null.
  explicit Subprocess(std::vector<std::string> argv);
  ~Subprocess();  // SIGKILLs and reaps the child if it still runs
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  // wait_for_stderr waits until stderr contains a line starting with prefix; returns that whole line.
  std::optional<std::string> wait_for_stderr(const std::string& prefix, std::chrono::milliseconds timeout);
  std::string stdout_text() const;
  std::string stderr_text() const;
  void signal(int sig);
  // wait_exit waits for the child to exit; returns its exit code, 128+N when killed by signal N, or
  // nullopt on timeout (the child is left running).
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  bool running();
  MemoryStatus memory() const { return memory_status(pid_); }

 private:
  void pump(int fd, std::string& out);

  pid_t pid_ = -1;
  bool reaped_ = false;
  int exit_code_ = -1;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::string stdout_;
  std::string stderr_;
  int open_pipes_ = 2;
  std::thread out_thread_;
  std::thread err_thread_;
};

// RunResult is a finished command.
struct RunResult {
  int exit_code = -1;  // -1 = timed out (and killed)
  std::string out;
  std::string err;
};
// run_command runs argv to completion (killing it after timeout) and captures its output.
RunResult run_command(std::vector<std::string> argv, std::chrono::milliseconds timeout = std::chrono::seconds(20));
// run_curl runs curl with args (prefixed by -sS and a 20 s --max-time).
RunResult run_curl(std::vector<std::string> args, std::chrono::milliseconds timeout = std::chrono::seconds(30));

// RproxyProcess is the rproxy binary (RPROXY_BINARY) started with args and listening.
struct RproxyProcess {
  std::unique_ptr<Subprocess> proc;
  std::uint16_t port = 0;
  std::string listening_line;  // "rproxy: listening on http://127.0.0.1:PORT"
};
// spawn_rproxy starts `rproxy ARGS...`, waits (up to timeout) for its first "rproxy: listening on" line
// and parses the port out of it. Throws std::runtime_error (with the captured stderr) if it never comes.
RproxyProcess spawn_rproxy(std::vector<std::string> args, std::chrono::milliseconds timeout = std::chrono::seconds(10));

std::string rproxy_binary();

// lines_of splits captured output into lines (without their newlines).
std::vector<std::string> lines_of(const std::string& text);

}  // namespace rproxy::test
