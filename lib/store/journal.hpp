// Journal appends JSON lines to a file, one write(2) per line on an unbuffered descriptor: every line is
// in the kernel once write returns, so a crash or SIGKILL loses nothing already journaled.
#pragma once

#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

namespace rproxy {

class Journal {
 public:
  Journal() = default;
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // open truncates (or creates) path; throws std::runtime_error naming the file when it cannot.
  void open(const std::string& path);
  bool is_open() const { return fd_ >= 0; }
  // write appends one line (compact JSON); thread-safe. A failed write is reported once on stderr.
  void write(const nlohmann::json& line);
  std::uint64_t lines() const;

 private:
  int fd_ = -1;
  bool failed_ = false;
  std::uint64_t lines_ = 0;
  mutable std::mutex mutex_;
};

}  // namespace rproxy
