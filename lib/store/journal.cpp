#include "store/journal.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "core/access_log.hpp"

namespace rproxy {

Journal::~Journal() {
  if (fd_ >= 0) ::close(fd_);
}

void Journal::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot write journal " + path + ": " + std::strerror(errno));
  std::lock_guard lock(mutex_);
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

void Journal::write(const nlohmann::json& line) {
  std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  text.push_back('\n');
  std::lock_guard lock(mutex_);
  if (fd_ < 0) return;
  std::size_t off = 0;
  while (off < text.size()) {
    auto n = ::write(fd_, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (!failed_) log_line(std::string("rproxy: journal write failed: ") + std::strerror(errno));
      failed_ = true;
      return;
    }
    off += static_cast<std::size_t>(n);
  }
  ++lines_;
}

std::uint64_t Journal::lines() const {
  std::lock_guard lock(mutex_);
  return lines_;
}

}  // namespace rproxy
