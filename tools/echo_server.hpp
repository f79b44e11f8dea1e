// EchoServer: the built-in demo and test upstream behind `rproxy echo`. It answers every request with a JSON
// description of what arrived on the wire (header order, spelling and raw values included), and per-request
// query parameters turn it into whatever upstream a test needs: slow, failing, large, chunked, SSE or
// WebSocket. Tests run it in-process on an ephemeral port.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/sha256.hpp"


namespace rproxy {

// EchoOptions are the server-wide defaults; query parameters override them per request.
struct EchoOptions {
  std::string host = "127.0.0.1";  // a literal address ("::1", not "[::1]")
  std::uint16_t port = 0;          // 0 = ephemeral, read it back with EchoServer::port()
  std::string name = "echo";       // reported in every JSON body, SSE event and X-Echo-Name
  std::chrono::milliseconds delay{0};
  int status = 200;
  std::optional<std::uint64_t> body_size{};  // set = answer with this many payload bytes instead of JSON
  int sse_events = 0;                        // > 0 = answer with an event stream
  std::chrono::milliseconds sse_interval{1000};
};

// EchoServer owns a listening socket and its threads. Every public method may be called from any thread.
//
// The JSON answer: {"name", "method", "target", "path", "query", "version", "headers": [[name, value], ...],
// "body_size", "body_sha256", "remote_addr"}. Everything comes from the raw request head: target, path and
// query are never percent-decoded, headers keep wire order, duplicates and spelling. Every response also
// carries X-Echo-Name. SSE events are numbered 1..N; event i is due (i-1) intervals after the headers.
//
// Per-request query parameters:
//   status=503            response status (200-599)
//   delay=250ms           wait before answering (rproxy::parse_duration syntax: "2s", "1m", "0")
//   size=N                N bytes of echo_payload_byte() payload (rproxy::parse_size syntax: "10MiB"),
//                         application/octet-stream with Content-Length
//   chunked=1             with size: Transfer-Encoding: chunked instead of Content-Length
//   sse=N&interval=100ms  text/event-stream with N events, one per interval
//   header=Name:Value     add a response header (repeatable)
//   close=1               answer with Connection: close and close the connection
// A request with `Upgrade: websocket` gets a WebSocket echo session instead.
class EchoServer {
 public:
  explicit EchoServer(EchoOptions options = {});
  ~EchoServer();  // calls stop()
  EchoServer(const EchoServer&) = delete;
  EchoServer& operator=(const EchoServer&) = delete;

  // start binds, starts the accept loop and returns once it accepts connections.
  // Throws std::runtime_error (naming the address) when the address cannot be bound.
  void start();
  // port is the bound port (the ephemeral one when options.port was 0); 0 before start().
  std::uint16_t port() const;
  const EchoOptions& options() const;
  // stop closes the listener and every open connection, then joins all threads. Idempotent.
  void stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// echo_payload_byte is byte `offset` of every size=N payload: a 64-character cycle over [A-Za-z0-9+/],
// so clients can verify any slice without keeping a copy.
char echo_payload_byte(std::uint64_t offset);


// ---- WebSocket frame codec (RFC 6455 §5), shared by the server and by tests acting as a client ----

enum class WebSocketOpcode : std::uint8_t {
  Continuation = 0x0,
  Text = 0x1,
  Binary = 0x2,
  Close = 0x8,
  Ping = 0x9,
  Pong = 0xA,
};
using WebSocketMask = std::array<std::uint8_t, 4>;

// WebSocketFrameHeader is the fixed part of a frame; header_size is how many bytes it took on the wire.
struct WebSocketFrameHeader {
  bool fin = true;
  std::uint8_t rsv = 0;  // the three RSV bits, must be 0 without extensions
  WebSocketOpcode opcode = WebSocketOpcode::Text;
  bool masked = false;
  WebSocketMask mask_key{};
  std::uint64_t payload_size = 0;
  std::size_t header_size = 0;
};

// WebSocketFrame is a decoded frame with its payload already unmasked.
struct WebSocketFrame {
  WebSocketFrameHeader header;
  std::string payload;
};

enum class FrameDecodeStatus { Complete, Incomplete, Invalid };

// websocket_accept_key computes Sec-WebSocket-Accept: base64(SHA-1(key + RFC 6455 GUID)).
std::string websocket_accept_key(std::string_view client_key);
// websocket_frame_header encodes a header, picking the 7-, 16- or 64-bit length form; mask_key = masked.
std::string websocket_frame_header(bool fin, WebSocketOpcode opcode, std::uint64_t payload_size,
                                   const WebSocketMask* mask_key);
// apply_websocket_mask XORs data in place; offset is the position of data[0] within the payload.
void apply_websocket_mask(char* data, std::size_t size, const WebSocketMask& mask_key, std::uint64_t offset);
// websocket_server_frame builds an unmasked frame (server to client).
std::string websocket_server_frame(WebSocketOpcode opcode, std::string_view payload, bool fin = true);
// websocket_client_frame builds a masked frame (client to server), as a test client sends it.
std::string websocket_client_frame(WebSocketOpcode opcode, std::string_view payload,
                                   const WebSocketMask& mask_key, bool fin = true);
// decode_websocket_header decodes a header at the start of data (Incomplete = need more bytes; Invalid =
// reserved opcode, a 64-bit length with the top bit set, or a fragmented or oversized control frame).
FrameDecodeStatus decode_websocket_header(std::string_view data, WebSocketFrameHeader& header);
// decode_websocket_frame decodes one whole frame; consumed is its size on the wire when Complete.
FrameDecodeStatus decode_websocket_frame(std::string_view data, WebSocketFrame& frame, std::size_t& consumed);

}  // namespace rproxy
