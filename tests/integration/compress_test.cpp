// Integration tests for response compression with real clients: curl decoding br and gzip, what is never
// compressed (SSE, encoded bodies, small bodies, clients that do not ask), streaming preserved through the
// compressor, and local bodies (static files) compressed too.
#include <brotli/decode.h>
#include <doctest/doctest.h>
#include <zlib.h>

#include <cctype>
#include <chrono>
#include <string>
#include <thread>

#include "support/proxy_fixture.hpp"
#include "support/raw_client.hpp"
#include "support/scripted_upstream.hpp"
#include "support/subprocess.hpp"

using namespace rproxy;
using namespace rproxy::test;
using namespace std::chrono_literals;
using std::chrono::steady_clock;

namespace {

std::string html_page() {
  std::string page = "<!doctype html><html><body>";
  for (int i = 0; i < 2000; ++i) page += "<p class=\"row\">row " + std::to_string(i) + " of the table</p>\n";
  return page + "</body></html>\n";
}

std::string response_with(const std::string& type, const std::string& body, const std::string& extra = "") {
  return "HTTP/1.1 200 OK\r\nContent-Type: " + type + "\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nETag: \"v1\"\r\n" + extra + "\r\n" + body;
}

Scenario compressing(const std::string& upstream) {
  auto s = make_scenario({make_route({upstream})});
  s.stages.push_back(StageSpec{"compress", "", nlohmann::json::object()});
  return s;
}

// gunzip_stream inflates a gzip stream that may be incomplete (a prefix decodes to what it holds so far).
std::string gunzip_prefix(const std::string& in) {
  z_stream z{};
  REQUIRE(inflateInit2(&z, 15 + 16) == Z_OK);
  std::string out;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  char buf[65536];
  int rc = Z_OK;
  do {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    rc = inflate(&z, Z_SYNC_FLUSH);
    out.append(buf, sizeof buf - z.avail_out);
  } while (rc == Z_OK && (z.avail_in > 0 || z.avail_out == 0));
  inflateEnd(&z);
  return out;
}

std::string unbrotli(const std::string& in) {
  std::string out(in.size() * 50 + 1024, '\0');
  std::size_t n = out.size();
  auto rc = BrotliDecoderDecompress(in.size(), reinterpret_cast<const uint8_t*>(in.data()), &n,
                                    reinterpret_cast<uint8_t*>(out.data()));
  REQUIRE(rc == BROTLI_DECODER_RESULT_SUCCESS);
  out.resize(n);
  return out;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

HttpResponse get(std::uint16_t port, const std::string& target, const std::string& accept_encoding) {
  RawClient c(port);
  std::string extra = accept_encoding.empty() ? "" : "Accept-Encoding: " + accept_encoding + "\r\n";
  c.send("GET " + target + " HTTP/1.1\r\nHost: t\r\n" + extra + "\r\n");
  return c.read_response();
}

}  // namespace

TEST_SUITE("compress") {
  TEST_CASE(
      "compress: curl gets br or gzip as it asks, decodes to the upstream's bytes, with Vary and a weak "
      "ETag") {
    const auto page = html_page();
    ScriptedUpstream up(UpstreamScript{true, 0ms, response_with("text/html; charset=utf-8", page)});
    ProxyFixture proxy(compressing(up.url()));
    auto url = "http://127.0.0.1:" + std::to_string(proxy.port()) + "/";

    auto br = get(proxy.port(), "/", "gzip, deflate, br");
    CHECK(br.status == 200);
    CHECK(br.header("Content-Encoding") == "br");
    CHECK(br.header("Vary") == "Accept-Encoding");
    CHECK(br.header("ETag") == "W/\"v1\"");
    CHECK_FALSE(br.has_header("Content-Length"));
    CHECK(br.header("Transfer-Encoding") == "chunked");
    CHECK(br.body.size() < page.size() / 5);
    CHECK(unbrotli(br.body) == page);

    auto gz = get(proxy.port(), "/", "gzip;q=1, br;q=0.5");
    CHECK(gz.header("Content-Encoding") == "gzip");
    CHECK(gunzip_prefix(gz.body) == page);

    // curl's own decoders agree (both codings).
    for (const char* enc : {"br", "gzip"}) {
      CAPTURE(enc);
      auto r = run_curl({"--compressed", "-H", std::string("Accept-Encoding: ") + enc, "-D", "-", url});
      REQUIRE(r.exit_code == 0);
      CHECK(lower(r.out).find(std::string("content-encoding: ") + enc) != std::string::npos);
      CHECK(r.out.substr(r.out.find("\r\n\r\n") + 4) == page);
    }
  }

  TEST_CASE(
      "compress: no Accept-Encoding, small bodies, SSE, encoded and no-transform responses go out as they "
      "are") {
    const auto page = html_page();
    SUBCASE("client does not ask: identity with Content-Length, still Vary") {
      ScriptedUpstream up(UpstreamScript{true, 0ms, response_with("text/html", page)});
      ProxyFixture proxy(compressing(up.url()));
      auto r = get(proxy.port(), "/", "");
      CHECK_FALSE(r.has_header("Content-Encoding"));
      CHECK(r.header("Content-Length") == std::to_string(page.size()));
      CHECK(r.header("Vary") == "Accept-Encoding");
      CHECK(r.header("ETag") == "\"v1\"");
      CHECK(r.body == page);
      auto refused = get(proxy.port(), "/", "br;q=0, gzip;q=0");
      CHECK_FALSE(refused.has_header("Content-Encoding"));
    }
    SUBCASE("below min_size") {
      ScriptedUpstream up(UpstreamScript{true, 0ms, response_with("text/html", "<p>tiny</p>")});
      ProxyFixture proxy(compressing(up.url()));
      auto r = get(proxy.port(), "/", "br, gzip");
      CHECK_FALSE(r.has_header("Content-Encoding"));
      CHECK(r.body == "<p>tiny</p>");
    }
    SUBCASE("an event stream is never compressed") {
      auto e = start_echo();
      ProxyFixture proxy(compressing(echo_url(*e)));
      RawClient c(proxy.port());
      c.send("GET /?sse=2&interval=10ms HTTP/1.1\r\nHost: t\r\nAccept-Encoding: br, gzip\r\n\r\n");
      auto r = c.read_response();
      CHECK(r.status == 200);
      CHECK(r.header("Content-Type").value_or("").starts_with("text/event-stream"));
      CHECK_FALSE(r.has_header("Content-Encoding"));
      CHECK(r.body.find("data:") != std::string::npos);
    }
    SUBCASE("an already encoded body passes untouched") {
      ScriptedUpstream up(
          UpstreamScript{true, 0ms, response_with("text/html", page, "Content-Encoding: zstd\r\n")});
      ProxyFixture proxy(compressing(up.url()));
      auto r = get(proxy.port(), "/", "br, gzip");
      CHECK(r.header("Content-Encoding") == "zstd");
      CHECK(r.body == page);
    }
    SUBCASE("Cache-Control: no-transform and images") {
      ScriptedUpstream up(UpstreamScript{
          true, 0ms, response_with("text/html", page, "Cache-Control: public, no-transform\r\n")});
      ProxyFixture proxy(compressing(up.url()));
      CHECK_FALSE(get(proxy.port(), "/", "gzip").has_header("Content-Encoding"));
      ScriptedUpstream png(UpstreamScript{true, 0ms, response_with("image/png", page)});
      ProxyFixture proxy2(compressing(png.url()));
      auto r = get(proxy2.port(), "/", "gzip");
      CHECK_FALSE(r.has_header("Content-Encoding"));
      CHECK_FALSE(r.has_header("Vary"));
    }
  }

  TEST_CASE("compress: a streamed body reaches the client as it comes, not when the upstream finishes") {
    // The upstream sends a first part, pauses 1.5 s, then the rest (until close).
    ScriptedUpstream up(UpstreamScript{
        true, 0ms, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nfirst part\n",
        1500ms});
    ProxyFixture proxy(compressing(up.url()));
    RawClient c(proxy.port());
    auto t0 = steady_clock::now();
    c.send("GET / HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n");
    auto head = c.read_head();
    REQUIRE(head.status == 200);
    CHECK(head.header("Content-Encoding") == "gzip");
    auto chunk = c.read_chunk(1000ms);
    REQUIRE(chunk.has_value());
    CHECK(steady_clock::now() - t0 < 1000ms);
    CHECK(gunzip_prefix(*chunk) == "first part\n");
    // Then the stream ends properly: the last chunk arrives after the upstream closed.
    std::string rest;
    while (auto more = c.read_chunk(3000ms)) {
      if (more->empty()) break;
      rest += *more;
    }
    CHECK(gunzip_prefix(*chunk + rest) == "first part\n");
  }

  TEST_CASE("compress: rproxy serve --compress --static compresses files, keeps HEAD and ranges honest") {
    TempDir dir;
    const auto page = html_page();
    dir.write("index.html", page);
    auto p = spawn_rproxy({"serve", "--listen", "127.0.0.1:0", "--static", dir.path(), "--compress"});
    auto base = "http://127.0.0.1:" + std::to_string(p.port);
    auto r = run_curl({"--compressed", "-D", "-", base + "/index.html"});
    REQUIRE(r.exit_code == 0);
    CHECK(lower(r.out).find("content-encoding: br") != std::string::npos);
    CHECK(r.out.substr(r.out.find("\r\n\r\n") + 4) == page);
    auto head = run_curl({"-I", "-H", "Accept-Encoding: gzip", base + "/index.html"});
    CHECK(lower(head.out).find("content-encoding: gzip") != std::string::npos);
    CHECK(lower(head.out).find("content-length") == std::string::npos);
    // A range request is answered from the identity bytes, uncompressed.
    auto range =
        run_curl({"-H", "Accept-Encoding: gzip", "-H", "Range: bytes=0-14", "-D", "-", base + "/index.html"});
    CHECK(range.out.find("206") != std::string::npos);
    CHECK(lower(range.out).find("content-encoding") == std::string::npos);
    CHECK(range.out.substr(range.out.find("\r\n\r\n") + 4) == page.substr(0, 15));
  }
  TEST_CASE("compress: a keep-alive connection after a compressed response still gets rproxy's own errors") {
    const auto body = html_page();
    ScriptedUpstream up(
        UpstreamScript{true, 0ms, response_with("text/html", body), 0ms, UpstreamScript::End::Close, 10});
    ProxyFixture proxy(compressing(up.url()));
    RawClient c(proxy.port());
    c.send("GET / HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n");
    auto first = c.read_response();
    CHECK(first.header("Content-Encoding") == "gzip");
    // A malformed request next on the same connection: answered 400, not lost to a spent compressor.
    c.send("GET /y HTTP/1.1\r\nHost a\r\n\r\n");
    auto bad = c.read_response();
    CHECK(bad.status == 400);
  }

  TEST_CASE("compress: tiny local bodies are not compressed, min_size applies to them too") {
    TempDir dir;
    dir.write("small.html", "<p>hi</p>");
    auto p = spawn_rproxy({"serve", "--listen", "127.0.0.1:0", "--static", dir.path(), "--compress"});
    auto r = run_curl({"-H", "Accept-Encoding: gzip", "-D", "-",
                       "http://127.0.0.1:" + std::to_string(p.port) + "/small.html"});
    CHECK(lower(r.out).find("content-encoding") == std::string::npos);
    CHECK(r.out.substr(r.out.find("\r\n\r\n") + 4) == "<p>hi</p>");
  }
}
