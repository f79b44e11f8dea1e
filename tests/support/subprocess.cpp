#include "support/subprocess.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace rproxy::test {

MemoryStatus memory_status(pid_t pid) {
  MemoryStatus m;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) m.vm_rss_kib = std::stol(line.substr(6));
    if (line.rfind("VmHWM:", 0) == 0) m.vm_hwm_kib = std::stol(line.substr(6));
  }
  return m;
}

std::string rproxy_binary() {
  return RPROXY_BINARY;
}

Subprocess::Subprocess(std::vector<std::string> argv) {
  if (argv.empty()) throw std::runtime_error("Subprocess: empty argv");
  int out[2];
  int err[2];
  if (::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    throw std::runtime_error("pipe2 failed");
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  // The test process holds sockets of in-process servers; the child must not keep any of them alive.
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
#endif

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  int rc = ::posix_spawnp(&pid_, args[0], &fa, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(out[1]);
  ::close(err[1]);
  if (rc != 0) {
    ::close(out[0]);
    ::close(err[0]);
    throw std::runtime_error("posix_spawn " + argv[0] + ": " + std::strerror(rc));
  }
  out_thread_ = std::thread([this, fd = out[0]] { pump(fd, stdout_); });
  err_thread_ = std::thread([this, fd = err[0]] { pump(fd, stderr_); });
}

Subprocess::~Subprocess() {
  if (!reaped_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int st = 0;
    ::waitpid(pid_, &st, 0);
    reaped_ = true;
  }
  if (out_thread_.joinable()) out_thread_.join();
  if (err_thread_.joinable()) err_thread_.join();
}

void Subprocess::pump(int fd, std::string& out) {
  char buf[8192];
  for (;;) {
    auto n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    std::lock_guard lock(mutex_);
    out.append(buf, static_cast<std::size_t>(n));
    cv_.notify_all();
  }
  ::close(fd);
  std::lock_guard lock(mutex_);
  --open_pipes_;
  cv_.notify_all();
}

std::optional<std::string> Subprocess::wait_for_stderr(const std::string& prefix,
                                                       std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  std::optional<std::string> found;
  auto scan = [&] {
    std::size_t pos = 0;
    while (pos < stderr_.size()) {
      auto nl = stderr_.find('\n', pos);
      if (nl == std::string::npos) break;
      if (stderr_.compare(pos, prefix.size(), prefix) == 0) {
        found = stderr_.substr(pos, nl - pos);
        return true;
      }
      pos = nl + 1;
    }
    return open_pipes_ == 0;
  };
  cv_.wait_for(lock, timeout, scan);
  return found;
}

std::string Subprocess::stdout_text() const {
  std::lock_guard lock(mutex_);
  return stdout_;
}

std::string Subprocess::stderr_text() const {
  std::lock_guard lock(mutex_);
  return stderr_;
}

void Subprocess::signal(int sig) {
  if (!reaped_) ::kill(pid_, sig);
}

bool Subprocess::running() {
  return !wait_exit(std::chrono::milliseconds(0)).has_value();
}

std::optional<int> Subprocess::wait_exit(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!reaped_) {
    int st = 0;
    auto r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      exit_code_ = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
      break;
    }
    if (r < 0 && errno != EINTR) return std::nullopt;
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // Let the output threads collect what the child wrote last.
  std::unique_lock lock(mutex_);
  cv_.wait_for(lock, std::chrono::seconds(2), [&] { return open_pipes_ == 0; });
  return exit_code_;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

RunResult run_command(std::vector<std::string> argv, std::chrono::milliseconds timeout) {
  RunResult r;
  Subprocess p(std::move(argv));
  auto code = p.wait_exit(timeout);
  if (!code) {
    p.signal(SIGKILL);
    p.wait_exit(std::chrono::seconds(5));
    r.exit_code = -1;
  } else {
    r.exit_code = *code;
  }
  r.out = p.stdout_text();
  r.err = p.stderr_text();
  return r;
}

RunResult run_curl(std::vector<std::string> args, std::chrono::milliseconds timeout) {
  std::vector<std::string> argv{"curl", "-sS", "--max-time", "20"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(std::move(argv), timeout);
}

RproxyProcess spawn_rproxy(std::vector<std::string> args, std::chrono::milliseconds timeout) {
  std::vector<std::string> argv{rproxy_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  RproxyProcess rp;
  rp.proc = std::make_unique<Subprocess>(std::move(argv));
  auto line = rp.proc->wait_for_stderr("rproxy: listening on ", timeout);
  if (!line) throw std::runtime_error("rproxy did not report listening; stderr:\n" + rp.proc->stderr_text());
  rp.listening_line = *line;
  auto colon = line->rfind(':');
  rp.port = static_cast<std::uint16_t>(std::stoul(line->substr(colon + 1)));
  return rp;
}

}  // namespace rproxy::test
