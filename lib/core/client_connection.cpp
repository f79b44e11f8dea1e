#include "core/client_connection.hpp"

#include "core/body_encoder.hpp"

// g++ 12 flags asio's coroutine frame deallocation in handle() (its own operator new/delete pair, with a
// sized delete) as mismatched once the function grows past an inlining threshold: a false positive.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ip/address.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <array>
#include <cerrno>
#include <cstdio>

#include "core/body_encoder.hpp"
#include "core/byte_buffer.hpp"
#include "core/proxy_headers.hpp"
#include "core/sha256.hpp"
#include "core/shadow_client.hpp"
#include "rproxy/http_parser.hpp"

namespace rproxy {

namespace {

using asio::awaitable;
using asio::ip::tcp;
constexpr auto use_nothrow = asio::experimental::as_tuple(asio::use_awaitable);
constexpr std::size_t kReadChunk = 64 * 1024;

// Failure causes, reported in X-Rproxy-Error and the log; stable strings tests and users can grep.
namespace cause {
constexpr const char* kNoRoute = "no_route";
constexpr const char* kNoUpstream = "no_upstream";
constexpr const char* kConnectRefused = "upstream_connect_refused";
constexpr const char* kConnectTimeout = "upstream_connect_timeout";
constexpr const char* kConnectFailed = "upstream_connect_failed";
constexpr const char* kUpstreamTls = "upstream_tls";
constexpr const char* kHttpOnHttpsPort = "http_request_on_https_port";
constexpr const char* kRedirectToHttps = "redirect_to_https";
constexpr const char* kResponseTimeout = "upstream_response_timeout";
constexpr const char* kBadResponse = "upstream_bad_response";
constexpr const char* kUpstreamClosed = "upstream_closed";
constexpr const char* kStageFailed = "stage_failed";
constexpr const char* kBodyTooLarge = "request_body_too_large";
constexpr const char* kBadRequest = "bad_request";
constexpr const char* kTimeout = "request_timeout";
constexpr const char* kExpectation = "expectation_failed";
constexpr const char* kLoop = "loop_detected";
}  // namespace cause

LocalResponse error_response(int status, const std::string& code, const std::string& message) {
  LocalResponse r;
  r.status = status;
  r.headers.add("Content-Type", "text/plain; charset=utf-8");
  r.headers.add("X-Rproxy-Error", code);
  r.body = std::to_string(status) + " " + std::string(reason_phrase(status)) + ": " + message + "\n";
  return r;
}

std::string hex(std::uint64_t n) {
  char b[20];
  int len = std::snprintf(b, sizeof b, "%llx", static_cast<unsigned long long>(n));
  return std::string(b, static_cast<std::size_t>(len));
}

void set_nodelay(tcp::socket& s) {
  std::error_code ec;
  s.set_option(tcp::no_delay(true), ec);
}

// The body framing rproxy writes: the reader side is BodyFraming, the writer side is this.
enum class OutFraming { None, Length, Chunked, UntilClose };

// BodyReader pulls a body off a socket piece by piece, whatever its framing, leaving bytes that belong
// to the next message in the connection's buffer.
struct BodyReader {
  BodyFraming framing;
  std::uint64_t remaining = 0;
  ChunkedDecoder chunked;
  bool done = false;
  std::string error;  // framing error text

  explicit BodyReader(BodyFraming f) : framing(f), remaining(f.length) {
    done = f.kind == BodyFraming::Kind::None || (f.kind == BodyFraming::Kind::Length && f.length == 0);
  }
};

enum class ReadStatus { Data, Done, Eof, Timeout, Error, BadFraming };

}  // namespace

struct ClientConnection::Impl {
  Impl(Worker& w, tcp::socket s, std::string sch, const ListenerInfo& l)
      : worker(w),
        shared(w.shared),
        rt_generation(w.shared.generation.load(std::memory_order_acquire)),
        rt(w.shared.runtime()),
        client(std::move(s)),
        scheme(std::move(sch)),
        listener(l),
        client_deadline(w.wheel, [this] {
          std::error_code ec;
          client.socket().cancel(ec);
        }),
        upstream_deadline(w.wheel, [this] {
          std::error_code ec;
          if (upstream) upstream->sock().cancel(ec);
          if (tunnel_up) tunnel_up->socket().cancel(ec);
        }) {
    std::error_code ec;
    auto ep = client.socket().remote_endpoint(ec);
    if (!ec) {
      auto addr = ep.address();
      if (addr.is_v6() && addr.to_v6().is_v4_mapped()) addr = asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6());
      client_ip = addr.to_string();
    }
    set_nodelay(client.socket());
  }

  Worker& worker;
  ServerShared& shared;
  std::uint64_t rt_generation = 0;  // read before rt, so a reload in between is seen at the next request
  std::shared_ptr<const Runtime> rt;
  Stream client;
  std::string scheme;
  ListenerInfo listener;
  std::string client_ip;
  bool logged_underscore = false;
  ByteBuffer in;  // client bytes read but not consumed
  Deadline client_deadline;
  Deadline upstream_deadline;
  std::unique_ptr<UpstreamConn> upstream;
  Stream* tunnel_up = nullptr;
  bool idle = false;
  bool closed = false;
  // The last read_into ended with a clean end of stream (not a reset or other error): only that ends a
  // close-delimited body; a reset means the body is truncated.
  bool last_read_eof = false;
  bool first_request = true;
  bool plain_on_tls = false;  // a plain HTTP client on an HTTPS listener
  std::uint64_t connection_id = 0;
  std::uint64_t requests_on_connection = 0;

  const Limits& limits() const { return rt->scenario.limits; }

  // ---- socket primitives with deadlines -------------------------------------------------------------

  // Reads some bytes from the client into `in`; returns bytes read (0 on EOF, error or timeout).
  // Reads into buf. When buf is empty (a new request or response is expected), it first waits for
  // readability without holding a buffer, then reads into the worker's scratch space and keeps only the
  // bytes that arrived: idle connections hold no buffer, and a small message costs no 64 KiB allocation.
  awaitable<std::size_t> read_into(Stream& stream, ByteBuffer& buf, Deadline& deadline,
                                   SteadyClock::duration timeout) {
    deadline.arm(timeout);
    std::size_t got = 0;
    last_read_eof = false;
    const bool empty = buf.empty();
    if (empty) buf.release();
    while (true) {
      char* space = empty ? worker.scratch.get() : buf.prepare(kReadChunk);
      auto n = stream.try_read(space, empty ? Worker::kScratchSize : kReadChunk);
      if (n > 0) {
        if (empty)
          buf.append(std::string_view(space, static_cast<std::size_t>(n)));
        else
          buf.commit(static_cast<std::size_t>(n));
        got = static_cast<std::size_t>(n);
        break;
      }
      if (n == 0) {
        last_read_eof = true;
        break;
      }
      if (n == Stream::kError) break;
      auto wec = co_await stream.wait_readable();
      if (wec || deadline.expired() || closed) break;
    }
    deadline.disarm();
    co_return got;
  }

  // Reads some bytes from the client into `in`; returns bytes read (0 on EOF, error or timeout).
  awaitable<std::size_t> read_client(SteadyClock::duration timeout) {
    if (closed) co_return 0;
    auto n = co_await read_into(client, in, client_deadline, timeout);
    co_return n;
  }

  awaitable<std::size_t> read_upstream(UpstreamConn& u, SteadyClock::duration timeout) {
    auto n = co_await read_into(u.stream, u.buf, upstream_deadline, timeout);
    co_return n;
  }

  // Two buffers at most (head + body) go out in one gathered write.
  awaitable<bool> write_client(asio::const_buffer a, asio::const_buffer b = {}) {
    if (closed) co_return false;
    client_deadline.arm(limits().write_timeout);
    std::array<asio::const_buffer, 2> v{a, b};
    auto ec = co_await client.write(v.data(), b.size() > 0 ? 2 : 1);
    client_deadline.disarm();
    co_return !ec;
  }

  awaitable<bool> write_upstream(UpstreamConn& u, asio::const_buffer a, SteadyClock::duration timeout) {
    upstream_deadline.arm(timeout);
    auto ec = co_await u.stream.write(&a, 1);
    upstream_deadline.disarm();
    co_return !ec;
  }

  awaitable<void> sleep(std::chrono::milliseconds d) {
    asio::steady_timer t(client.socket().get_executor(), d);
    co_await t.async_wait(use_nothrow);
  }

