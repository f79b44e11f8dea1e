// Integration tests: streaming through rproxy — server-sent events, chunked bodies, WebSocket tunnels, and
// gigabyte bodies in both directions with bounded memory (the last two against a subprocess rproxy, so its
// own VmHWM can be measured).
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "support/echo_json.hpp"
#include "support/test_bytes.hpp"
#include "support/proxy_fixture.hpp"
#include "support/raw_client.hpp"
#include "support/subprocess.hpp"

using namespace rproxy;
using namespace rproxy::test;

namespace {

using rproxy::test::pseudo_random_bytes;

// PayloadChecker verifies a stream against echo_payload_byte() using its documented 64-byte cycle.
class PayloadChecker {
 public:
  PayloadChecker() : ref_(kBlock + 64, '\0') {
    for (std::size_t i = 0; i < ref_.size(); ++i) ref_[i] = echo_payload_byte(i);
    // The fast path relies on the period; make sure it holds.
    for (std::uint64_t i = 0; i < 256; ++i) REQUIRE(echo_payload_byte(i) == echo_payload_byte(i + 64));
  }
  // feed checks data at the current offset; false (and remembers the offset) on the first mismatch.
  bool feed(std::string_view data) {
    while (!data.empty()) {
      auto n = std::min<std::size_t>(data.size(), kBlock);
      if (bad_ < 0 && std::memcmp(data.data(), ref_.data() + offset_ % 64, n) != 0)
        bad_ = static_cast<long long>(offset_);
      offset_ += n;
      data.remove_prefix(n);
    }
    return bad_ < 0;
  }
  std::uint64_t offset() const { return offset_; }
  long long first_bad_block() const { return bad_; }

 private:
  static constexpr std::size_t kBlock = 1 << 16;
  std::string ref_;
  std::uint64_t offset_ = 0;
  long long bad_ = -1;
};

}  // namespace

