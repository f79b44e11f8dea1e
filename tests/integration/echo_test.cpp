// Integration tests for the echo upstream: an in-process EchoServer on an ephemeral port, driven with raw
// sockets (so the bytes on the wire are exactly the ones written here) and with httplib::Client.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cli.hpp"
#include "echo_server.hpp"
#include "support/test_bytes.hpp"

namespace {

using rproxy::EchoOptions;
using rproxy::EchoServer;
using rproxy::WebSocketOpcode;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using Json = nlohmann::json;

long long ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - t).count();
}

bool iequal(const std::string& a, const std::string& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

struct RawResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  std::optional<std::string> header(const std::string& name) const {
    for (const auto& [n, v] : headers)
      if (iequal(n, name)) return v;
    return std::nullopt;
  }
  Json json() const { return Json::parse(body); }
};

// RawClient is a blocking TCP client with a read buffer, so responses and frames can be parsed from the
// exact bytes the server sent.
class RawClient {
 public:
  explicit RawClient(std::uint16_t port, const char* host = "127.0.0.1") {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    ::inet_pton(AF_INET, host, &addr.sin_addr);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
      throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  ~RawClient() { ::close(fd_); }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  void send(std::string_view data) {
    while (!data.empty()) {
      auto n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) throw std::runtime_error("send failed");
      data.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  // fill reads more bytes; false on EOF, error or timeout.
  bool fill(milliseconds timeout = milliseconds(10000)) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return false;
    char tmp[65536];
    auto n = ::recv(fd_, tmp, sizeof(tmp), 0);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<std::size_t>(n));
    return true;
  }

  // closed_by_peer tells whether the server closed the connection (EOF) within timeout.
  bool closed_by_peer(milliseconds timeout = milliseconds(5000)) {
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      char tmp[4096];
      auto n = ::recv(fd_, tmp, sizeof(tmp), 0);
      if (n <= 0) return true;
      buf_.append(tmp, static_cast<std::size_t>(n));
    }
    return false;
  }

  std::string take(std::size_t n) {
    while (buf_.size() < n)
      if (!fill()) throw std::runtime_error("connection ended early");
    auto out = buf_.substr(0, n);
    buf_.erase(0, n);
    return out;
  }

  std::string take_line() {
    std::size_t at;
    while ((at = buf_.find("\r\n")) == std::string::npos)
      if (!fill()) throw std::runtime_error("connection ended inside a line");
    auto line = buf_.substr(0, at);
    buf_.erase(0, at + 2);
    return line;
  }

  // read_head reads a status line and header section.
  RawResponse read_head() {
    RawResponse r;
    auto status_line = take_line();
    REQUIRE(status_line.rfind("HTTP/1.1 ", 0) == 0);
    r.status = std::stoi(status_line.substr(9, 3));
    for (auto line = take_line(); !line.empty(); line = take_line()) {
      auto colon = line.find(':');
      auto value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      r.headers.emplace_back(line.substr(0, colon), value);
    }
    return r;
  }

  // read_response reads one whole response; head_request = the request was HEAD (no body follows).
  RawResponse read_response(bool head_request = false) {
    auto r = read_head();
    if (head_request || r.status == 204 || r.status == 304 || r.status == 101) return r;
    auto te = r.header("Transfer-Encoding");
    if (te && iequal(*te, "chunked")) {
      for (;;) {
        auto size = std::stoull(take_line(), nullptr, 16);
        if (size == 0) break;
        r.body += take(size);
        REQUIRE(take_line().empty());
      }
      REQUIRE(take_line().empty());
    } else if (auto cl = r.header("Content-Length")) {
      r.body = take(std::stoull(*cl));
    } else {
      while (fill()) {
      }
      r.body = std::move(buf_);
      buf_.clear();
    }
    return r;
  }

  // read_frame decodes one WebSocket frame sent by the server.
  rproxy::WebSocketFrame read_frame() {
    rproxy::WebSocketFrame frame;
    for (;;) {
      std::size_t consumed = 0;
      auto status = rproxy::decode_websocket_frame(buf_, frame, consumed);
      REQUIRE(status != rproxy::FrameDecodeStatus::Invalid);
      if (status == rproxy::FrameDecodeStatus::Complete) {
        buf_.erase(0, consumed);
        return frame;
      }
      if (!fill()) throw std::runtime_error("connection ended inside a frame");
    }
  }

  std::string& buffer() { return buf_; }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  std::string buf_;
};

