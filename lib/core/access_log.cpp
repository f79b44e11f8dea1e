#include "core/access_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace rproxy {

namespace {
std::string iso_time(std::chrono::system_clock::time_point t) {
  auto secs = std::chrono::time_point_cast<std::chrono::seconds>(t);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - secs).count();
  std::time_t tt = std::chrono::system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

void write_all(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    auto n = ::write(fd, s.data() + off, s.size() - off);
    if (n <= 0) return;
    off += static_cast<std::size_t>(n);
  }
}
}  // namespace

AccessLogWriter::AccessLogWriter(const std::string& path, const std::string& format) : json_(format == "json") {
  if (path.empty()) return;
  if (path == "-") {
    fd_ = STDERR_FILENO;
    return;
  }
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) throw std::runtime_error("cannot open access log " + path);
  owned_ = true;
}

AccessLogWriter::~AccessLogWriter() {
  if (owned_) ::close(fd_);
}

std::string AccessLogWriter::format_line(const AccessRecord& r, bool json) {
  char dur[32];
  std::snprintf(dur, sizeof dur, "%.3f", r.duration_ms);
  if (json) {
    nlohmann::ordered_json j{{"time", iso_time(r.start)}, {"client", r.client_ip},  {"method", r.method},
                             {"target", r.target},        {"status", r.status},     {"bytes_in", r.bytes_in},
                             {"bytes_out", r.bytes_out},  {"duration_ms", std::stod(dur)}, {"route", r.route},
                             {"upstream", r.upstream}};
    if (!r.variant.empty()) j["variant"] = r.variant;
    if (!r.fault.empty()) j["fault"] = r.fault;
    if (!r.replay.empty()) j["replay"] = r.replay;
    if (!r.cache.empty()) j["cache"] = r.cache;
    if (!r.retries.empty()) j["retries"] = std::stoi(r.retries);
    if (!r.error.empty()) j["error"] = r.error;
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
  std::string line = iso_time(r.start) + " " + r.client_ip + " " + r.method + " " + r.target + " " +
                     std::to_string(r.status) + " " + std::to_string(r.bytes_out) + "B " + dur + "ms route=" +
                     (r.route.empty() ? "-" : r.route) + " upstream=" + (r.upstream.empty() ? "-" : r.upstream);
  if (!r.variant.empty()) line += " variant=" + r.variant;
  if (!r.fault.empty()) line += " fault=" + r.fault;
  if (!r.replay.empty()) line += " replay=" + r.replay;
  if (!r.cache.empty()) line += " cache=" + r.cache;
  if (!r.retries.empty()) line += " retries=" + r.retries;
  if (!r.error.empty()) line += " error=" + r.error;
  // Targets are forwarded byte for byte, but a log line must stay one line.
  for (auto& c : line)
    if (c == '\n' || c == '\r') c = ' ';
  return line + "\n";
}

void AccessLogWriter::write(const AccessRecord& r) {
  if (fd_ < 0) return;
  auto line = format_line(r, json_);
  std::lock_guard lock(mutex_);
  write_all(fd_, line);
}

void log_line(const std::string& line) { write_all(STDERR_FILENO, line.back() == '\n' ? line : line + "\n"); }

}  // namespace rproxy
