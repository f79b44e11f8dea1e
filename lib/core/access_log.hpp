// AccessLog writes one line per finished exchange, text or JSON. Each line is one write(2) on an
// unbuffered descriptor, so nothing already logged is lost when the process is killed.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace rproxy {

struct AccessRecord {
  std::chrono::system_clock::time_point start;
  std::string client_ip;
  std::string method;
  std::string target;
  int status = 0;
  std::uint64_t bytes_in = 0;   // request body bytes
  std::uint64_t bytes_out = 0;  // response body bytes
  double duration_ms = 0;
  std::string route;
  std::string upstream;
  std::string error;  // X-Rproxy-Error value when rproxy produced the response
  std::string variant;  // split variant that served the exchange, "" when no split stage ran
  std::string fault;    // fault rules that fired for the exchange (comma-separated), "" when none
  std::string replay;   // "hit" or "miss" when a replay stage looked the request up
  std::string cache;    // "hit", "miss", "revalidated" or "bypass" when a cache stage ran
  std::string retries;  // how many times the request was retried, "" when never
};

class AccessLogWriter {
 public:
  // path: "" = off, "-" = stderr, else a file opened for append. format: "text" or "json".
  AccessLogWriter(const std::string& path, const std::string& format);
  ~AccessLogWriter();
  AccessLogWriter(const AccessLogWriter&) = delete;
  AccessLogWriter& operator=(const AccessLogWriter&) = delete;

  bool enabled() const { return fd_ >= 0; }
  void write(const AccessRecord& r);
  // format_line is the pure part, for tests.
  static std::string format_line(const AccessRecord& r, bool json);

 private:
  int fd_ = -1;
  bool owned_ = false;
  bool json_ = false;
  std::mutex mutex_;
};

// log_line writes one diagnostic line ("rproxy: ...") to stderr in a single write.
void log_line(const std::string& line);

}  // namespace rproxy
