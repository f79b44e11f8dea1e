// Tests for the Replayer's index and verdict: a large recording is answered by key, repeated requests
// take their answers in order, and the out-of-order list stays bounded however many requests come.
#include "stages/replayer.hpp"

#include <doctest/doctest.h>

#include <string>

using rproxy::Exchange;
using rproxy::stages::Replayer;
using rproxy::stages::ReplaySettings;
namespace store = rproxy::store;

namespace {

store::Interaction recorded(std::uint64_t id, const std::string& target, const std::string& body) {
  store::Interaction it;
  it.id = id;
  it.method = "GET";
  it.target = target;
  it.request_headers.add("Host", "example.test");
  it.status = 200;
  it.reason = "OK";
  it.response_headers.add("Content-Type", "text/plain");
  it.response_headers.add("Content-Length", std::to_string(body.size()));
  it.response_body.size = body.size();
  it.response_body.data = body;
  return it;
}

Exchange get(const std::string& target) {
  Exchange ex;
  ex.request.method = "GET";
  ex.request.target = target;
  ex.request.headers.add("Host", "127.0.0.1:1");
  return ex;
}

Replayer replayer_of(std::size_t n, bool repeat_last) {
  store::Cassette c;
  for (std::size_t i = 0; i < n; ++i)
    c.interactions.push_back(recorded(i + 1, "/r/" + std::to_string(i), "body " + std::to_string(i)));
  ReplaySettings settings;
  settings.repeat_last = repeat_last;
  return Replayer(std::move(c), store::resolve_cassette_path("/nonexistent/cassette.json"), std::move(settings));
}

}  // namespace

TEST_CASE("replayer: every one of 10,000 recorded requests is answered with its own recording") {
  auto r = replayer_of(10000, false);
  for (std::size_t i = 0; i < 10000; i += 997) {
    auto answer = r.answer(get("/r/" + std::to_string(i)));
    REQUIRE(answer.hit);
    CHECK(answer.hit->body == "body " + std::to_string(i));
  }
  auto miss = r.answer(get("/r/10000"));
  CHECK_FALSE(miss.hit);
  CHECK(miss.miss.status == 502);
}

TEST_CASE("replayer: answers taken out of recorded order are listed up to a bound, then counted") {
  auto r = replayer_of(300, true);
  // Descending: every answer after the first comes from an earlier recording than the one before.
  for (int i = 299; i >= 0; --i) REQUIRE(r.answer(get("/r/" + std::to_string(i))).hit);
  // And again, so repeat_last answers are out of order too.
  for (int i = 299; i >= 0; --i) REQUIRE(r.answer(get("/r/" + std::to_string(i))).hit);
  auto v = r.verdict();
  CHECK(v["hits"] == 600);
  const auto& listed = v["out_of_order"];
  REQUIRE(listed.size() == 100);
  // 299 out of order in the first pass, 299 in the second (its first request, /r/299, is the highest id).
  CHECK(listed.back().value("more", 0) == 598 - 100);
}