std::unique_ptr<EchoServer> start_echo(EchoOptions options = {}) {
  auto server = std::make_unique<EchoServer>(std::move(options));
  server->start();
  return server;
}

std::string get(const std::string& target, const std::string& extra_headers = "") {
  return "GET " + target + " HTTP/1.1\r\nHost: echo.test\r\n" + extra_headers + "\r\n";
}

using rproxy::test::pseudo_random_bytes;

void check_payload(const std::string& body, std::size_t size) {
  REQUIRE(body.size() == size);
  for (std::size_t i = 0; i < body.size(); ++i)
    if (body[i] != rproxy::echo_payload_byte(i)) FAIL("payload differs at offset " << i);
}

long peak_rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

const std::string kEmptySha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

}  // namespace

TEST_SUITE("echo") {
  TEST_CASE("echo: headers are reported in wire order") {
    auto server = start_echo({.name = "alpha"});
    RawClient c(server->port());
    c.send(
        "GET /a/b%20c?x=1&y=%41+z HTTP/1.1\r\n"
        "Host: echo.test\r\n"
        "X-Zeta: a%0D%0AInjected: 1\r\n"
        "x-alpha:   spaced value  \r\n"
        "X-Dup: one\r\n"
        "Accept-Encoding: gzip, br\r\n"
        "X-Dup: two\r\n"
        "REMOTE_ADDR: 6.6.6.6\r\n"
        "\r\n");
    auto r = c.read_response();
    CHECK(r.status == 200);
    CHECK(r.header("Content-Type") == "application/json");
    CHECK_FALSE(r.header("Content-Encoding"));  // Accept-Encoding must not trigger compression
    CHECK(r.header("X-Echo-Name") == "alpha");
    auto doc = r.json();
    CHECK(doc["name"] == "alpha");
    CHECK(doc["method"] == "GET");
    CHECK(doc["target"] == "/a/b%20c?x=1&y=%41+z");
    CHECK(doc["path"] == "/a/b%20c");
    CHECK(doc["query"] == "x=1&y=%41+z");
    CHECK(doc["version"] == "HTTP/1.1");
    CHECK(doc["body_size"] == 0);
    CHECK(doc["body_sha256"] == kEmptySha256);
    CHECK(doc["remote_addr"].get<std::string>().rfind("127.0.0.1:", 0) == 0);
    Json expected = Json::array({
        {"Host", "echo.test"},
        {"X-Zeta", "a%0D%0AInjected: 1"},
        {"x-alpha", "spaced value"},
        {"X-Dup", "one"},
        {"Accept-Encoding", "gzip, br"},
        {"X-Dup", "two"},
        {"REMOTE_ADDR", "6.6.6.6"},  // sent by the client, so reported; httplib's own pseudo headers are not
    });
    CHECK(doc["headers"] == expected);
  }

  TEST_CASE("echo: body size and digest for a content-length upload") {
    auto server = start_echo();
    httplib::Client cli("127.0.0.1", server->port());
    cli.set_tcp_nodelay(true);
    cli.set_keep_alive(true);
    auto body = pseudo_random_bytes(200000, 7);
    // Content-Encoding and multipart would make httplib decompress or try to parse the body; the echo must
    // count the raw bytes regardless.
    httplib::Headers headers{{"Content-Encoding", "gzip"}};
    auto res = cli.Post("/upload", headers, body, "multipart/form-data; boundary=xyz");
    REQUIRE(res);
    CHECK(res->status == 200);
    auto doc = Json::parse(res->body);
    CHECK(doc["method"] == "POST");
    CHECK(doc["body_size"] == body.size());
    CHECK(doc["body_sha256"] == rproxy::sha256_hex(body));

    for (const char* method : {"PUT", "PATCH", "DELETE", "GET", "OPTIONS", "PROPFIND"}) {
      CAPTURE(method);
      RawClient c(server->port());
      c.send(std::string(method) + " /m HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world" +
             get("/after"));
      auto first = c.read_response().json();
      CHECK(first["method"] == method);
      CHECK(first["body_size"] == 11);
      CHECK(first["body_sha256"] == rproxy::sha256_hex("hello world"));
      // The body was consumed, so the next request on the connection parses cleanly.
      CHECK(c.read_response().json()["target"] == "/after");
    }
  }

  TEST_CASE("echo: body size and digest for a chunked upload") {
    auto server = start_echo();
    for (const char* method : {"POST", "PUT", "DELETE", "GET"}) {
      CAPTURE(method);
      RawClient c(server->port());
      c.send(std::string(method) +
             " /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n" +
             get("/after"));
      auto r = c.read_response();
      CHECK(r.status == 200);
      auto doc = r.json();
      CHECK(doc["body_size"] == 11);
      CHECK(doc["body_sha256"] == rproxy::sha256_hex("hello world"));
      CHECK(c.read_response().json()["target"] == "/after");
    }

    // A larger chunked upload through httplib's client (content provider without length = chunked).
    httplib::Client cli("127.0.0.1", server->port());
    auto body = pseudo_random_bytes(300000, 11);
    auto res = cli.Post(
        "/big",
        [&](std::size_t offset, httplib::DataSink& sink) {
          auto n = std::min<std::size_t>(7000, body.size() - offset);
          sink.write(body.data() + offset, n);
          if (offset + n == body.size()) sink.done();
          return true;
        },
        "application/octet-stream");
    REQUIRE(res);
    auto doc = Json::parse(res->body);
    CHECK(doc["body_size"] == body.size());
    CHECK(doc["body_sha256"] == rproxy::sha256_hex(body));
    bool chunked = false;
    for (const auto& h : doc["headers"])
      chunked = chunked || (iequal(h[0], "Transfer-Encoding") && h[1] == "chunked");
    CHECK(chunked);
  }

  TEST_CASE("echo: bad framing is rejected and the connection closed") {
    auto server = start_echo();
    {
      RawClient c(server->port());
      c.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4x\r\n\r\nabcd");
      CHECK(c.read_response().status == 400);
      CHECK(c.closed_by_peer());
    }
    {
      RawClient c(server->port());
      c.send("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n");
      CHECK(c.read_response().status == 501);
      CHECK(c.closed_by_peer());
    }
    {
      RawClient c(server->port());
      c.send("GET / HTTP/1.1\r\nHost: x\r\n folded: value\r\n\r\n");
      CHECK(c.read_response().status == 400);
    }
  }

  TEST_CASE("echo: status and delay overrides") {
    auto server = start_echo();
    httplib::Client cli("127.0.0.1", server->port());
    cli.set_url_encode(false);
    auto start = Clock::now();
    auto res = cli.Get("/x?status=503&delay=250ms&header=X-Test:one&header=X-Other:two%20words");
    auto elapsed = ms_since(start);
    REQUIRE(res);
    CHECK(res->status == 503);
    CHECK(elapsed >= 250);
    CHECK(res->get_header_value("X-Test") == "one");
    CHECK(res->get_header_value("X-Other") == "two words");
    CHECK(Json::parse(res->body)["target"] ==
          "/x?status=503&delay=250ms&header=X-Test:one&header=X-Other:two%20words");

    res = cli.Get("/?status=201");
    REQUIRE(res);
    CHECK(res->status == 201);
    res = cli.Get("/?delay=0");
    REQUIRE(res);
    CHECK(res->status == 200);

    res = cli.Get("/?status=abc");
    REQUIRE(res);
    CHECK(res->status == 400);
    CHECK(Json::parse(res->body)["error"].get<std::string>().find("status") != std::string::npos);
    res = cli.Get("/?delay=soon");
    REQUIRE(res);
    CHECK(res->status == 400);

    RawClient c(server->port());
    c.send(get("/?close=1"));
    auto r = c.read_response();
    CHECK(r.status == 200);
    CHECK(r.header("Connection") == "close");
    CHECK(c.closed_by_peer());

    RawClient k(server->port());
    k.send(get("/", "Connection: Close\r\n"));  // httplib alone only honours lowercase "close"
    CHECK(k.read_response().header("Connection") == "close");
    CHECK(k.closed_by_peer());
  }

  TEST_CASE("echo: size override streams a sized payload") {
    auto server = start_echo();
    RawClient c(server->port());
    c.send(get("/?size=1000000"));
    auto r = c.read_response();
    CHECK(r.status == 200);
    CHECK(r.header("Content-Length") == "1000000");
    CHECK(r.header("Content-Type") == "application/octet-stream");
    CHECK_FALSE(r.header("Transfer-Encoding"));
    check_payload(r.body, 1000000);

    c.send(get("/?size=300000&chunked=1", "Accept-Encoding: gzip\r\n"));
    r = c.read_response();
    CHECK(r.header("Transfer-Encoding") == "chunked");
    CHECK_FALSE(r.header("Content-Length"));
    CHECK_FALSE(r.header("Content-Encoding"));
    check_payload(r.body, 300000);

    c.send(get("/?size=1KiB", "Range: bytes=0-9\r\n"));  // ranges are ignored: the echo sends all
    r = c.read_response();
    CHECK(r.status == 200);
    check_payload(r.body, 1024);

    c.send(get("/?size=0") + get("/?size=0&chunked=1"));
    CHECK(c.read_response().body.empty());
    CHECK(c.read_response().body.empty());

    c.send("HEAD /?size=5000 HTTP/1.1\r\nHost: x\r\n\r\n");
    r = c.read_response(true);
    CHECK(r.header("Content-Length") == "5000");
    c.send(get("/still-alive"));
    CHECK(c.read_response().json()["target"] == "/still-alive");
  }

  TEST_CASE("echo: sse events arrive spaced") {
    auto server = start_echo({.name = "sse-echo"});
    RawClient c(server->port());
    auto start = Clock::now();
    c.send(get("/events?sse=3&interval=300ms"));
    auto head = c.read_head();
    CHECK(head.status == 200);
    CHECK(head.header("Content-Type") == "text/event-stream");
    CHECK(head.header("Cache-Control") == "no-cache");
    CHECK(head.header("Transfer-Encoding") == "chunked");

    // Decode chunks as they arrive and note when each event shows up.
    std::vector<long long> arrival;
    std::vector<Json> events;
    std::string stream;
    for (;;) {
      auto size = std::stoull(c.take_line(), nullptr, 16);
      if (size == 0) {
        REQUIRE(c.take_line().empty());  // end of the chunked body
        break;
      }
      stream += c.take(size);
      REQUIRE(c.take_line().empty());
      std::size_t end;
      while ((end = stream.find("\n\n")) != std::string::npos) {
        auto event = stream.substr(0, end);
        stream.erase(0, end + 2);
        arrival.push_back(ms_since(start));
        auto data_at = event.find("data: ");
        REQUIRE(data_at != std::string::npos);
        CHECK(event.rfind("id: " + std::to_string(events.size() + 1) + "\n", 0) == 0);
        events.push_back(Json::parse(event.substr(data_at + 6)));
      }
    }
    REQUIRE(events.size() == 3);
    for (int i = 0; i < 3; ++i) {
      CHECK(events[i]["name"] == "sse-echo");
      CHECK(events[i]["seq"] == i + 1);
    }
    CHECK(events[2]["t_ms"].get<long long>() >= 600);
    CHECK(arrival[0] < 250);                // the first event is not held back until the end
    CHECK(arrival[2] - arrival[0] >= 550);  // and the others follow at the interval
    CHECK(arrival[1] - arrival[0] >= 250);
    CHECK(stream.empty());
    c.send(get("/after-sse"));
    CHECK(c.read_response().json()["target"] == "/after-sse");
  }

  TEST_CASE("echo: websocket frame codec round trips") {
    CHECK(rproxy::websocket_accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    const rproxy::WebSocketMask mask{0x12, 0x34, 0x56, 0x78};
    for (std::size_t size : {std::size_t{0}, std::size_t{125}, std::size_t{126}, std::size_t{65535},
                             std::size_t{65536}, std::size_t{70000}}) {
      CAPTURE(size);
      auto payload = pseudo_random_bytes(size, static_cast<std::uint32_t>(size));
      auto wire = rproxy::websocket_client_frame(WebSocketOpcode::Binary, payload, mask);
      CHECK(wire.size() == payload.size() + 2 + (size < 126 ? 0 : size <= 65535 ? 2 : 8) + 4);
      rproxy::WebSocketFrame frame;
      std::size_t consumed = 0;
      CHECK(rproxy::decode_websocket_frame(std::string_view(wire).substr(0, wire.size() - 1), frame,
                                           consumed) == rproxy::FrameDecodeStatus::Incomplete);
      REQUIRE(rproxy::decode_websocket_frame(wire, frame, consumed) == rproxy::FrameDecodeStatus::Complete);
      CHECK(consumed == wire.size());
      CHECK(frame.header.masked);
      CHECK(frame.header.opcode == WebSocketOpcode::Binary);
      CHECK(frame.payload == payload);
      auto server_wire = rproxy::websocket_server_frame(WebSocketOpcode::Text, payload);
      REQUIRE(rproxy::decode_websocket_frame(server_wire, frame, consumed) ==
              rproxy::FrameDecodeStatus::Complete);
      CHECK_FALSE(frame.header.masked);
      CHECK(frame.payload == payload);
    }
    rproxy::WebSocketFrameHeader h;
    CHECK(rproxy::decode_websocket_header(std::string_view("\x83\x00", 2), h) ==
          rproxy::FrameDecodeStatus::Invalid);  // reserved opcode 3
    CHECK(rproxy::decode_websocket_header(std::string_view("\x09\x00", 2), h) ==
          rproxy::FrameDecodeStatus::Invalid);  // fragmented ping
  }

  TEST_CASE("echo: websocket handshake and echo") {
    auto server = start_echo({.name = "ws"});
    RawClient c(server->port());
    c.send(get("/ws",
               "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"));
    auto head = c.read_head();
    REQUIRE(head.status == 101);
    CHECK(head.header("Upgrade") == "websocket");
    CHECK(head.header("Connection") == "Upgrade");
    CHECK(head.header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

    const rproxy::WebSocketMask mask{0xa1, 0xb2, 0xc3, 0xd4};
    c.send(rproxy::websocket_client_frame(WebSocketOpcode::Text, "hello", mask));
    auto frame = c.read_frame();
    CHECK(frame.header.opcode == WebSocketOpcode::Text);
    CHECK(frame.header.fin);
    CHECK_FALSE(frame.header.masked);
    CHECK(frame.payload == "hello");

    for (std::size_t size : {std::size_t{300}, std::size_t{70 * 1024}}) {
      CAPTURE(size);
      auto payload = pseudo_random_bytes(size, 99);
      auto wire = rproxy::websocket_client_frame(WebSocketOpcode::Binary, payload, mask);
      // Split the frame across writes: the server must reassemble it.
      c.send(std::string_view(wire).substr(0, 3));
      std::this_thread::sleep_for(milliseconds(20));
      c.send(std::string_view(wire).substr(3));
      frame = c.read_frame();
      CHECK(frame.header.opcode == WebSocketOpcode::Binary);
      CHECK(frame.header.header_size == (size > 65535 ? 10u : 4u));  // 64-bit and 16-bit length forms
      CHECK(frame.payload == payload);
    }

    c.send(rproxy::websocket_client_frame(WebSocketOpcode::Ping, "are you there", mask));
    frame = c.read_frame();
    CHECK(frame.header.opcode == WebSocketOpcode::Pong);
    CHECK(frame.payload == "are you there");

    c.send(rproxy::websocket_client_frame(WebSocketOpcode::Close,
                                          std::string("\x03\xe8"
                                                      "bye",
                                                      5),
                                          mask));
    frame = c.read_frame();
    CHECK(frame.header.opcode == WebSocketOpcode::Close);
    CHECK(frame.payload == std::string("\x03\xe8", 2));
    CHECK(c.closed_by_peer());

    RawClient bad(server->port());
    bad.send(
        get("/ws",
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 8\r\n"));
    auto r = bad.read_response();
    CHECK(r.status == 426);
    CHECK(r.header("Sec-WebSocket-Version") == "13");
  }

  TEST_CASE("echo: idle keep-alive connections do not starve others") {
    auto server = start_echo();
    std::vector<std::unique_ptr<RawClient>> idle;
    for (int i = 0; i < 20; ++i) {
      idle.push_back(std::make_unique<RawClient>(server->port()));
      idle.back()->send(get("/idle/" + std::to_string(i)));
      CHECK(idle.back()->read_response().status == 200);
    }
    auto start = Clock::now();
    RawClient fresh(server->port());
    fresh.send(get("/fresh"));
    CHECK(fresh.read_response().json()["target"] == "/fresh");
    CHECK(ms_since(start) < 500);
    // The idle connections are still usable.
    idle.front()->send(get("/again"));
    CHECK(idle.front()->read_response().json()["target"] == "/again");
  }

  TEST_CASE("echo: pipelined requests are answered in order") {
    auto server = start_echo();
    RawClient c(server->port());
    c.send(get("/first") + "POST /second HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" + "\r\n" +
           get("/third?delay=50ms") + get("/fourth"));
    CHECK(c.read_response().json()["target"] == "/first");
    auto second = c.read_response().json();
    CHECK(second["target"] == "/second");
    CHECK(second["body_size"] == 3);
    CHECK(c.read_response().json()["target"] == "/third?delay=50ms");
    CHECK(c.read_response().json()["target"] == "/fourth");
  }

  TEST_CASE("echo: defaults come from EchoOptions") {
    auto server = start_echo({.delay = milliseconds(100), .status = 202, .body_size = 10});
    RawClient c(server->port());
    auto start = Clock::now();
    c.send(get("/"));
    auto r = c.read_response();
    CHECK(ms_since(start) >= 100);
    CHECK(r.status == 202);
    check_payload(r.body, 10);
    c.send(get("/?size=3&status=200&delay=0"));
    r = c.read_response();
    CHECK(r.status == 200);
    check_payload(r.body, 3);

    auto sse = start_echo({.sse_events = 2, .sse_interval = milliseconds(10)});
    httplib::Client cli("127.0.0.1", sse->port());
    auto res = cli.Get("/");
    REQUIRE(res);
    CHECK(res->get_header_value("Content-Type") == "text/event-stream");
    CHECK(res->body.find("id: 2\n") != std::string::npos);
  }

  TEST_CASE("echo: stop is prompt with open connections") {
    auto server = start_echo();
    RawClient idle(server->port());
    idle.send(get("/"));
    CHECK(idle.read_response().status == 200);
    RawClient slow(server->port());
    slow.send(get("/?delay=20s"));
    RawClient streaming(server->port());
    streaming.send(get("/?sse=100&interval=10s"));
    CHECK(streaming.read_head().status == 200);
    std::this_thread::sleep_for(milliseconds(50));
    auto start = Clock::now();
    server->stop();
    CHECK(ms_since(start) < 1000);
    server->stop();  // idempotent
    CHECK(idle.closed_by_peer(milliseconds(1000)));
  }

  TEST_CASE("echo: a second server cannot share the port") {
    auto first = start_echo();
    EchoServer second({.port = first->port()});
    CHECK_THROWS_AS(second.start(), std::runtime_error);
  }

  TEST_CASE("echo: large bodies are streamed in both directions") {
    auto server = start_echo();
    const std::uint64_t size = 256ull << 20;
    auto before = peak_rss_kib();

    RawClient up(server->port());
    up.send("PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(size) + "\r\n\r\n");
    std::string block(1 << 20, '\0');
    rproxy::Sha256 sha;
    for (std::size_t i = 0; i < block.size(); ++i) block[i] = static_cast<char>(i * 7);
    for (std::uint64_t sent = 0; sent < size; sent += block.size()) {
      up.send(block);
      sha.update(block);
    }
    auto doc = up.read_response().json();
    CHECK(doc["body_size"] == size);
    CHECK(doc["body_sha256"] == sha.hex_digest());

    RawClient down(server->port());
    down.send(get("/?size=256MiB"));
    auto head = down.read_head();
    CHECK(head.header("Content-Length") == std::to_string(size));
    std::uint64_t received = down.buffer().size();
    bool ok = true;
    for (std::size_t i = 0; i < down.buffer().size(); ++i)
      ok = ok && down.buffer()[i] == rproxy::echo_payload_byte(i);
    down.buffer().clear();
    while (received < size && down.fill()) {
      auto& b = down.buffer();
      for (std::size_t i = 0; i < b.size() && ok; i += 4093)
        ok = b[i] == rproxy::echo_payload_byte(received + i);
      received += b.size();
      b.clear();
    }
    CHECK(ok);
    CHECK(received == size);
    auto growth_mib = (peak_rss_kib() - before) / 1024;
    CAPTURE(growth_mib);
    CHECK(growth_mib < 32);  // 512 MiB moved; nothing may buffer a body
  }

  TEST_CASE("echo: cli rejects bad flag values with exit code 2") {
    for (const auto& [flag, value] :
         std::vector<std::pair<std::string, std::string>>{{"--status", "abc"},
                                                          {"--status", "99"},
                                                          {"--delay", "soon"},
                                                          {"--body-size", "lots"},
                                                          {"--sse", "-1"},
                                                          {"--sse-interval", "x"},
                                                          {"--listen", "nowhere"},
                                                          {"--name", "two\nlines"}}) {
      CAPTURE(flag);
      CLI::App app("rproxy");
      rproxy::cli::CliState state;
      rproxy::cli::setup_echo(app, state);
      // "--sse=-1": as a separate argument "-1" would look like a flag to CLI11.
      std::vector<std::string> args{"rproxy", "echo", flag + "=" + value};
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      std::ostringstream captured;
      auto* old = std::cerr.rdbuf(captured.rdbuf());
      try {
        app.parse(static_cast<int>(argv.size()), argv.data());
      } catch (const CLI::ParseError& e) {
        std::cerr.rdbuf(old);
        FAIL("unexpected parse error " << std::string(e.what()));
      }
      std::cerr.rdbuf(old);
      CHECK(state.exit_code == rproxy::cli::kExitUsage);
      const std::string message = captured.str();
      CHECK(message.find("rproxy echo: " + flag + ":") == 0);
      CHECK(std::count(message.begin(), message.end(), '\n') == 1);
    }
  }

  TEST_CASE("echo: cli serves until SIGTERM") {
    // Find a free port, then let the subcommand bind it (the tiny race is acceptable in a test).
    std::uint16_t port = 0;
    {
      EchoServer probe;
      probe.start();
      port = probe.port();
    }
    CLI::App app("rproxy");
    rproxy::cli::CliState state;
    rproxy::cli::setup_echo(app, state);
    std::vector<std::string> args{"rproxy", "echo", "--listen", "127.0.0.1:" + std::to_string(port),
                                  "--name", "cli"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    std::ostringstream captured;
    auto* old = std::cerr.rdbuf(captured.rdbuf());
    std::thread runner([&] { app.parse(static_cast<int>(argv.size()), argv.data()); });

    httplib::Client cli("127.0.0.1", port);
    std::optional<std::string> body;
    for (int i = 0; i < 200 && !body; ++i) {
      if (auto res = cli.Get("/hello")) {
        body = res->body;
      } else {
        std::this_thread::sleep_for(milliseconds(10));
      }
    }
    REQUIRE(body);
    CHECK(Json::parse(*body)["name"] == "cli");
    // Thread-directed: SIGTERM is blocked on the runner thread, so sigwait there receives it.
    pthread_kill(runner.native_handle(), SIGTERM);
    runner.join();
    std::cerr.rdbuf(old);
    CHECK(state.exit_code == rproxy::cli::kExitOk);
    CHECK(captured.str() ==
          "rproxy echo: listening on http://127.0.0.1:" + std::to_string(port) + " (name cli)\n");
  }
}