  void reset_client() {
    // SO_LINGER {1, 0} makes close() send RST: the client sees "connection reset by peer".
    struct linger lg {
      1, 0
    };
    ::setsockopt(client.socket().native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close_client();
  }

  void close_client() {
    std::error_code ec;
    client.socket().close(ec);
    closed = true;
  }

  // ---- bodies ---------------------------------------------------------------------------------------

  // Reads the next piece of a body from `src`/`buf` (client or upstream side) into `piece`.
  template <typename ReadMore>
  awaitable<ReadStatus> read_body(BodyReader& r, ByteBuffer& buf, std::string& piece, ReadMore read_more) {
    piece.clear();
    while (true) {
      if (r.done) co_return ReadStatus::Done;
      switch (r.framing.kind) {
        case BodyFraming::Kind::None:
          r.done = true;
          co_return ReadStatus::Done;
        case BodyFraming::Kind::Length:
          if (!buf.empty()) {
            auto n = static_cast<std::size_t>(std::min<std::uint64_t>(r.remaining, buf.size()));
            piece.assign(buf.view().substr(0, n));
            buf.consume(n);
            r.remaining -= n;
            if (r.remaining == 0) r.done = true;
            co_return ReadStatus::Data;
          }
          break;
        case BodyFraming::Kind::UntilClose:
          if (!buf.empty()) {
            piece.assign(buf.view());
            buf.clear();
            co_return ReadStatus::Data;
          }
          break;
        case BodyFraming::Kind::Chunked: {
          std::size_t used = 0;
          std::size_t off = 0;
          while (off < buf.size()) {
            std::string_view out;
            auto res = r.chunked.decode(buf.view().substr(off), used, out);
            off += used;
            if (res == ChunkedDecoder::Result::Data) {
              piece.append(out);
              if (piece.size() >= kReadChunk) break;
              continue;
            }
            if (res == ChunkedDecoder::Result::Done) {
              r.done = true;
              break;
            }
            if (res == ChunkedDecoder::Result::Error) {
              r.error = r.chunked.error();
              buf.consume(off);
              co_return ReadStatus::BadFraming;
            }
            break;  // NeedMore
          }
          buf.consume(off);
          if (!piece.empty()) co_return ReadStatus::Data;
          if (r.done) co_return ReadStatus::Done;
          break;
        }
      }
      auto status = co_await read_more();
      if (status != ReadStatus::Data) {
        if (status == ReadStatus::Eof && r.framing.kind == BodyFraming::Kind::UntilClose) {
          r.done = true;
          co_return ReadStatus::Done;
        }
        co_return status;
      }
    }
  }

  awaitable<bool> write_piece(Stream& stream, Deadline& dl, OutFraming f, const std::string& piece) {
    if (piece.empty()) co_return true;
    dl.arm(limits().write_timeout);
    std::error_code ec;
    if (f == OutFraming::Chunked) {
      auto size_line = hex(piece.size()) + "\r\n";
      std::array<asio::const_buffer, 3> bufs{asio::buffer(size_line), asio::buffer(piece), asio::buffer("\r\n", 2)};
      ec = co_await stream.write(bufs.data(), bufs.size());
    } else {
      auto one = asio::buffer(piece);
      ec = co_await stream.write(&one, 1);
    }
    dl.disarm();
    co_return !ec && !dl.expired();
  }

  awaitable<bool> write_end(Stream& stream, Deadline& dl, OutFraming f) {
    if (f != OutFraming::Chunked) co_return true;
    dl.arm(limits().write_timeout);
    auto last = asio::buffer("0\r\n\r\n", 5);
    auto ec = co_await stream.write(&last, 1);
    dl.disarm();
    co_return !ec;
  }

  // ---- response body compression ---------------------------------------------------------------------

  // The encoder of the exchange in progress (Decision::content_coding); null = the body goes out as is.
  std::unique_ptr<BodyEncoder> encoder;
  std::string encoded;

  // start_encoder makes the encoder a response stage asked for, when the final head still says that coding
  // (a later stage may have answered instead, or removed the header); false (logged) when it cannot start.
  bool start_encoder(const std::string& content_coding, int level, const Headers& final_headers,
                     std::uint64_t size_hint) {
    encoder.reset();
    if (content_coding.empty()) return true;
    auto said = final_headers.get("Content-Encoding");
    if (!said || !iequals(*said, content_coding)) return true;
    try {
      auto coding = content_coding == "br" ? ContentCoding::Brotli : ContentCoding::Gzip;
      encoder = BodyEncoder::make(coding, level, size_hint);
      return true;
    } catch (const std::exception& e) {
      log_line("rproxy: cannot start " + content_coding + " compression: " + e.what() +
               "; sending the response uncompressed");
      return false;
    }
  }

  bool encode_piece(const std::string& piece, bool end, bool flush = true) {
    encoded.clear();
    try {
      if (!piece.empty()) encoder->encode(piece, !end && flush, encoded);
      if (end) encoder->finish(encoded);
      return true;
    } catch (const std::exception& e) {
      log_line(std::string("rproxy: compression failed: ") + e.what() + "; the response is cut short");
      return false;
    }
  }

  // Body bytes for the client pass through the encoder when there is one; each piece is flushed, so what
  // the upstream sent so far reaches the client now (streams and long polls are not held back).
  // flush false: more body follows at once (buffered, or the end is next), so the compressor may keep
  // what it has; a flush costs ratio and a deflate call.
  awaitable<bool> write_body_piece(OutFraming f, const std::string& piece, bool flush = true) {
    if (!encoder) {
      bool ok = co_await write_piece(client, client_deadline, f, piece);
      co_return ok;
    }
    if (piece.empty()) co_return true;
    if (!encode_piece(piece, false, flush)) co_return false;
    bool ok = co_await write_piece(client, client_deadline, f, encoded);
    co_return ok;
  }

  awaitable<bool> write_body_end(OutFraming f) {
    if (encoder) {
      if (!encode_piece({}, true)) co_return false;
      if (!co_await write_piece(client, client_deadline, f, encoded)) co_return false;
    }
    bool ok = co_await write_end(client, client_deadline, f);
    co_return ok;
  }

  // ---- responses rproxy writes itself ---------------------------------------------------------------

  // Coroutine parameters are references to caller-owned objects, and co_await never appears inside a
  // larger expression: g++ 12 miscompiles both patterns (frames resumed after completion).
  awaitable<bool> send_local(Exchange& ex, LocalResponse& r, bool keep_alive, std::size_t& bytes_out) {
    ResponseHead head;
    head.status = r.status;
    head.reason = std::string(reason_phrase(r.status));
    head.headers = std::move(r.headers);
    head.headers.remove("Content-Length");
    head.headers.remove("Transfer-Encoding");
    bool bodyless = ex.request.method == "HEAD" || r.status == 204 || r.status == 304 || r.status < 200;
    const bool from_file = !r.body_file.empty();
    // A HEAD of a compressed response: the compressed length is unknown, so no Content-Length at all.
    const bool coded_head = encoder && bodyless;
    // bytes_out counts body bytes before compression, like the streamed paths (the cache relies on it).
    const std::uint64_t raw_size = from_file ? r.body_file_size : r.body.size();
    if (encoder && (bodyless || !from_file)) {
      // A body in memory is compressed whole and keeps a Content-Length.
      if (!bodyless) {
        if (!encode_piece(r.body, true)) co_return false;
        r.body.swap(encoded);
        r.chunked = false;
        r.chunk_sizes.clear();
        r.chunk_at_ms.clear();
        std::string().swap(encoded);
      }
      encoder.reset();
    }
    const std::uint64_t size = from_file ? r.body_file_size : r.body.size();
    const bool chunked = (r.chunked || encoder) && ex.request.version_minor == 1 && r.status != 204 && r.status != 304;
    if (encoder && !chunked) keep_alive = false;  // an HTTP/1.0 client: the close ends the compressed body
    if (chunked)
      head.headers.set("Transfer-Encoding", "chunked");
    else if (r.status != 204 && r.status != 304 && !encoder && !coded_head)
      head.headers.set("Content-Length", std::to_string(size));
    if (!keep_alive) {
      head.headers.set("Connection", "close");
    } else if (ex.request.version_minor == 0) {
      head.headers.set("Connection", "keep-alive");  // HTTP/1.0 closes unless told otherwise
    }
    auto wire = serialize(head);
    bytes_out = 0;
    if (bodyless || (!from_file && !chunked)) {
      bool ok = false;
      if (bodyless) {
        ok = co_await write_client(asio::buffer(wire));
      } else {
        ok = co_await write_client(asio::buffer(wire), asio::buffer(r.body));
      }
      if (ok && !bodyless) bytes_out = raw_size;
      co_return ok;
    }
    if (!co_await write_client(asio::buffer(wire))) co_return false;
    auto sent = co_await send_local_body(r, size, chunked);
    bytes_out = sent;
    co_return sent == size;
  }

  // Streams a local body (from memory or a file) in pieces, as chunks of the recorded sizes when chunked.
  awaitable<std::uint64_t> send_local_body(const LocalResponse& r, std::uint64_t size, bool chunked) {
    const OutFraming out = chunked ? OutFraming::Chunked : OutFraming::Length;
    int fd = -1;
    if (!r.body_file.empty()) {
      fd = ::open(r.body_file.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        log_line("rproxy: cannot open " + r.body_file + " for a local response");
        co_return 0;
      }
    }
    struct Closer {
      int fd;
      ~Closer() {
        if (fd >= 0) ::close(fd);
      }
    } closer{fd};
    std::uint64_t sent = 0;
    std::size_t next_chunk = 0;
    std::vector<std::uint64_t> chunks = r.chunk_sizes;
    std::string piece;
    const auto t_head = SteadyClock::now();
    std::size_t paced = 0;  // chunks whose due time has been waited for
    while (sent < size) {
      // Recorded timing: chunk k is not sent before chunk_at_ms[k] after the head.
      if (next_chunk < r.chunk_at_ms.size() && paced <= next_chunk) {
        paced = next_chunk + 1;
        auto due = t_head + std::chrono::milliseconds(r.chunk_at_ms[next_chunk]);
        auto now = SteadyClock::now();
        if (due > now) co_await sleep(std::chrono::duration_cast<Millis>(due - now));
      }
      std::uint64_t want = std::min<std::uint64_t>(size - sent, kReadChunk);
      if (chunked && next_chunk < chunks.size() && chunks[next_chunk] > 0)
        want = std::min<std::uint64_t>(want, chunks[next_chunk]);
      if (fd >= 0) {
        piece.resize(static_cast<std::size_t>(want));
        auto n = ::pread(fd, piece.data(), piece.size(), static_cast<off_t>(r.body_file_offset + sent));
        if (n <= 0) co_return sent;  // the file shrank: the response ends short and the connection closes
        piece.resize(static_cast<std::size_t>(n));
      } else {
        piece.assign(r.body, static_cast<std::size_t>(sent), static_cast<std::size_t>(want));
      }
      if (chunked && next_chunk < chunks.size()) {
        if (chunks[next_chunk] <= piece.size())
          ++next_chunk;
        else
          chunks[next_chunk] -= piece.size();
      }
      if (!co_await write_body_piece(out, piece)) co_return sent;
      sent += piece.size();
    }
    if ((chunked || encoder) && !co_await write_body_end(out)) co_return sent;
    co_return sent;
  }

  // Error path before a request could even be parsed: answer and close.
  awaitable<void> reject(int status, const char* code, std::string_view message, std::string_view method,
                         std::string_view target) {
    auto r = error_response(status, code, std::string(message));
    co_await reject_with(r, code, message, method, target, status != 408);
  }

  // Answers r and closes: for requests rproxy refuses before any routing.
  awaitable<void> reject_with(LocalResponse& r, const char* code, std::string_view message, std::string_view method,
                              std::string_view target, bool log_it) {
    const int status = r.status;
    encoder.reset();
    Exchange ex;
    ex.request.method = std::string(method);
    std::size_t out = 0;
    auto start = std::chrono::system_clock::now();
    co_await send_local(ex, r, false, out);
    ex.request.method = method.empty() ? "-" : std::string(method);
    ex.outcome.status = status;
    ex.outcome.bytes_out = out;
    ex.outcome.error = code;
    log_exchange(start, target.empty() ? "-" : std::string(target), ex, "");
    if (log_it) log_line("rproxy: " + std::to_string(status) + " from " + client_ip + ": " + std::string(message));
    // Lingering close: stop reading only after the peer has our answer, so it is not lost to an RST
    // caused by unread request bytes.
    co_await lingering_close();
  }

  // Half-close, then read and discard what the client still sends for a moment, so the answer is not
  // destroyed by an RST that unread request bytes would cause on close (RFC 9112 §9.6).
  awaitable<void> lingering_close() {
    if (!closed) co_await client.shutdown_send();
    auto until = SteadyClock::now() + std::chrono::seconds(2);
    std::size_t discarded = 0;
    while (!closed && discarded < 1024 * 1024 && SteadyClock::now() < until) {
      in.clear();
      auto n = co_await read_client(until - SteadyClock::now());
      if (n == 0) break;
      discarded += n;
    }
    close_client();
  }

  void log_exchange(std::chrono::system_clock::time_point start, const std::string& target, const Exchange& ex,
                    const std::string& upstream_url) {
    auto tag = [&](const char* name) -> std::string_view {
      auto it = ex.tags.find(name);
      return it == ex.tags.end() ? std::string_view() : std::string_view(it->second);
    };
    ExchangeSample sample;
    sample.route = ex.route;
    sample.upstream = upstream_url;
    sample.variant = ex.variant;
    sample.status = ex.outcome.status;
    sample.bytes_in = ex.outcome.bytes_in;
    sample.bytes_out = ex.outcome.bytes_out;
    sample.duration_ms = ex.outcome.duration_ms;
    sample.error = ex.outcome.error;
    sample.fault = tag("fault");
    sample.replay = tag("replay");
    sample.cache = tag("cache");
    sample.id = ex.id;
    sample.start_ms = std::chrono::duration_cast<std::chrono::milliseconds>(start.time_since_epoch()).count();
    sample.client_ip = client_ip;
    sample.method = ex.request.method;
    sample.target = target;
    worker.metrics.record(sample);
    if (!shared.access_log || !shared.access_log->enabled()) return;
    AccessRecord rec;
    rec.start = start;
    rec.client_ip = client_ip;
    rec.method = ex.request.method;
    rec.target = target;
    rec.status = ex.outcome.status;
    rec.bytes_in = ex.outcome.bytes_in;
    rec.bytes_out = ex.outcome.bytes_out;
    rec.duration_ms = ex.outcome.duration_ms;
    rec.route = ex.route;
    rec.upstream = upstream_url;
    rec.error = ex.outcome.error;
    rec.variant = ex.variant;
    rec.fault = std::string(sample.fault);
    rec.replay = std::string(sample.replay);
    rec.cache = std::string(sample.cache);
    rec.retries = std::string(tag("retries"));
    shared.access_log->write(rec);
  }

  // Stages whose on_request ran learn how the exchange ended (statistics, recordings).
  void complete_stages(const std::vector<Stage*>& stages, std::size_t ran, const Exchange& ex) {
    for (std::size_t i = 0; i < ran && i < stages.size(); ++i) {
      try {
        stages[i]->on_complete(ex);
      } catch (const std::exception& e) {
        log_line(std::string("rproxy: stage on_complete failed: ") + e.what());
      } catch (...) {
        log_line("rproxy: stage on_complete failed with an unknown exception");
      }
    }
  }

  // ---- upstream connections -------------------------------------------------------------------------

  enum class ConnectResult { Ok, Refused, Timeout, Failed, TlsFailed };

  // Connects to url (or takes a pooled connection), with the TLS handshake for https:// upstreams; the
  // route's connect_timeout covers both.
  awaitable<ConnectResult> connect_upstream(const Url& url, const RouteRuntime& route_rt, std::string& detail) {
    const Millis timeout = route_rt.spec->connect_timeout;
    const bool tls = url.scheme == "https";
    auto key = tls ? "https://" + url.authority() + "#" + route_rt.spec->name : url.authority();
    if (auto c = worker.pool.take(key)) {
      upstream = std::move(c);
      co_return ConnectResult::Ok;
    }
    auto conn = std::make_unique<UpstreamConn>(client.socket().get_executor());
    conn->key = key;
    std::vector<tcp::endpoint> endpoints;
    std::error_code ec;
    auto addr = asio::ip::make_address(url.host, ec);
    if (!ec) {
      endpoints.emplace_back(addr, url.port);
    } else {
      tcp::resolver resolver(client.socket().get_executor());
      const std::string port = std::to_string(url.port);
      auto [rec, results] = co_await resolver.async_resolve(url.host, port, use_nothrow);
      if (rec) {
        detail = "cannot resolve " + url.host + ": " + rec.message();
        co_return ConnectResult::Failed;
      }
      for (const auto& r : results) endpoints.push_back(r.endpoint());
    }
    upstream = std::move(conn);
    upstream_deadline.arm(timeout);
    std::error_code cec = asio::error::host_not_found;
    for (const auto& ep : endpoints) {
      std::error_code ignore;
      upstream->sock().close(ignore);
      std::tie(cec) = co_await upstream->sock().async_connect(ep, use_nothrow);
      if (!cec || upstream_deadline.expired()) break;
    }
    bool handshake_failed = false;
    if (!cec && !upstream_deadline.expired() && tls) {
      set_nodelay(upstream->sock());
      const auto& name = route_rt.spec->upstream_tls.server_name.empty() ? url.host
                                                                          : route_rt.spec->upstream_tls.server_name;
      upstream->stream.start_tls_client(route_rt.upstream_tls.get(), name, !route_rt.spec->upstream_tls.insecure);
      handshake_failed = !co_await upstream->stream.handshake();
    }
    upstream_deadline.disarm();
    if (upstream_deadline.expired()) {
      detail = !cec && tls ? "TLS handshake with " + url.text + " did not complete within " + format_duration(timeout) +
                                 " (is it an HTTPS port?)"
                           : "connecting to " + url.text + " timed out after " + format_duration(timeout);
      upstream.reset();
      co_return ConnectResult::Timeout;
    }
    if (cec) {
      detail = "connecting to " + url.text + ": " + cec.message();
      upstream.reset();
      co_return cec == asio::error::connection_refused ? ConnectResult::Refused : ConnectResult::Failed;
    }
    if (handshake_failed) {
      detail = "upstream " + url.text + ": " + upstream->stream.error_text();
      upstream.reset();
      co_return ConnectResult::TlsFailed;
    }
    set_nodelay(upstream->sock());
    co_return ConnectResult::Ok;
  }

  // client_gone: the client closed its side (EOF) or reset; peeked without reading, for waits that read
  // nothing from the client (hold).
  bool client_gone() {
    if (closed) return true;
    char b;
    auto n = ::recv(client.socket().native_handle(), &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
  }

  void drop_upstream() {
    if (!upstream) return;
    std::error_code ec;
    upstream->sock().close(ec);
    upstream.reset();
  }

  // ---- stages ---------------------------------------------------------------------------------------

  // Runs a stage hook with containment: a throwing stage becomes a 500 with X-Rproxy-Error.
  template <typename Fn>
  Decision call_stage(Fn&& fn) {
    try {
      return fn();
    } catch (const std::exception& e) {
      log_line(std::string("rproxy: stage failed: ") + e.what());
      return Decision::respond(error_response(500, cause::kStageFailed, e.what()));
    } catch (...) {
      log_line("rproxy: stage failed with an unknown exception");
      return Decision::respond(error_response(500, cause::kStageFailed, "unknown error"));
    }
  }

  // Body-level decisions accumulated from every stage.
  struct BodyControl {
    std::uint64_t throttle = 0;
    std::optional<std::uint64_t> truncate_after;
    bool reset_after_truncate = false;
    std::uint64_t request_throttle = 0;
    std::uint64_t slice_bytes = 0;
    Millis slice_delay{0};
    Millis close_delay{0};
    std::string content_coding;
    int coding_level = -1;
    void absorb(const Decision& d) {
      if (d.throttle_bytes_per_s) throttle = d.throttle_bytes_per_s;
      if (d.truncate_after) {
        truncate_after = d.truncate_after;
        reset_after_truncate = d.reset_after_truncate;
      }
      if (d.throttle_request_bytes_per_s) request_throttle = d.throttle_request_bytes_per_s;
      if (d.slice_bytes) {
        slice_bytes = d.slice_bytes;
        slice_delay = d.slice_delay;
      }
      if (d.close_delay.count() > 0) close_delay = d.close_delay;
      if (!d.content_coding.empty()) {
        content_coding = d.content_coding;
        coding_level = d.coding_level;
      }
    }
    // paced: the body goes out in timed pieces, never in one write with the head.
    bool paced() const { return throttle || slice_bytes || truncate_after; }
  };

  // ActiveCount keeps the balancer's count of requests in flight (least_conn) for the upstream in use.
  struct ActiveCount {
    Balancer& balancer;
    std::optional<std::size_t> index;
    void begin(std::size_t i) {
      end();
      balancer.begin(i);
      index = i;
    }
    void end() {
      if (index) balancer.end(*index);
      index.reset();
    }
    ~ActiveCount() { end(); }
  };

  // Applies response stages in reverse order; returns false when the connection must be reset.
  awaitable<bool> run_response_stages(const std::vector<Stage*>& stages, std::size_t ran, Exchange& ex,
                                      BodyControl& body, std::optional<LocalResponse>& replace) {
    for (std::size_t i = ran; i-- > 0;) {
      auto d = call_stage([&] { return stages[i]->on_response(ex); });
      if (d.delay.count() > 0) co_await sleep(d.delay);
      // An answer replaces the response a coding was decided for.
      if (d.kind == Decision::Kind::Respond && d.response) body.content_coding.clear();
      body.absorb(d);
      if (d.kind == Decision::Kind::Reset) co_return false;
      if (d.kind == Decision::Kind::Respond && d.response) {
        replace = std::move(d.response);
        ex.response = ResponseHead{1, replace->status, std::string(reason_phrase(replace->status)), replace->headers};
      }
    }
    // Stages after the one that answered still edited the head (CORS, compression): the answer carries it.
    if (replace) {
      replace->status = ex.response->status;
      replace->headers = ex.response->headers;
    }
    co_return true;
  }

  // ---- the exchange ---------------------------------------------------------------------------------

  awaitable<bool> handle(RequestHead& req) {
    // A reload since the last request: this one runs under the new configuration.
    if (auto g = shared.generation.load(std::memory_order_acquire); g != rt_generation) {
      rt = shared.runtime();
      rt_generation = g;
    }
    auto t0 = SteadyClock::now();
    auto start = std::chrono::system_clock::now();
    shared.requests.fetch_add(1, std::memory_order_relaxed);
    Exchange ex;
    body_tee = nullptr;
    resp_capture = nullptr;
    cur_tees = nullptr;
    encoder.reset();
    shadow_body_over = false;
    if (shadow_body.capacity() > 0) std::string().swap(shadow_body);  // never carried to the next request
    ex.id = shared.next_exchange_id.fetch_add(1, std::memory_order_relaxed);
    ex.client_ip = client_ip;
    ex.scheme = scheme;
    ex.connection = connection_id;
    ex.connection_request = ++requests_on_connection;
    const std::string log_target = req.target;

    bool keep_alive = req.version_minor == 1 ? !req.headers.has_token("Connection", "close")
                                             : req.headers.has_token("Connection", "keep-alive");
    if (shared.draining.load(std::memory_order_relaxed)) keep_alive = false;
    auto framing = request_framing(req);
    bool had_content_length = req.headers.has("Content-Length");
    bool upgrade = req.headers.has("Upgrade") && req.headers.has_token("Connection", "upgrade") &&
                   req.version_minor == 1;

    std::uint64_t bytes_in = 0;
    std::size_t bytes_out = 0;
    int status = 0;
    std::string error_code;
    std::string upstream_text;

    const std::vector<Stage*>* pipeline = nullptr;
    std::size_t stages_ran = 0;
    std::optional<ShadowRequest> shadow;
    bool shadow_done = false;
    auto finish = [&](bool keep) {
      encoder.reset();  // a compressor holds up to megabytes: never keep one on an idle connection
      std::string().swap(encoded);
      if (shadow && !shadow_done)
        skip_shadow(*shadow, ex, "the primary exchange failed" + (error_code.empty() ? "" : " (" + error_code + ")"));
      ex.outcome.status = status;
      ex.outcome.error = error_code;
      ex.outcome.bytes_in = bytes_in;
      ex.outcome.bytes_out = bytes_out;
      ex.outcome.duration_ms = std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count();
      log_exchange(start, log_target, ex, upstream_text);
      if (pipeline) complete_stages(*pipeline, stages_ran, ex);
      return keep;
    };

    // Before Connection is applied, so "Connection: X_A" cannot hide X_A from reject.
    if (limits().underscore_headers != UnderscoreHeaders::Allow) {
      auto& fields = req.headers.fields();
      auto underscored = [](const Header& h) { return h.name.find('_') != std::string::npos; };
      auto first = std::find_if(fields.begin(), fields.end(), underscored);
      if (first != fields.end() && limits().underscore_headers == UnderscoreHeaders::Reject) {
        std::string msg = "field name " + first->name + " contains \"_\" (limits.underscore_headers is reject)";
        ex.request = std::move(req);
        status = 400;
        error_code = cause::kBadRequest;
        log_line("rproxy: 400 from " + client_ip + ": " + msg);
        {
          auto err = error_response(400, cause::kBadRequest, msg);
          co_await send_local(ex, err, false, bytes_out);
        }
        co_await lingering_close();
        co_return finish(false);
      }
      if (first != fields.end() && !logged_underscore) {
        // Once per connection: a developer whose API takes api_key-style fields sees why they vanish.
        logged_underscore = true;
        log_line("rproxy: dropped request field " + first->name + " from " + client_ip +
                 " (names with \"_\" are dropped; limits.underscore_headers or --underscore-headers allow keeps them)");
      }
      fields.erase(std::remove_if(first, fields.end(), underscored), fields.end());
    }
    // Fields the client lists in Connection are hop-by-hop: drop them now, before stages run, so a client
    // cannot use Connection to strip what a stage adds (or Host).
    {
      std::string upgrade_protocol = upgrade ? req.headers.joined("Upgrade") : std::string();
      strip_connection_options(req.headers);
      if (upgrade) req.headers.set("Upgrade", std::move(upgrade_protocol));
    }
    if (via_hops(req.headers) >= kMaxViaHops) {
      ex.request = std::move(req);
      status = 508;
      error_code = cause::kLoop;
      log_line("rproxy: 508 from " + client_ip + ": the request already passed through rproxy " +
               std::to_string(kMaxViaHops) + " times (Via); an upstream leads back to a listener");
      {
        auto err = error_response(508, cause::kLoop, "the request went through rproxy " +
                                                         std::to_string(kMaxViaHops) + " times (see Via)");
        co_await send_local(ex, err, false, bytes_out);
      }
      co_await lingering_close();
      co_return finish(false);
    }

    // Expect (RFC 9110 §10.1.1): only 100-continue is known; rproxy sends the 100 itself.
    bool expect_continue = false;
    if (auto e = req.headers.get("Expect"); e && req.version_minor == 1) {
      if (!iequals(*e, "100-continue")) {
        ex.request = std::move(req);
        status = 417;
        error_code = cause::kExpectation;
        {
        auto err = error_response(417, cause::kExpectation, "unsupported Expect value");
        co_await send_local(ex, err, false, bytes_out);
      }
        co_return finish(false);
      }
      expect_continue = framing.kind != BodyFraming::Kind::None;
    }
    if (limits().max_body && framing.kind == BodyFraming::Kind::Length && framing.length > limits().max_body) {
      ex.request = std::move(req);
      status = 413;
      error_code = cause::kBodyTooLarge;
      {
        auto err = error_response(413, cause::kBodyTooLarge, "request body exceeds the configured limit");
        co_await send_local(ex, err, false, bytes_out);
      }
      co_return finish(false);
    }

    // Absolute-form targets are reduced to origin-form; Host was checked against the authority.
    if (!req.target.empty() && req.target.front() != '/' && req.target != "*") {
      auto p = req.target.find("://");
      auto slash = req.target.find_first_of("/?", p + 3);
      req.target = slash == std::string::npos ? "/" : req.target.substr(slash);
      if (req.target.front() == '?') req.target.insert(req.target.begin(), '/');
    }

    ex.request = std::move(req);
    int ri = rt->router->match(ex.request);
    if (ri >= 0) ex.route = rt->routes[static_cast<std::size_t>(ri)].spec->name;
    const auto& stages = rt->pipeline(ri);
    pipeline = &stages;

    // Stages that decide on the request body (replay matching) get it read first.
    bool body_buffered = false;
    if (framing.kind != BodyFraming::Kind::None) {
      bool wants = false;
      for (auto* st : stages) wants = wants || st->needs_request_body();
      if (wants) {
        auto got = co_await buffer_request_body(framing, expect_continue, ex, bytes_in);
        if (got == BodySend::TooLarge) {
          status = 413;
          error_code = cause::kBodyTooLarge;
          auto err = error_response(413, cause::kBodyTooLarge, "request body exceeds the configured limit");
          co_await send_local(ex, err, false, bytes_out);
          co_return finish(false);
        }
        if (got != BodySend::Ok) {
          auto [st, msg] = body_error;
          if (st == 0) co_return finish(false);
          status = st;
          error_code = st == 408 ? cause::kTimeout : cause::kBadRequest;
          log_line("rproxy: " + std::to_string(st) + " from " + client_ip + ": " + msg);
          auto err = error_response(st, error_code, msg);
          co_await send_local(ex, err, false, bytes_out);
          co_await lingering_close();
          co_return finish(false);
        }
        body_buffered = true;
        expect_continue = false;
      }
    }

    // Request stages, in order.
    std::optional<LocalResponse> local;
    BodyControl body;
    std::optional<std::string> chosen;
    std::size_t ran = 0;
    for (; ran < stages.size(); ++ran) {
      stages_ran = ran + 1;
      auto d = call_stage([&] { return stages[ran]->on_request(ex); });
      if (d.delay.count() > 0) co_await sleep(d.delay);
      body.absorb(d);
      if (d.upstream) chosen = d.upstream;
      if (d.shadow) shadow = std::move(d.shadow);
      if (d.kind == Decision::Kind::Reset) {
        status = 0;
        error_code = "reset";
        reset_client();
        co_return finish(false);
      }
      if (d.kind == Decision::Kind::Close || d.kind == Decision::Kind::Hang) {
        status = 0;
        error_code = d.kind == Decision::Kind::Close ? "closed" : "hang";
        if (d.kind == Decision::Kind::Hang) {
          co_await hang(d.hang_for);
          close_client();  // nothing was sent, so there is no answer for a lingering close to protect
        }
        co_return finish(false);
      }
      if (d.kind == Decision::Kind::Respond) {
        local = std::move(d.response);
        ++ran;
        break;
      }
    }
    if (!local && ri < 0) {
      local = error_response(404, cause::kNoRoute, "no route matched " + ex.request.method + " " + log_target);
    }
    if (!local && rt->routes[static_cast<std::size_t>(ri)].spec->upstreams.empty()) {
      // A route served by a stage alone (replay) that let a request through: nowhere to send it.
      local = error_response(502, cause::kNoUpstream,
                             "route " + ex.route + " has no upstream and no stage answered " + ex.request.method +
                                 " " + log_target);
    }
    if (!local && body_buffered && !ex.request_body_complete) {
      local = error_response(413, cause::kBodyTooLarge,
                             "a request body read for a stage is over " + std::to_string(kBufferedBodyCap >> 20) +
                                 " MiB and cannot be forwarded from the buffer");
    }
    cur_tees = &ex.tees;
    if (local) {
      // An unread request body would be taken for the next request: close unless there was none or a
      // stage had it read already.
      if (framing.kind != BodyFraming::Kind::None && !body_buffered) keep_alive = false;
      bool keep = co_await respond_locally(ex, stages, ran, *local, body, keep_alive, status, bytes_out, error_code);
      co_return finish(keep);
    }

    const auto& route_rt = rt->routes[static_cast<std::size_t>(ri)];
    const Route& route = *route_rt.spec;
    auto& balancer = *route_rt.balancer;

    // Pick and connect; on refusal try the route's other upstreams before giving up. A stage's pick
    // (by name or URL) narrows the candidates first; the rest of the route is the failover. Upstreams that
    // are down (health checks, ejection) are avoided, backups used only when no primary is up.
    const std::size_t n_up = route.upstreams.size();
    auto& health = *route_rt.health;
    std::vector<bool> outside;
    if (chosen) {
      outside.assign(n_up, false);
      bool narrowed = false;
      for (std::size_t k = 0; k < n_up; ++k) {
        outside[k] = route.upstreams[k].name != *chosen && route.upstreams[k].url.text != *chosen;
        narrowed = narrowed || !outside[k];
      }
      if (!narrowed) outside.clear();
    }
    const std::string& method = ex.request.method;
    const bool idempotent =
        method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "PUT" || method == "DELETE";
    const bool has_body = framing.kind != BodyFraming::Kind::None;
    auto retry_on = [&](std::string_view condition) {
      return std::find(route.retries.on.begin(), route.retries.on.end(), condition) != route.retries.on.end();
    };
    unsigned retries_done = 0;
    std::optional<SteadyClock::time_point> hold_until;
    ActiveCount active{balancer, std::nullopt};
    std::size_t ui = 0;
    ResponseParseResult rp;
    bool request_cut_short = false;
    RequestHead up;
    // Waits before the next attempt when the route allows one more for this failure; logs it.
    auto next_try = [&](const std::string& condition, const std::string& why) -> std::optional<Millis> {
      bool body_sent = has_body && condition != "connect";
      if (retries_done >= route.retries.attempts || !retry_on(condition) || body_sent) return std::nullopt;
      if (condition != "connect" && !idempotent) return std::nullopt;
      ++retries_done;
      auto wait = route.retries.backoff * (1u << std::min(retries_done - 1, 10u));
      log_line("rproxy: retry " + std::to_string(retries_done) + "/" + std::to_string(route.retries.attempts) + " of " +
               method + " " + log_target + " in " + format_duration(wait) + ": " + why);
      ex.tags["retries"] = std::to_string(retries_done);
      return wait;
    };
    // A retry goes to another upstream while there is one that has not failed this request.
    std::vector<bool> failed_here(n_up, false);
    for (;;) {
      std::vector<bool> tried = failed_here;
      if (std::all_of(tried.begin(), tried.end(), [](bool b) { return b; })) tried.assign(n_up, false);
      std::string detail;
      ConnectResult cr = ConnectResult::Failed;
      while (true) {
        auto mask = health.avoid_mask(tried, outside, SteadyClock::now());
        if (mask.empty()) break;
        ui = balancer.pick(mask);
        cr = co_await connect_upstream(route.upstreams[ui].url, route_rt, detail);
        if (cr == ConnectResult::Ok) break;
        tried[ui] = true;  // refused or timed out: the next candidate gets the request
        // A refusal costs nothing and fails over at once, and a restarted dev server must get its traffic
        // back at once: only failures that cost time (timeouts, resets, TLS) count towards ejection. While
        // holding, the same failures repeat every 200ms: they were counted once already.
        if (!hold_until && cr != ConnectResult::Refused)
          if (auto line = health.record_failure(ui, SteadyClock::now()); !line.empty()) log_line(line);
      }
      const Url& url = route.upstreams[ui].url;
      upstream_text = url.text;
      ex.upstream = url.text;
      ex.upstream_name = route.upstreams[ui].name;
      if (cr != ConnectResult::Ok) {
        // Every upstream is down. A dev server restarting comes back in seconds: hold idempotent requests.
        auto now = SteadyClock::now();
        if (route.hold.count() > 0 && idempotent) {
          if (!hold_until) {
            hold_until = now + route.hold;
            log_line("rproxy: every upstream of route " + route.name + " is down; holding " + method + " " +
                     log_target + " up to " + format_duration(route.hold) + " (" + detail + ")");
          }
          if (client_gone()) {
            status = 0;
            error_code = "client_gone";
            close_client();
            co_return finish(false);
          }
          if (now < *hold_until && !shared.draining.load(std::memory_order_relaxed)) {
            co_await sleep(std::min<Millis>(Millis(200), std::chrono::ceil<Millis>(*hold_until - now)));
            continue;
          }
        }
        if (auto wait = next_try("connect", detail)) {
          co_await sleep(*wait);
          continue;
        }
        shared.upstream_errors.fetch_add(1, std::memory_order_relaxed);
        int st = cr == ConnectResult::Timeout ? 504 : 502;
        error_code = cr == ConnectResult::Timeout     ? cause::kConnectTimeout
                     : cr == ConnectResult::Refused   ? cause::kConnectRefused
                     : cr == ConnectResult::TlsFailed ? cause::kUpstreamTls
                                                      : cause::kConnectFailed;
        if (hold_until) detail += " (held " + format_duration(route.hold) + ")";
        log_line("rproxy: " + std::to_string(st) + " " + method + " " + log_target + ": " + detail);
        if (has_body) keep_alive = false;
        auto err = error_response(st, error_code, detail);
        bool keep = co_await respond_locally(ex, stages, ran, err, body, keep_alive, status, bytes_out, error_code);
        co_return finish(keep);
      }
      if (hold_until) ex.tags["held_ms"] = std::to_string(std::chrono::duration_cast<Millis>(
                                                               SteadyClock::now() - (*hold_until - route.hold))
                                                               .count());
      if (!outside.empty() && outside[ui]) {
        ex.tags["failover_from"] = *chosen;
        log_line("rproxy: " + *chosen + " is down or refused the connection; " + method + " " + log_target +
                 " failed over to " + url.text);
      }
      active.begin(ui);

      // Build the upstream head.
      up = ex.request;
      up.target = upstream_target(route, ex.request.target);
      ForwardContext fctx;
      fctx.client_ip = client_ip;
      fctx.scheme = scheme;
      fctx.upstream_authority = host_header_value(url);
      fctx.send_upstream_host = route.host_header == HostHeader::Upstream;
      fctx.upgrade = upgrade;
      prepare_upstream_request(up, fctx);
      OutFraming req_out = OutFraming::None;
      if (body_buffered) {
        up.headers.remove("Transfer-Encoding");
        up.headers.set("Content-Length", std::to_string(ex.request_body.size()));
      } else if (framing.kind == BodyFraming::Kind::Length) {
        up.headers.set("Content-Length", std::to_string(framing.length));
        req_out = OutFraming::Length;
      } else if (framing.kind == BodyFraming::Kind::Chunked) {
        up.headers.set("Transfer-Encoding", "chunked");
        req_out = OutFraming::Chunked;
      } else if (had_content_length) {
        up.headers.set("Content-Length", "0");
      }
      auto up_wire = serialize(up);

      // Send head + body, read the response head. A reused pooled connection that the upstream closed in
      // the meantime gets one retry on a fresh connection when nothing of a body was sent yet.
      std::string fail_code;
      std::string fail_detail;
      int fail_status = 0;
      bool retry = false;
      for (int attempt = 0;; ++attempt) {
        bool reused = upstream->reused;
        bool ok = co_await write_upstream(*upstream, asio::buffer(up_wire), route.read_timeout);
        bool body_started = false;
        if (ok && body_buffered) {
          body_started = true;
          if (shadow) shadow_body = ex.request_body;
          tee_request_body(ex.request_body);
          ok = co_await write_upstream(*upstream, asio::buffer(ex.request_body), route.read_timeout);
        } else if (ok && has_body) {
          body_started = true;
          if (shadow) {
            shadow_body.clear();
            shadow_body_over = false;
            shadow_body_cap = shadow->max_body;
            body_tee = &shadow_body;
          }
          request_throttle = body.request_throttle;
          auto sent = co_await forward_request_body(framing, req_out, expect_continue, route.read_timeout, bytes_in);
          if (sent == BodySend::ClientFailed) {
            drop_upstream();
            auto [st, msg] = body_error;
            if (st == 0) co_return finish(false);
            status = st;
            error_code = st == 408 ? cause::kTimeout : cause::kBadRequest;
            log_line("rproxy: " + std::to_string(st) + " from " + client_ip + ": " + msg);
            {
              auto err = error_response(st, error_code, msg);
              co_await send_local(ex, err, false, bytes_out);
            }
            co_await lingering_close();
            co_return finish(false);
          }
          if (sent == BodySend::TooLarge) {
            drop_upstream();
            status = 413;
            error_code = cause::kBodyTooLarge;
            {
              auto err = error_response(413, cause::kBodyTooLarge, "request body exceeds the configured limit");
              co_await send_local(ex, err, false, bytes_out);
            }
            co_return finish(false);
          }
          ok = sent == BodySend::Ok;
          // An upstream may answer before it has read the whole body (413, 401) and close: that answer
          // belongs to the client, not a 502. The request was cut short, so nothing is reused afterwards.
          if (sent == BodySend::UpstreamFailed) {
            request_cut_short = true;
            keep_alive = false;
            auto grace = std::min<Millis>(route.read_timeout, Millis(2000));
            rp = co_await read_response_head(ex, grace, fail_status, fail_code, fail_detail);
            if (rp.status == ParseStatus::Complete) break;
            fail_status = 502;
            fail_code = cause::kUpstreamClosed;
            fail_detail = "upstream " + url.text + " closed the connection while the request body was sent";
          }
        }
        if (ok) {
          rp = co_await read_response_head(ex, route.read_timeout, fail_status, fail_code, fail_detail);
          if (rp.status == ParseStatus::Complete) break;
        } else if (!request_cut_short) {
          fail_status = 502;
          fail_code = cause::kUpstreamClosed;
          fail_detail = "upstream " + url.text + " closed the connection while the request was sent";
        }
        bool nothing_received = upstream && upstream->buf.empty();
        if (attempt == 0 && reused && idempotent && !body_started && nothing_received &&
            fail_code == cause::kUpstreamClosed) {
          drop_upstream();
          std::string d;
          auto c2 = co_await connect_upstream(url, route_rt, d);
          if (c2 == ConnectResult::Ok && !upstream->reused) continue;
          if (c2 == ConnectResult::Ok) {
            drop_upstream();
            c2 = co_await connect_upstream(url, route_rt, d);
            if (c2 == ConnectResult::Ok) continue;
          }
          fail_detail = d;
          if (c2 == ConnectResult::Timeout) {
            fail_status = 504;
            fail_code = cause::kConnectTimeout;
          } else {
            fail_status = 502;
            fail_code = c2 == ConnectResult::Refused     ? cause::kConnectRefused
                        : c2 == ConnectResult::TlsFailed ? cause::kUpstreamTls
                                                         : cause::kConnectFailed;
          }
        }
        drop_upstream();
        active.end();
        if (closed) co_return finish(false);  // the client is gone (or a forced drain): not the upstream's fault
        if (fail_code != cause::kBadResponse)
          if (auto line = health.record_failure(ui, SteadyClock::now()); !line.empty()) log_line(line);
        std::string condition = fail_code == cause::kResponseTimeout ? "timeout"
                                : fail_code == cause::kUpstreamClosed ? "reset"
                                : fail_code == cause::kBadResponse    ? "bad_response"
                                                                      : "connect";
        if (!request_cut_short) {
          failed_here[ui] = true;
          if (auto wait = next_try(condition, fail_detail)) {
            co_await sleep(*wait);
            retry = true;
            break;
          }
        }
        shared.upstream_errors.fetch_add(1, std::memory_order_relaxed);
        error_code = fail_code;
        log_line("rproxy: " + std::to_string(fail_status) + " " + method + " " + log_target + ": " + fail_detail);
        if (has_body && !body_buffered) keep_alive = false;  // its unread rest would be taken for a request
        auto err = error_response(fail_status, fail_code, fail_detail);
        bool keep = co_await respond_locally(ex, stages, ran, err, body, keep_alive, status, bytes_out, error_code);
        co_return finish(keep);
      }
      if (retry) continue;
      health.record_success(ui);
      // A 5xx the route retries on: discard it (closing the connection, so its body never has to be read).
      int st = rp.head.status;
      if (st >= 500 && !request_cut_short && (retry_on("5xx") || retry_on(std::to_string(st)))) {
        if (auto wait = next_try(retry_on("5xx") ? "5xx" : std::to_string(st),
                                 "upstream " + url.text + " answered " + std::to_string(st))) {
          drop_upstream();
          active.end();
          failed_here[ui] = true;
          co_await sleep(*wait);
          continue;
        }
      }
      break;
    }
    const Url& url = route.upstreams[ui].url;

    ResponseHead resp = std::move(rp.head);
    // A 101 answers an Upgrade: from here on the connection is a byte tunnel.
    if (resp.status == 101) {
      if (!upgrade) {
        drop_upstream();
        error_code = cause::kBadResponse;
        auto err = error_response(502, cause::kBadResponse, "upstream switched protocols unasked");
        bool keep = co_await respond_locally(ex, stages, ran, err, body, false, status, bytes_out, error_code);
        co_return finish(keep);
      }
      status = 101;
      prepare_client_response(resp, true);
      ex.response = resp;
      auto wire = serialize(resp);
      if (!co_await write_client(asio::buffer(wire))) {
        drop_upstream();
        co_return finish(false);
      }
      finish(false);
      co_await tunnel();
      co_return false;
    }

    std::string resp_error;
    auto resp_framing = response_framing(resp, ex.request.method, &resp_error);
    if (!resp_error.empty()) {
      drop_upstream();
      shared.upstream_errors.fetch_add(1, std::memory_order_relaxed);
      error_code = cause::kBadResponse;
      log_line("rproxy: 502 " + ex.request.method + " " + log_target + ": " + resp_error);
      auto err = error_response(502, cause::kBadResponse, resp_error);
      bool keep = co_await respond_locally(ex, stages, ran, err, body, keep_alive, status, bytes_out, error_code);
      co_return finish(keep);
    }
    bool upstream_reusable = !request_cut_short && resp.version_minor == 1 &&
                             !resp.headers.has_token("Connection", "close") &&
                             resp_framing.kind != BodyFraming::Kind::UntilClose;

    if (cur_tees)
      for (auto& t : *cur_tees) t->response_head(resp);
    CapturedResponse primary_capture;
    BodyCapture capture;
    if (shadow) {
      primary_capture.status = resp.status;
      primary_capture.headers = resp.headers;
      capture = BodyCapture{&primary_capture, shadow->capture, {}};
      resp_capture = &capture;
    }

    auto upstream_cl = resp.headers.get("Content-Length");
    std::string saved_cl = upstream_cl ? std::string(*upstream_cl) : std::string();
    prepare_client_response(resp, false);
    // Response stages see the body's length (the compressor skips small bodies); the framing is decided
    // again below from the upstream's own.
    if (resp_framing.kind == BodyFraming::Kind::Length)
      resp.headers.set("Content-Length", std::to_string(resp_framing.length));
    else if (!saved_cl.empty() && (ex.request.method == "HEAD" || resp.status == 304))
      resp.headers.set("Content-Length", saved_cl);
    const int upstream_status = resp.status;
    ex.response = std::move(resp);  // the stages' copy; the one sent is copied from it after them
    std::optional<LocalResponse> replace;
    if (!co_await run_response_stages(stages, ran, ex, body, replace)) {
      drop_upstream();
      reset_client();
      co_return finish(false);
    }
    if (replace) {
      drop_upstream();
      if (!start_encoder(body.content_coding, body.coding_level, replace->headers,
                         replace->body_file.empty() ? replace->body.size() : replace->body_file_size))
        replace->headers.remove("Content-Encoding");
      bool keep = co_await write_local_after_stages(ex, *replace, keep_alive, status, bytes_out);
      co_return finish(keep);
    }
    if (ex.response->status != upstream_status) {
      // The body framing was decided from the upstream's status; a stage may not turn a response with a
      // body into a bodiless one (or back), which would desynchronise the client connection.
      auto bodyless = [&](int st) { return ex.request.method == "HEAD" || st < 200 || st == 204 || st == 304; };
      if (bodyless(ex.response->status) != bodyless(upstream_status)) {
        drop_upstream();
        error_code = cause::kStageFailed;
        log_line("rproxy: a response stage changed status " + std::to_string(upstream_status) + " to " +
                 std::to_string(ex.response->status) + ", which changes the body framing");
        auto err = error_response(500, cause::kStageFailed, "a response stage changed the body framing");
        bool keep = co_await write_local_after_stages(ex, err, false, status, bytes_out);
        co_return finish(keep);
      }
    }
    resp = *ex.response;
    status = resp.status;
    if (resp_framing.kind != BodyFraming::Kind::None &&
        !start_encoder(body.content_coding, body.coding_level, resp.headers,
                       resp_framing.kind == BodyFraming::Kind::Length ? resp_framing.length : 0))
      resp.headers.remove("Content-Encoding");

    // Framing towards the client.
    OutFraming out = OutFraming::None;
    switch (resp_framing.kind) {
      case BodyFraming::Kind::None:
        if ((ex.request.method == "HEAD" || resp.status == 304) && !saved_cl.empty() && body.content_coding.empty())
          resp.headers.set("Content-Length", saved_cl);
        break;
      case BodyFraming::Kind::Length:
        if (encoder) {
          // The compressed length is not known before the end: chunked (or until close for HTTP/1.0).
          resp.headers.remove("Content-Length");
          if (ex.request.version_minor == 1) {
            resp.headers.set("Transfer-Encoding", "chunked");
            out = OutFraming::Chunked;
          } else {
            out = OutFraming::UntilClose;
            keep_alive = false;
          }
          break;
        }
        resp.headers.set("Content-Length", std::to_string(resp_framing.length));
        out = OutFraming::Length;
        break;
      case BodyFraming::Kind::Chunked:
      case BodyFraming::Kind::UntilClose:
        if (ex.request.version_minor == 1) {
          resp.headers.set("Transfer-Encoding", "chunked");
          out = OutFraming::Chunked;
        } else {
          out = OutFraming::UntilClose;
          keep_alive = false;
        }
        break;
    }
    if (shared.draining.load(std::memory_order_relaxed) || body.close_delay.count() > 0) keep_alive = false;
    if (!keep_alive) {
      resp.headers.set("Connection", "close");
    } else if (ex.request.version_minor == 0) {
      resp.headers.set("Connection", "keep-alive");  // HTTP/1.0 closes unless told otherwise
    }
    auto wire = serialize(resp);
    // A small response usually arrived whole with its head: send head and body in one write.
    bool whole = out == OutFraming::Length && upstream->buf.size() >= resp_framing.length && !body.paced() && !encoder;
    bool written = false;
    if (whole) {
      auto n = static_cast<std::size_t>(resp_framing.length);
      if (resp_capture) resp_capture->add(upstream->buf.view().substr(0, n));
      tee_response_body(upstream->buf.view().substr(0, n));
      written = co_await write_client(asio::buffer(wire), asio::buffer(upstream->buf.view().data(), n));
      upstream->buf.consume(n);
      bytes_out = n;
      resp_framing.kind = BodyFraming::Kind::None;
    } else {
      written = co_await write_client(asio::buffer(wire));
    }
    if (!written) {
      drop_upstream();
      close_client();
      co_return finish(false);
    }

    auto stream = co_await stream_response(resp_framing, out, route.read_timeout, body, bytes_out);
    if (stream != StreamResult::Complete) {
      // Truncated: never pass it off as complete. The client connection closes without a final chunk.
      drop_upstream();
      if (stream == StreamResult::UpstreamFailed) {
        error_code = cause::kUpstreamClosed;
        log_line("rproxy: response from " + url.text + " for " + ex.request.method + " " + log_target +
                 " ended early; passed on truncated");
      }
      if (stream == StreamResult::Truncated && body.reset_after_truncate) {
        // An RST discards what the socket has not sent yet: let the cut body leave first.
        co_await wait_sent(std::min<Millis>(limits().write_timeout, Millis(2000)));
        reset_client();
      } else {
        close_client();
      }
      if (shadow) skip_shadow(*shadow, ex, "the primary response did not complete");
      shadow_done = true;
      co_return finish(false);
    }
    if (shadow) {
      primary_capture.duration_ms = std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count();
      launch_shadow(*shadow, ex, route_rt, up, framing.kind != BodyFraming::Kind::None || had_content_length,
                    request_cut_short, primary_capture);
    }
    shadow_done = true;
    if (upstream_reusable && upstream && upstream->buf.empty()) {
      upstream->buf.release();
      worker.pool.put(std::move(upstream));
    } else {
      drop_upstream();
    }
    if (body.close_delay.count() > 0) {
      // Slow close: everything was sent and the exchange is complete (logged, counted); only the FIN (from
      // the lingering close after this exchange) is late. A drain does not wait for it.
      finish(false);
      auto until = SteadyClock::now() + body.close_delay;
      while (!closed && !shared.draining.load(std::memory_order_relaxed) && SteadyClock::now() < until)
        co_await sleep(std::min<Millis>(Millis(100), std::chrono::ceil<Millis>(until - SteadyClock::now())));
      // The response went out long ago, so a plain close cannot cost the client its answer.
      close_client();
      co_return false;
    }
    co_return finish(keep_alive);
  }

  // ---- shadow copies --------------------------------------------------------------------------------

  static constexpr int kMaxShadowsPerWorker = 64;

  void skip_shadow(const ShadowRequest& sr, const Exchange& ex, const std::string& why) {
    try {
      sr.observer->on_shadow_skipped(ex, why);
    } catch (...) {
      log_line("rproxy: shadow observer failed");
    }
  }

  // Sends the copy of a finished exchange to the shadow upstream, detached from this connection.
  void launch_shadow(const ShadowRequest& sr, const Exchange& ex, const RouteRuntime& route_rt,
                     const RequestHead& up_head, bool had_body, bool request_cut_short, CapturedResponse& primary) {
    if (!sr.observer) return;
    const Route& route = *route_rt.spec;
    if (shadow_body_over) return skip_shadow(sr, ex, "request body over the shadow capture cap");
    const UpstreamSpec* target = nullptr;
    for (const auto& u : route.upstreams)
      if (u.name == sr.upstream || u.url.text == sr.upstream) {
        target = &u;
        break;
      }
    if (!target) return skip_shadow(sr, ex, "route " + route.name + " has no upstream " + sr.upstream);
    if (ex.upstream == target->url.text) return skip_shadow(sr, ex, "the primary failed over to the shadow upstream");
    if (request_cut_short)
      return skip_shadow(sr, ex, "the upstream answered before the whole request body was sent");
    if (worker.shadows_in_flight.load(std::memory_order_relaxed) >= kMaxShadowsPerWorker)
      return skip_shadow(sr, ex, "shadow queue full");
    auto job = std::make_unique<ShadowJob>();
    RequestHead head = up_head;
    head.headers.remove("Transfer-Encoding");
    head.headers.remove("Expect");
    if (had_body) head.headers.set("Content-Length", std::to_string(shadow_body.size()));
    for (const auto& h : sr.headers) head.headers.set(h.name, h.value);
    if (route.host_header == HostHeader::Upstream) head.headers.set("Host", host_header_value(target->url));
    head.headers.set("Connection", "close");
    job->head = serialize(head);
    job->body = std::move(shadow_body);
    shadow_body.clear();
    job->runtime = rt;
    job->exchange = ex;
    job->primary = std::move(primary);
    job->url = target->url;
    if (target->url.scheme == "https") {
      job->tls = TlsTarget{route_rt.upstream_tls, route.upstream_tls.server_name, !route.upstream_tls.insecure};
    }
    job->capture_cap = sr.capture;
    job->timeout = sr.timeout;
    job->observer = sr.observer;
    job->in_flight = &worker.shadows_in_flight;
    worker.shadows_in_flight.fetch_add(1, std::memory_order_relaxed);
    asio::co_spawn(worker.ctx, run_shadow(job.release()), asio::detached);
  }

  // Local response (from a stage or an error) after the request stages that ran.
  awaitable<bool> respond_locally(Exchange& ex, const std::vector<Stage*>& stages, std::size_t ran, LocalResponse& r,
                                  BodyControl& body, bool keep_alive, int& status, std::size_t& bytes_out,
                                  std::string& error_code) {
    ex.response = ResponseHead{1, r.status, std::string(reason_phrase(r.status)), r.headers};
    // Response stages see the body's length, as for upstream responses (send_local sets the real one).
    ex.response->headers.set("Content-Length",
                             std::to_string(r.body_file.empty() ? r.body.size() : r.body_file_size));
    std::optional<LocalResponse> replace;
    if (!co_await run_response_stages(stages, ran, ex, body, replace)) {
      reset_client();
      co_return false;
    }
    if (replace) {
      r = std::move(*replace);
    } else {
      r.status = ex.response->status;
      r.headers = ex.response->headers;
    }
    if (!start_encoder(body.content_coding, body.coding_level, r.headers,
                       r.body_file.empty() ? r.body.size() : r.body_file_size))
      r.headers.remove("Content-Encoding");
    if (auto e = r.headers.get("X-Rproxy-Error")) error_code = std::string(*e);
    bool keep = co_await write_local_after_stages(ex, r, keep_alive, status, bytes_out);
    co_return keep;
  }

  awaitable<bool> write_local_after_stages(Exchange& ex, LocalResponse& r, bool keep_alive, int& status,
                                           std::size_t& bytes_out) {
    status = r.status;
    if (shared.draining.load(std::memory_order_relaxed)) keep_alive = false;
    if (encoder && !r.body_file.empty() && ex.request.version_minor == 0) keep_alive = false;
    r.headers.remove("Connection");
    bool sent = co_await send_local(ex, r, keep_alive, bytes_out);
    co_return sent && keep_alive;
  }

  enum class BodySend { Ok, UpstreamFailed, ClientFailed, TooLarge };
  // Shadow copies: the request body is teed here (up to the cap) and the primary's response body captured.
  std::string* body_tee = nullptr;
  std::string shadow_body;
  std::uint64_t shadow_body_cap = 0;
  bool shadow_body_over = false;
  BodyCapture* resp_capture = nullptr;
  std::vector<std::shared_ptr<ExchangeTee>>* cur_tees = nullptr;  // Exchange::tees of the exchange in progress
  void tee_request_body(std::string_view piece) {
    if (cur_tees)
      for (auto& t : *cur_tees) t->request_body(piece);
  }
  void tee_response_body(std::string_view piece) {
    if (cur_tees)
      for (auto& t : *cur_tees) t->response_body(piece);
  }
  // Why the client side of a request body failed (status 0: the client went away, nothing to answer).
  std::pair<int, std::string> body_error{0, {}};
  std::uint64_t request_throttle = 0;  // bytes/s for the request body of the exchange in progress (0 = off)

  awaitable<BodySend> forward_request_body(BodyFraming framing, OutFraming out, bool expect_continue,
                                           Millis upstream_timeout, std::uint64_t& bytes_in) {
    BodyReader reader(framing);
    std::string piece;
    bool sent_continue = false;
    auto t_paced = SteadyClock::now();
    std::uint64_t sent_paced = 0;
    auto read_more = [&]() -> awaitable<ReadStatus> {
      if (expect_continue && !sent_continue) {
        sent_continue = true;
        static constexpr std::string_view k100 = "HTTP/1.1 100 Continue\r\n\r\n";
        if (!co_await write_client(asio::buffer(k100.data(), k100.size()))) co_return ReadStatus::Error;
      }
      auto n = co_await read_client(limits().body_timeout);
      if (n > 0) co_return ReadStatus::Data;
      co_return client_deadline.expired() ? ReadStatus::Timeout : ReadStatus::Eof;
    };
    while (true) {
      auto st = co_await read_body(reader, in, piece, read_more);
      if (st == ReadStatus::Done) break;
      if (st == ReadStatus::BadFraming) {
        body_error = {400, "bad chunked request body: " + reader.error};
        co_return BodySend::ClientFailed;
      }
      if (st == ReadStatus::Timeout) {
        body_error = {408, "request body not received in time"};
        co_return BodySend::ClientFailed;
      }
      if (st != ReadStatus::Data) co_return BodySend::ClientFailed;
      bytes_in += piece.size();
      if (limits().max_body && bytes_in > limits().max_body) co_return BodySend::TooLarge;
      tee_request_body(piece);
      if (body_tee && !shadow_body_over) {
        if (body_tee->size() + piece.size() > shadow_body_cap) {
          shadow_body_over = true;
          body_tee->clear();
        } else {
          body_tee->append(piece);
        }
      }
      if (request_throttle) {
        // Pace the upload in slices of a tenth of a second's worth.
        std::size_t slice = std::max<std::size_t>(1, static_cast<std::size_t>(request_throttle / 10));
        for (std::size_t off = 0; off < piece.size(); off += slice) {
          std::string part = piece.substr(off, slice);
          sent_paced += part.size();
          auto due = t_paced + std::chrono::microseconds(sent_paced * 1000000 / request_throttle);
          auto now = SteadyClock::now();
          if (due > now) co_await sleep(std::chrono::ceil<std::chrono::milliseconds>(due - now));
          upstream_deadline.arm(upstream_timeout);
          if (!co_await write_piece(upstream->stream, upstream_deadline, out, part)) co_return BodySend::UpstreamFailed;
        }
        continue;
      }
      upstream_deadline.arm(upstream_timeout);
      if (!co_await write_piece(upstream->stream, upstream_deadline, out, piece)) co_return BodySend::UpstreamFailed;
    }
    if (!co_await write_end(upstream->stream, upstream_deadline, out)) co_return BodySend::UpstreamFailed;
    co_return BodySend::Ok;
  }

  // Reads a whole request body into the exchange (up to kBufferedBodyCap; beyond that only its size and
  // digest are kept), sending 100 Continue first when asked.
  awaitable<BodySend> buffer_request_body(BodyFraming framing, bool expect_continue, Exchange& ex,
                                          std::uint64_t& bytes_in) {
    BodyReader reader(framing);
    std::string piece;
    bool sent_continue = false;
    Sha256 sha;
    auto read_more = [&]() -> awaitable<ReadStatus> {
      if (expect_continue && !sent_continue) {
        sent_continue = true;
        static constexpr std::string_view k100 = "HTTP/1.1 100 Continue\r\n\r\n";
        if (!co_await write_client(asio::buffer(k100.data(), k100.size()))) co_return ReadStatus::Error;
      }
      auto n = co_await read_client(limits().body_timeout);
      if (n > 0) co_return ReadStatus::Data;
      co_return client_deadline.expired() ? ReadStatus::Timeout : ReadStatus::Eof;
    };
    ex.request_body_buffered = true;
    while (true) {
      auto st = co_await read_body(reader, in, piece, read_more);
      if (st == ReadStatus::Done) break;
      if (st == ReadStatus::BadFraming) {
        body_error = {400, "bad chunked request body: " + reader.error};
        co_return BodySend::ClientFailed;
      }
      if (st == ReadStatus::Timeout) {
        body_error = {408, "request body not received in time"};
        co_return BodySend::ClientFailed;
      }
      if (st != ReadStatus::Data) {
        body_error = {0, {}};
        co_return BodySend::ClientFailed;
      }
      bytes_in += piece.size();
      if (limits().max_body && bytes_in > limits().max_body) co_return BodySend::TooLarge;
      sha.update(piece);
      if (ex.request_body_complete && ex.request_body.size() + piece.size() <= kBufferedBodyCap) {
        ex.request_body.append(piece);
      } else {
        ex.request_body_complete = false;
        std::string().swap(ex.request_body);
      }
    }
    ex.request_body_size = bytes_in;
    ex.request_body_sha256 = sha.hex_digest();
    co_return BodySend::Ok;
  }

  // Reads the final response head (forwarding interim 1xx responses other than 100, which rproxy already
  // produced itself, to HTTP/1.1 clients).
  awaitable<ResponseParseResult> read_response_head(Exchange& ex, Millis timeout, int& fail_status,
                                                    std::string& fail_code, std::string& fail_detail) {
    ParseLimits limits = rt->limits;
    limits.max_head_bytes = 64 * 1024;
    limits.max_field_line = 64 * 1024;
    limits.max_request_line = 64 * 1024;
    auto deadline = SteadyClock::now() + timeout;
    while (true) {
      ResponseParseResult rp;
      while (true) {
        if (!upstream->buf.empty()) {
          rp = parse_response_head(upstream->buf, limits);
          if (rp.status != ParseStatus::Incomplete) break;
        }
        auto left = deadline - SteadyClock::now();
        std::size_t n = 0;
        if (left > SteadyClock::duration::zero()) n = co_await read_upstream(*upstream, left);
        if (n == 0) {
          if (upstream_deadline.expired() || left <= SteadyClock::duration::zero()) {
            fail_status = 504;
            fail_code = cause::kResponseTimeout;
            fail_detail = "no response from " + ex.upstream + " within " + format_duration(timeout);
          } else {
            fail_status = 502;
            fail_code = cause::kUpstreamClosed;
            fail_detail = "upstream " + ex.upstream + " closed the connection without a complete response";
          }
          rp.status = ParseStatus::Error;
          co_return rp;
        }
      }
      if (rp.status == ParseStatus::Error) {
        fail_status = 502;
        fail_code = cause::kBadResponse;
        fail_detail = "bad response from " + ex.upstream + ": " + rp.error;
        co_return rp;
      }
      upstream->buf.consume(rp.consumed);
      if (rp.head.status >= 200 || rp.head.status == 101) co_return rp;
      if (rp.head.status != 100 && ex.request.version_minor == 1) {
        prepare_client_response(rp.head, false);
        auto wire = serialize(rp.head);
        co_await write_client(asio::buffer(wire));
      }
    }
  }

  enum class StreamResult { Complete, UpstreamFailed, ClientFailed, Truncated };

  awaitable<StreamResult> stream_response(BodyFraming framing, OutFraming out, Millis read_timeout,
                                          const BodyControl& control, std::size_t& bytes_out) {
    BodyReader reader(framing);
    std::string piece;
    auto read_more = [&]() -> awaitable<ReadStatus> {
      auto n = co_await read_upstream(*upstream, read_timeout);
      if (n > 0) co_return ReadStatus::Data;
      if (upstream_deadline.expired()) co_return ReadStatus::Timeout;
      co_return last_read_eof ? ReadStatus::Eof : ReadStatus::Error;
    };
    auto t_start = SteadyClock::now();
    std::uint64_t slice_used = 0;
    while (true) {
      auto st = co_await read_body(reader, upstream->buf, piece, read_more);
      if (st == ReadStatus::Done) break;
      if (st != ReadStatus::Data) co_return StreamResult::UpstreamFailed;
      if (resp_capture) resp_capture->add(piece);
      tee_response_body(piece);
      bool cut = false;
      if (control.truncate_after && bytes_out + piece.size() >= *control.truncate_after) {
        piece.resize(static_cast<std::size_t>(*control.truncate_after - bytes_out));
        cut = true;
      }
      if (control.throttle || control.slice_bytes) {
        // Slicing: slice_bytes at a time with slice_delay between slices. Throttle: parts of a tenth of a
        // second's worth, each leaving when its last byte is due, so N bytes take N / rate, never less.
        std::size_t off = 0;
        while (off < piece.size()) {
          std::size_t n = piece.size() - off;
          if (control.slice_bytes) {
            if (slice_used >= control.slice_bytes) {
              // A pause between slices earns the bandwidth limit no credit: the rate holds within slices.
              auto paused = SteadyClock::now();
              if (control.slice_delay.count() > 0) co_await sleep(control.slice_delay);
              t_start += SteadyClock::now() - paused;
              slice_used = 0;
            }
            n = std::min<std::size_t>(n, static_cast<std::size_t>(control.slice_bytes - slice_used));
          }
          if (control.throttle) {
            n = std::min<std::size_t>(n, std::max<std::size_t>(1, static_cast<std::size_t>(control.throttle / 10)));
            auto due = t_start + std::chrono::microseconds((bytes_out + n) * 1000000 / control.throttle);
            auto now = SteadyClock::now();
            if (due > now) co_await sleep(std::chrono::ceil<std::chrono::milliseconds>(due - now));
          }
          std::string part = piece.substr(off, n);
          if (!co_await write_body_piece(out, part)) co_return StreamResult::ClientFailed;
          bytes_out += n;
          off += n;
          slice_used += n;
        }
      } else {
        const bool last = framing.kind == BodyFraming::Kind::Length && bytes_out + piece.size() >= framing.length;
        const bool flush = !last && upstream->buf.empty();
        if (!co_await write_body_piece(out, piece, flush)) co_return StreamResult::ClientFailed;
        bytes_out += piece.size();
      }
      if (cut) co_return StreamResult::Truncated;
    }
    if (!co_await write_body_end(out)) co_return StreamResult::ClientFailed;
    co_return StreamResult::Complete;
  }

  // Bidirectional byte pump for Upgrade (WebSocket) after the 101.
  awaitable<void> tunnel() {
    using namespace asio::experimental::awaitable_operators;
    auto up = std::move(upstream);
    tunnel_up = &up->stream;
    std::string to_up(in.view());
    in.clear();
    std::string to_client(up->buf.view());
    up->buf.clear();
    co_await (pump(client, up->stream, to_up) && pump(up->stream, client, to_client));
    tunnel_up = nullptr;
    std::error_code ec;
    up->sock().close(ec);
    close_client();
  }

  awaitable<void> pump(Stream& from, Stream& to, std::string& pending) {
    std::error_code ec;
    if (!pending.empty()) {
      asio::const_buffer first = asio::buffer(pending);
      if (co_await to.write(&first, 1)) {
        from.socket().close(ec);
        co_return;
      }
    }
    std::vector<char> buf(16 * 1024);
    while (true) {
      auto [rec, n] = co_await from.read_some(buf.data(), buf.size());
      if (rec) {
        // EOF: pass the half-close on; anything else ends both directions.
        if (rec == asio::error::eof) {
          co_await to.shutdown_send();
        } else {
          to.socket().close(ec);
          from.socket().close(ec);
        }
        co_return;
      }
      // A peer that stops reading (zero window) is dropped after the write timeout.
      Deadline& dl = &to == &client ? client_deadline : upstream_deadline;
      dl.arm(limits().write_timeout);
      asio::const_buffer chunk = asio::buffer(buf.data(), n);
      auto wec = co_await to.write(&chunk, 1);
      dl.disarm();
      if (wec) {
        from.socket().close(ec);
        to.socket().close(ec);
        co_return;
      }
    }
  }

  // ---- connection loop ------------------------------------------------------------------------------

  // Connection stages (faults at accept): refuse with an RST, close, hold, or delay reading (slow open).
  // Returns false when the connection must not be served.
  awaitable<bool> on_connect() {
    ConnectionInfo info{connection_id, client_ip};
    for (auto* st : rt->all_stages) {
      auto d = call_stage([&] { return st->on_connect(info); });
      if (d.delay.count() > 0) co_await sleep(d.delay);
      switch (d.kind) {
        case Decision::Kind::Reset:
          reset_client();
          co_return false;
        case Decision::Kind::Close:
          co_return false;
        case Decision::Kind::Hang:
          co_await hang(d.hang_for);
          close_client();
          co_return false;
        default:
          break;
      }
    }
    co_return true;
  }

  // Waits (polling, at most `limit`) until the kernel has sent everything written to the client socket.
  awaitable<void> wait_sent(Millis limit) {
    auto until = SteadyClock::now() + limit;
    while (!closed && SteadyClock::now() < until) {
      int queued = 0;
      if (::ioctl(client.socket().native_handle(), SIOCOUTQ, &queued) != 0 || queued == 0) co_return;
      co_await sleep(Millis(5));
    }
  }

  // Holds the connection without answering: reads and discards until the client closes, a drain starts,
  // or `limit` passes (0 = no limit). Reads in short slices so a drain never waits on a held connection.
  awaitable<void> hang(Millis limit) {
    auto until = limit.count() > 0 ? SteadyClock::now() + limit : SteadyClock::time_point::max();
    while (!closed && !shared.draining.load(std::memory_order_relaxed)) {
      in.clear();
      auto left = until - SteadyClock::now();
      if (left <= SteadyClock::duration::zero()) break;
      auto n = co_await read_client(std::min<SteadyClock::duration>(left, Millis(250)));
      if (n == 0 && !client_deadline.expired()) break;  // the client closed or reset
    }
  }

  // ---- TLS listeners ---------------------------------------------------------------------------------

  // Peeks at the first byte (a TLS handshake starts with 0x16), then runs the handshake, all within the
  // head deadline. A plain HTTP request is served in the clear, only to say where HTTPS is.
  awaitable<bool> accept_tls() {
    client_deadline.arm(limits().head_timeout);
    unsigned char first = 0;
    while (true) {
      auto n = ::recv(client.socket().native_handle(), &first, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n == 1) break;
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        client_deadline.disarm();
        close_client();
        co_return false;
      }
      auto ec = co_await client.wait_readable();
      if (ec || client_deadline.expired() || closed) {
        client_deadline.disarm();
        close_client();
        co_return false;
      }
    }
    if (first != 0x16) {
      client_deadline.disarm();
      plain_on_tls = true;
      co_return true;
    }
    client.start_tls_server(rt->server_tls.get());
    bool ok = co_await client.handshake();
    client_deadline.disarm();
    if (!ok) {
      auto why = client.error_text();
      if (why.find("unknown ca") != std::string::npos || why.find("bad certificate") != std::string::npos)
        why += " (the client does not trust rproxy's certificate: see `rproxy ca trust` and `rproxy ca env`)";
      log_line("rproxy: TLS handshake with " + client_ip + " failed: " + why);
      close_client();
      co_return false;
    }
    co_return true;
  }

  // https_url: where this request belongs on the HTTPS listener (Host's name, the HTTPS port, the target).
  std::string https_url(const RequestHead& req, std::uint16_t port) const {
    std::string host = listener.host;
    if (auto h = req.headers.get("Host"); h && !h->empty()) {
      std::string v(*h);
      auto close = v.find(']');
      auto colon = v.rfind(':');
      host = v.front() == '[' ? v.substr(0, close == std::string::npos ? v.size() : close + 1)
                              : (colon == std::string::npos ? v : v.substr(0, colon));
    } else if (host.find(':') != std::string::npos) {
      host = "[" + host + "]";
    }
    std::string target = req.target;
    if (target.empty() || target.front() != '/') {  // absolute-form or "*": keep the path only
      auto scheme = target.find("://");
      auto slash = scheme == std::string::npos ? std::string::npos : target.find('/', scheme + 3);
      target = slash == std::string::npos ? "/" : target.substr(slash);
    }
    return "https://" + host + (port == 443 ? "" : ":" + std::to_string(port)) + target;
  }

  awaitable<void> answer_plain_request(const RequestHead& req) {
    if (listener.redirect_to_port != 0) {
      auto url = https_url(req, listener.redirect_to_port);
      LocalResponse r;
      r.status = 308;
      r.headers.add("Location", url);
      r.headers.add("Content-Type", "text/plain; charset=utf-8");
      r.body = "308 Permanent Redirect: " + url + "\n";
      co_await reject_with(r, cause::kRedirectToHttps, "", req.method, req.target, false);
      co_return;
    }
    auto url = https_url(req, listener.port);
    auto r = error_response(400, cause::kHttpOnHttpsPort,
                            "this port speaks HTTPS, and a plain HTTP request arrived; use " + url);
    co_await reject_with(r, cause::kHttpOnHttpsPort, "plain HTTP request on the HTTPS port", req.method, req.target,
                         true);
  }

  awaitable<void> loop() {
    if (!co_await on_connect()) co_return;
    if (listener.tls && !co_await accept_tls()) co_return;
    while (!closed) {
      if (shared.draining.load(std::memory_order_relaxed) && in.empty()) co_return;
      RequestParseResult pr;
      // A new connection gets the head deadline from accept: silent sockets must not hold a slot for
      // the keep-alive idle time.
      bool got_first = !in.empty() || first_request;
      first_request = false;
      auto head_deadline = SteadyClock::now() + limits().head_timeout;
      while (true) {
        if (!in.empty()) {
          pr = parse_request_head(in, rt->limits);
          if (pr.status != ParseStatus::Incomplete) break;
        }
        idle = !got_first;
        auto timeout = got_first ? head_deadline - SteadyClock::now() : SteadyClock::duration(limits().idle_timeout);
        std::size_t n = 0;
        if (timeout > SteadyClock::duration::zero()) n = co_await read_client(timeout);
        idle = false;
        if (n == 0) {
          bool timed_out = client_deadline.expired() || timeout <= SteadyClock::duration::zero();
          if (got_first && timed_out && !closed)
            co_await reject(408, cause::kTimeout, "request head not received in time", "", "");
          co_return;
        }
        if (!got_first) {
          got_first = true;
          head_deadline = SteadyClock::now() + limits().head_timeout;
        }
      }
      if (pr.status == ParseStatus::Error) {
        co_await reject(pr.error_status, cause::kBadRequest, pr.error, pr.head.method, pr.head.target);
        co_return;
      }
      in.consume(pr.consumed);
      if (plain_on_tls || listener.redirect_to_port != 0) {
        co_await answer_plain_request(pr.head);
        co_return;
      }
      bool keep = co_await handle(pr.head);
      if (!keep) co_return;

    }
  }
};

ClientConnection::ClientConnection(Worker& worker, tcp::socket sock, const ListenerInfo& listener, std::uint64_t id)
    : impl_(std::make_unique<Impl>(worker, std::move(sock), listener.tls ? "https" : "http", listener)) {
  impl_->connection_id = id;
  worker.connections.insert(this);
}

ClientConnection::~ClientConnection() {
  impl_->worker.connections.erase(this);
  impl_->shared.active.fetch_sub(1, std::memory_order_relaxed);
}

awaitable<void> ClientConnection::run() {
  auto self = shared_from_this();
  try {
    co_await impl_->loop();
  } catch (const std::exception& e) {
    log_line(std::string("rproxy: connection error: ") + e.what());
  }
  impl_->drop_upstream();
  if (!impl_->closed) co_await impl_->lingering_close();
}

void ClientConnection::close_if_idle() {
  if (impl_->idle && impl_->in.empty()) {
    std::error_code ec;
    impl_->client.socket().cancel(ec);
    impl_->closed = true;
  }
}

void ClientConnection::force_close() {
  std::error_code ec;
  impl_->client.socket().close(ec);
  impl_->closed = true;
  if (impl_->upstream) impl_->upstream->sock().close(ec);
  if (impl_->tunnel_up) impl_->tunnel_up->socket().close(ec);
}

}  // namespace rproxy
