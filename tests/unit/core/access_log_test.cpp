// Unit tests for lib/core/access_log line formats.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "core/access_log.hpp"

using namespace rproxy;

namespace {
AccessRecord record() {
  AccessRecord r;
  r.start = std::chrono::system_clock::time_point(std::chrono::milliseconds(1764169200123));
  r.client_ip = "127.0.0.1";
  r.method = "GET";
  r.target = "/a?b=1";
  r.status = 502;
  r.bytes_in = 3;
  r.bytes_out = 120;
  r.duration_ms = 1.5;
  r.route = "api";
  r.upstream = "http://127.0.0.1:3000";
  r.error = "upstream_connect_refused";
  return r;
}
}  // namespace

TEST_CASE("access log: text line has every field on one line") {
  auto line = AccessLogWriter::format_line(record(), false);
  CHECK(line ==
        "2025-11-26T15:00:00.123Z 127.0.0.1 GET /a?b=1 502 120B 1.500ms route=api upstream=http://127.0.0.1:3000 "
        "error=upstream_connect_refused\n");
}

TEST_CASE("access log: json line parses and carries every field") {
  auto line = AccessLogWriter::format_line(record(), true);
  REQUIRE(line.back() == '\n');
  auto j = nlohmann::json::parse(line);
  CHECK(j["time"] == "2025-11-26T15:00:00.123Z");
  CHECK(j["method"] == "GET");
  CHECK(j["target"] == "/a?b=1");
  CHECK(j["status"] == 502);
  CHECK(j["bytes_in"] == 3);
  CHECK(j["bytes_out"] == 120);
  CHECK(j["duration_ms"] == 1.5);
  CHECK(j["route"] == "api");
  CHECK(j["upstream"] == "http://127.0.0.1:3000");
  CHECK(j["error"] == "upstream_connect_refused");
}

TEST_CASE("access log: a target with CR or LF cannot forge a second text line") {
  auto r = record();
  r.target = "/x\r\nFAKE 200";
  auto line = AccessLogWriter::format_line(r, false);
  CHECK(line.find('\n') == line.size() - 1);
  CHECK(line.find('\r') == std::string::npos);
}
