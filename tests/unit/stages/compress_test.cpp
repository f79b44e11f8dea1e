// Tests for the compress stage's decision: which responses are compressed with which coding, the headers
// it rewrites (Content-Encoding, Vary, Content-Length, Accept-Ranges, ETag), and param errors.
#include "stages/compress.hpp"

#include <doctest/doctest.h>

#include <string>

#include "support/problems.hpp"

using nlohmann::json;
using rproxy::Decision;
using rproxy::Exchange;
using rproxy::ResponseHead;
using rproxy::stages::CompressStage;
using rproxy::test::build_stage_ok;
using rproxy::test::Problems;
using rproxy::test::stage_problems;

namespace {

constexpr const char* kPath = "stages[0].params";

Exchange exchange(const std::string& accept_encoding, const std::string& type = "text/html; charset=utf-8",
                  const std::string& length = "5000") {
  Exchange ex;
  ex.request.method = "GET";
  ex.request.target = "/";
  if (!accept_encoding.empty()) ex.request.headers.add("Accept-Encoding", accept_encoding);
  ResponseHead r;
  r.status = 200;
  if (!type.empty()) r.headers.add("Content-Type", type);
  if (!length.empty()) r.headers.add("Content-Length", length);
  r.headers.add("ETag", "\"abc\"");
  r.headers.add("Accept-Ranges", "bytes");
  ex.response = r;
  return ex;
}

}  // namespace

TEST_CASE("compress stage: picks br or gzip from Accept-Encoding and rewrites the head") {
  auto stage = build_stage_ok<CompressStage>(json::object(), kPath);
  auto ex = exchange("gzip, deflate, br");
  auto d = stage->on_response(ex);
  CHECK(d.content_coding == "br");
  CHECK(d.coding_level == 4);
  const auto& h = ex.response->headers;
  CHECK(h.get("Content-Encoding") == "br");
  CHECK(h.get("Vary") == "Accept-Encoding");
  CHECK_FALSE(h.has("Content-Length"));
  CHECK_FALSE(h.has("Accept-Ranges"));
  CHECK(h.get("ETag") == "W/\"abc\"");

  auto gz = exchange("gzip");
  CHECK(stage->on_response(gz).content_coding == "gzip");
  auto prefers = exchange("br;q=0.2, gzip;q=0.9");
  CHECK(stage->on_response(prefers).content_coding == "gzip");
  CHECK(stage->report() == json{{"compressed", 3}, {"gzip", 2}, {"br", 1}});
}

TEST_CASE("compress stage: leaves alone what must not or need not be compressed") {
  auto stage = build_stage_ok<CompressStage>(json::object(), kPath);
  auto untouched = [&](Exchange ex) {
    auto before = ex.response->headers;
    auto d = stage->on_response(ex);
    CHECK(d.content_coding.empty());
    CHECK_FALSE(ex.response->headers.has("Content-Encoding"));
    return ex;
  };
  // Not compressible: no Vary either.
  CHECK_FALSE(untouched(exchange("gzip", "image/png")).response->headers.has("Vary"));
  CHECK_FALSE(untouched(exchange("gzip", "text/event-stream")).response->headers.has("Vary"));
  CHECK_FALSE(untouched(exchange("gzip", "")).response->headers.has("Vary"));
  CHECK_FALSE(untouched(exchange("gzip", "text/html", "100")).response->headers.has("Vary"));
  // Compressible, but this client gets identity: Vary still says the answer depends on Accept-Encoding.
  CHECK(untouched(exchange("")).response->headers.get("Vary") == "Accept-Encoding");
  CHECK(untouched(exchange("identity")).response->headers.get("Vary") == "Accept-Encoding");
  auto http10 = exchange("gzip");
  http10.request.version_minor = 0;
  untouched(http10);
  // Already encoded, partial, bodiless, no-transform.
  auto encoded = exchange("gzip");
  encoded.response->headers.add("Content-Encoding", "zstd");
  CHECK(stage->on_response(encoded).content_coding.empty());
  for (int status : {204, 206, 304, 101}) {
    CAPTURE(status);
    auto ex = exchange("gzip");
    ex.response->status = status;
    untouched(ex);
  }
  auto no_transform = exchange("gzip");
  no_transform.response->headers.add("Cache-Control", "public, No-Transform");
  untouched(no_transform);
  // An existing Vary is extended once, and Vary: * is left as it is.
  auto vary = exchange("gzip");
  vary.response->headers.add("Vary", "Origin");
  stage->on_response(vary);
  CHECK(vary.response->headers.get("Vary") == "Origin, Accept-Encoding");
  auto vary_again = exchange("gzip");
  vary_again.response->headers.add("Vary", "accept-encoding");
  stage->on_response(vary_again);
  CHECK(vary_again.response->headers.joined("Vary") == "accept-encoding");
}

TEST_CASE("compress stage: params choose encodings, types, sizes and levels") {
  auto stage = build_stage_ok<CompressStage>(
      {{"encodings", {"gzip"}}, {"types", {"application/*+json"}}, {"min_size", "1KiB"}, {"gzip_level", 9}},
      kPath);
  auto ex = exchange("br, gzip", "application/problem+json", "2048");
  auto d = stage->on_response(ex);
  CHECK(d.content_coding == "gzip");
  CHECK(d.coding_level == 9);
  auto small = exchange("gzip", "application/problem+json", "1000");
  CHECK(stage->on_response(small).content_coding.empty());
  auto html = exchange("gzip");
  CHECK(stage->on_response(html).content_coding.empty());

  CHECK(
      stage_problems<CompressStage>(
          {{"encodings", {"zstd"}}, {"gzip_level", 10}, {"types", {"html"}}, {"level", 1}}, kPath) ==
      Problems{
          R"(stages[0].params.level: unknown key (known: encodings, types, min_size, gzip_level, brotli_level))",
          R"(stages[0].params.encodings[0]: must be "br" or "gzip", got "zstd")",
          R"(stages[0].params.types[0]: expected a media type like "text/html" or "text/*", got "html")",
          "stages[0].params.gzip_level: expected an integer from 1 to 9, got 10",
      });
  CHECK(stage_problems<CompressStage>({{"encodings", json::array()}}, kPath) ==
        Problems{"stages[0].params.encodings: at least one encoding is required (remove the stage to turn "
                 "compression "
                 "off)"});
}