TEST_SUITE("serve") {
  TEST_CASE("serve: server-sent events are streamed as they are produced") {
    auto e = start_echo("sse");
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    RawClient c(proxy.port());
    auto start = Clock::now();
    c.send(get_request("/events?sse=5&interval=300ms", "proxy.test", "Accept: text/event-stream\r\n"));
    auto head = c.read_head();
    REQUIRE(head.status == 200);
    CHECK(head.header("Content-Type") == "text/event-stream");
    REQUIRE(head.header("Transfer-Encoding") == "chunked");

    std::vector<long long> arrival;
    std::vector<nlohmann::json> events;
    std::string stream;
    for (;;) {
      auto chunk = c.read_chunk();
      REQUIRE(chunk.has_value());
      if (chunk->empty()) break;
      stream += *chunk;
      std::size_t end;
      while ((end = stream.find("\n\n")) != std::string::npos) {
        auto event = stream.substr(0, end);
        stream.erase(0, end + 2);
        arrival.push_back(ms_since(start));
        auto data_at = event.find("data: ");
        REQUIRE(data_at != std::string::npos);
        events.push_back(nlohmann::json::parse(event.substr(data_at + 6)));
      }
    }
    REQUIRE(events.size() == 5);
    for (int i = 0; i < 5; ++i) CHECK(events[static_cast<std::size_t>(i)]["seq"] == i + 1);
    auto last_sent = events[4]["t_ms"].get<long long>();  // when the echo produced the last event
    CAPTURE(arrival[0]);
    CAPTURE(last_sent);
    CHECK(last_sent >= 1150);
    // The first event reached us long before the last one even existed: nothing buffered the stream.
    CHECK(arrival[0] + 600 < last_sent);
    CHECK(arrival[4] - arrival[0] >= 900);
    // The connection is reusable after the stream.
    c.send(get_request("/after"));
    CHECK(c.read_response().json()["target"] == "/after");
  }

  TEST_CASE("serve: chunked upstream response arrives intact") {
    auto e = start_echo();
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    RawClient c(proxy.port());
    c.send(get_request("/?size=1MiB&chunked=1"));
    auto r = c.read_response({.timeout = milliseconds(10000)});
    REQUIRE(r.status == 200);
    CHECK(r.complete);
    CHECK(r.chunked);
    CHECK_FALSE(r.has_header("Content-Length"));
    CHECK(r.body.size() == (1u << 20));
    CHECK(first_payload_mismatch(r.body) == -1);
  }

  TEST_CASE("serve: websocket upgrade is tunnelled to the upstream") {
    auto e = start_echo("ws");
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    RawClient c(proxy.port());
    c.send(websocket_upgrade("/ws"));
    auto head = c.read_head();
    REQUIRE(head.status == 101);
    CHECK(iequal(head.header("Upgrade").value_or(""), "websocket"));
    CHECK(iequal(head.header("Connection").value_or(""), "upgrade"));
    CHECK(head.header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

    const WebSocketMask mask{0x11, 0x22, 0x33, 0x44};
    c.send(websocket_client_frame(WebSocketOpcode::Text, "hello through rproxy", mask));
    auto frame = c.read_frame();
    REQUIRE(frame.has_value());
    CHECK(frame->header.opcode == WebSocketOpcode::Text);
    CHECK(frame->payload == "hello through rproxy");

    auto big = pseudo_random_bytes(100 * 1000, 5);
    c.send(websocket_client_frame(WebSocketOpcode::Binary, big, mask));
    frame = c.read_frame();
    REQUIRE(frame.has_value());
    CHECK(frame->header.opcode == WebSocketOpcode::Binary);
    CHECK(frame->payload.size() == big.size());
    CHECK(frame->payload == big);

    c.send(websocket_client_frame(WebSocketOpcode::Close, std::string("\x03\xe8", 2), mask));
    frame = c.read_frame();
    REQUIRE(frame.has_value());
    CHECK(frame->header.opcode == WebSocketOpcode::Close);
    CHECK(c.wait_closed());
  }

  TEST_CASE("serve: websocket frames sent right behind the upgrade request are not lost") {
    auto e = start_echo("ws");
    ProxyFixture proxy(make_scenario({make_route({echo_url(*e)})}));
    const WebSocketMask mask{0x01, 0x02, 0x03, 0x04};
    RawClient c(proxy.port());
    c.send(websocket_upgrade("/ws") + websocket_client_frame(WebSocketOpcode::Text, "eager", mask));
    auto head = c.read_head();
    REQUIRE(head.status == 101);
    auto frame = c.read_frame();
    REQUIRE(frame.has_value());
    CHECK(frame->payload == "eager");
    c.send(websocket_client_frame(WebSocketOpcode::Close, std::string("\x03\xe8", 2), mask));
    frame = c.read_frame();
    REQUIRE(frame.has_value());
    CHECK(frame->header.opcode == WebSocketOpcode::Close);

    // An upgrade the upstream declines is an ordinary response; the client connection stays usable.
    RawClient d(proxy.port());
    auto declined = websocket_upgrade("/ws");
    declined.replace(declined.find("Version: 13"), 11, "Version: 8");
    d.send(declined);
    auto r = d.read_response();
    CHECK(r.status == 426);
    d.send(get_request("/plain"));
    auto plain = d.read_response();
    CHECK(plain.status == 200);
  }
}

TEST_SUITE("slow") {
  TEST_CASE("serve: 1 GiB download streams with bounded memory") {
    auto e = start_echo();
    auto rp = spawn_rproxy({"serve", "--listen", "127.0.0.1:0", "--to", echo_url(*e), "--workers", "2"});
    RawClient c(rp.port);
    // Warm up: buffers, threads and the pool exist before the baseline is taken.
    c.send(get_request("/?size=8MiB"));
    auto warm = c.read_response({.timeout = milliseconds(10000)});
    REQUIRE(warm.status == 200);
    REQUIRE(warm.body.size() == (8u << 20));
    auto before = rp.proc->memory();
    REQUIRE(before.vm_hwm_kib > 0);

    const std::uint64_t size = 1ull << 30;
    auto start = Clock::now();
    c.send(get_request("/?size=1GiB"));
    auto head = c.read_head();
    REQUIRE(head.status == 200);
    REQUIRE(head.header("Content-Length") == std::to_string(size));
    PayloadChecker check;
    while (check.offset() < size) {
      auto& buf = c.buffer();
      if (!buf.empty()) {
        auto n = std::min<std::uint64_t>(buf.size(), size - check.offset());
        check.feed(std::string_view(buf).substr(0, static_cast<std::size_t>(n)));
        buf.erase(0, static_cast<std::size_t>(n));
      }
      if (check.offset() < size && !c.fill(milliseconds(10000))) break;
    }
    auto after = rp.proc->memory();
    MESSAGE("1 GiB download in " << ms_since(start) << " ms; rproxy VmHWM " << before.vm_hwm_kib << " -> "
                                 << after.vm_hwm_kib << " KiB, VmRSS " << after.vm_rss_kib << " KiB");
    CHECK(check.offset() == size);
    CHECK(check.first_bad_block() == -1);
    CHECK((after.vm_hwm_kib - before.vm_hwm_kib) < 64 * 1024);
    // Still a healthy keep-alive connection.
    c.send(get_request("/done"));
    CHECK(c.read_response().json()["target"] == "/done");
  }

  TEST_CASE("serve: 1 GiB upload streams with bounded memory") {
    auto e = start_echo();
    auto rp = spawn_rproxy({"serve", "--listen", "127.0.0.1:0", "--to", echo_url(*e), "--workers", "2"});
    RawClient c(rp.port);
    std::string block(1 << 20, '\0');
    for (std::size_t i = 0; i < block.size(); ++i) block[i] = static_cast<char>((i * 131) ^ (i >> 9));
    // Warm up with an 8 MiB upload.
    c.send("POST /warm HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: " + std::to_string(8 * block.size()) + "\r\n\r\n");
    for (int i = 0; i < 8; ++i) c.send(block);
    auto warm = c.read_response({.timeout = milliseconds(10000)});
    REQUIRE(warm.status == 200);
    REQUIRE(warm.json()["body_size"] == 8 * block.size());
    auto before = rp.proc->memory();
    REQUIRE(before.vm_hwm_kib > 0);

    const std::uint64_t size = 1ull << 30;
    auto start = Clock::now();
    c.send("POST /big HTTP/1.1\r\nHost: proxy.test\r\nContent-Type: application/octet-stream\r\nContent-Length: " +
           std::to_string(size) + "\r\n\r\n");
    Sha256 sha;
    for (std::uint64_t sent = 0; sent < size; sent += block.size()) {
      // Vary the content per block so a duplicated or dropped block changes the digest.
      block[0] = static_cast<char>(sent >> 20);
      block[1] = static_cast<char>(sent >> 28);
      c.send(block);
      sha.update(block);
    }
    auto r = c.read_response({.timeout = milliseconds(30000)});
    auto after = rp.proc->memory();
    MESSAGE("1 GiB upload in " << ms_since(start) << " ms; rproxy VmHWM " << before.vm_hwm_kib << " -> "
                               << after.vm_hwm_kib << " KiB, VmRSS " << after.vm_rss_kib << " KiB");
    REQUIRE(r.status == 200);
    auto doc = r.json();
    CHECK(doc["body_size"] == size);
    CHECK(doc["body_sha256"] == sha.hex_digest());
    CHECK((after.vm_hwm_kib - before.vm_hwm_kib) < 64 * 1024);
  }
}
