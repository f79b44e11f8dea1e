#include "echo_server.hpp"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "httplib_setup.hpp"
#include "rproxy/scenario.hpp"

namespace rproxy {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using Json = nlohmann::ordered_json;  // keeps keys in the documented order instead of sorting them

constexpr std::size_t kRecvChunk = 16 * 1024;
// httplib has no limit on the header section; ours keeps one hostile client from holding unbounded memory.
constexpr std::size_t kMaxHeadBytes = 1024 * 1024;
constexpr std::size_t kPayloadBlock = 64 * 1024;
constexpr std::string_view kPayloadAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static_assert(kPayloadAlphabet.size() == 64 && kPayloadBlock % 64 == 0);
// Past this many connection threads the accept loop waits for one to finish (the kernel backlog holds the
// rest).
constexpr std::size_t kMaxConnectionThreads = 1024;
constexpr std::size_t kKeepAliveMaxCount = 1000;  // never 0: httplib's assert is compiled out
constexpr time_t kKeepAliveTimeoutSec = 15;
// Generous read/write timeouts: tests stall clients on purpose and SSE streams sit idle between events.
constexpr time_t kIoTimeoutSec = 60;
// A WebSocket session may be idle for a long time legitimately, but a vanished peer must not pin a thread
// forever.
constexpr milliseconds kWebSocketIdle{10 * 60 * 1000};
constexpr std::string_view kWebSocketGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

// ---- small ASCII helpers (HTTP tokens are ASCII and compare case-insensitively) ----

char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return ascii_lower(x) == ascii_lower(y); });
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool is_tchar(char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

bool has_forbidden_value_char(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

// for_each_list_element calls fn on every trimmed, non-empty element of a comma-separated list.
template <typename Fn>
void for_each_list_element(std::string_view list, Fn fn) {
  while (!list.empty()) {
    auto comma = list.find(',');
    auto element = trim_ows(list.substr(0, comma));
    if (!element.empty()) fn(element);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
}

bool parse_u64(std::string_view s, std::uint64_t& out) {
  if (s.empty() || s.size() > 19) return false;  // 19 digits always fit in 64 bits
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  out = v;
  return true;
}

std::string in_quotes(std::string_view s) {
  return "\"" + std::string(s) + "\"";
}

std::string dump_json(const Json& doc) {
  // Raw header values and targets may carry non-UTF-8 bytes; JSON cannot, so they become U+FFFD.
  return doc.dump(-1, ' ', false, Json::error_handler_t::replace);
}


// ---- the request head as it arrived (httplib keeps neither order nor raw values) ----

struct RawHead {
  std::string method;
  std::string target;
  std::string version;
  std::vector<std::pair<std::string, std::string>> fields;

  std::size_t count(std::string_view name) const {
    return static_cast<std::size_t>(
        std::count_if(fields.begin(), fields.end(), [&](const auto& f) { return iequals(f.first, name); }));
  }
  std::optional<std::string_view> get(std::string_view name) const {
    for (const auto& f : fields)
      if (iequals(f.first, name)) return std::string_view(f.second);
    return std::nullopt;
  }
  // joined combines every field called name into one list (RFC 9110 §5.3).
  std::string joined(std::string_view name) const {
    std::string out;
    for (const auto& f : fields) {
      if (!iequals(f.first, name)) continue;
      if (!out.empty()) out += ", ";
      out += f.second;
    }
    return out;
  }
  bool has_token(std::string_view name, std::string_view token) const {
    bool found = false;
    for_each_list_element(joined(name),
                          [&](std::string_view element) { found = found || iequals(element, token); });
    return found;
  }
};

struct HeadError {
  int status;
  std::string message;
};

// parse_raw_head parses raw (which ends with the blank line). It is strict where httplib would guess:
// obs-fold, bare CR/LF and whitespace before the colon are rejected instead of being mangled.
std::optional<HeadError> parse_raw_head(std::string_view raw, RawHead& out) {
  auto line_end = raw.find("\r\n");
  std::string_view line = raw.substr(0, line_end);
  auto sp1 = line.find(' ');
  auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
    return HeadError{400, "malformed request line"};
  out.method = std::string(line.substr(0, sp1));
  out.target = std::string(line.substr(sp1 + 1, sp2 - sp1 - 1));
  out.version = std::string(line.substr(sp2 + 1));
  if (!is_token(out.method)) return HeadError{400, "malformed method"};
  if (out.target.empty() || has_forbidden_value_char(out.target))
    return HeadError{400, "malformed request target"};
  if (out.version != "HTTP/1.1" && out.version != "HTTP/1.0")
    return HeadError{505, "only HTTP/1.0 and HTTP/1.1 are supported"};

  std::size_t pos = line_end + 2;
  while (pos < raw.size()) {
    auto end = raw.find("\r\n", pos);
    if (end == std::string_view::npos) return HeadError{400, "unterminated header line"};
    line = raw.substr(pos, end - pos);
    pos = end + 2;
    if (line.empty()) break;
    auto colon = line.find(':');
    if (colon == std::string_view::npos || !is_token(line.substr(0, colon)))
      return HeadError{400, "malformed header line " + in_quotes(line.substr(0, 64))};
    auto value = trim_ows(line.substr(colon + 1));
    if (has_forbidden_value_char(value)) return HeadError{400, "header value with CR, LF or NUL"};
    out.fields.emplace_back(std::string(line.substr(0, colon)), std::string(value));
  }
  return std::nullopt;
}

// ---- per-connection stream: httplib's SocketStream loses its read-ahead between requests ----

// ConnStream lives as long as the connection, so bytes read ahead (a pipelined request, the start of a
// body, WebSocket frames after the handshake) are never lost, and the raw head can be inspected before
// httplib parses it from the same buffer.
class ConnStream final : public httplib::Stream {
 public:
  ConnStream(int fd, milliseconds read_timeout, milliseconds write_timeout)
      : fd_(fd), read_timeout_(read_timeout), write_timeout_(write_timeout) {}

  bool is_readable() const override { return pos_ < buf_.size() || wait_io(POLLIN, read_timeout_); }
  bool is_writable() const override { return wait_io(POLLOUT, write_timeout_); }

  ssize_t read(char* ptr, std::size_t size) override { return read_some(ptr, size, read_timeout_); }

  ssize_t write(const char* ptr, std::size_t size) override {
    std::size_t done = 0;
    while (done < size) {
      // MSG_NOSIGNAL: a client that went away must not kill the process (no reliance on SIG_IGN).
      auto n = ::send(fd_, ptr + done, size - done, MSG_NOSIGNAL);
      if (n > 0) {
        done += static_cast<std::size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (!wait_io(POLLOUT, write_timeout_)) return -1;
      } else {
        return -1;
      }
    }
    return static_cast<ssize_t>(done);
  }
  bool write_all(std::string_view s) { return write(s.data(), s.size()) == static_cast<ssize_t>(s.size()); }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    address_of(::getpeername, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    address_of(::getsockname, ip, port);
  }
  socket_t socket() const override { return fd_; }

  enum class HeadStatus { Ready, Closed, TooLarge };

  // wait_head buffers until a whole request head is available (without consuming it). The first byte may
  // take idle_timeout (a keep-alive wait costs one poll, not httplib's 10 ms polling loop).
  HeadStatus wait_head(milliseconds idle_timeout, std::size_t max_bytes) {
    std::size_t scan = 0;
    for (;;) {
      // Empty lines before a request line are allowed (RFC 9112 §2.2); httplib would answer them with 400.
      while (buf_.size() - pos_ >= 2 && buf_[pos_] == '\r' && buf_[pos_ + 1] == '\n') {
        pos_ += 2;
        scan = 0;
      }
      std::string_view pending(buf_.data() + pos_, buf_.size() - pos_);
      auto at = pending.find("\r\n\r\n", scan);
      if (at != std::string_view::npos) {
        head_size_ = at + 4;
        return HeadStatus::Ready;
      }
      if (pending.size() > max_bytes) return HeadStatus::TooLarge;
      scan = pending.size() >= 3 ? pending.size() - 3 : 0;
      compact();
      if (!wait_io(POLLIN, pending.empty() ? idle_timeout : read_timeout_)) return HeadStatus::Closed;
      if (fill() <= 0) return HeadStatus::Closed;
    }
  }
  std::string_view head() const { return std::string_view(buf_).substr(pos_, head_size_); }
  // replace_head_prefix rewrites the first old_size bytes of the buffered head (used to rename a method).
  void replace_head_prefix(std::size_t old_size, std::string_view replacement) {
    buf_.replace(pos_, old_size, replacement);
    head_size_ = head_size_ - old_size + replacement.size();
  }
  void consume_head() {
    pos_ += head_size_;
    head_size_ = 0;
  }

  // read_exact reads exactly size bytes, each wait bounded by timeout.
  bool read_exact(char* ptr, std::size_t size, milliseconds timeout) {
    while (size > 0) {
      auto n = read_some(ptr, size, timeout);
      if (n <= 0) return false;
      ptr += n;
      size -= static_cast<std::size_t>(n);
    }
    return true;
  }
  // read_line reads one CRLF-terminated line (without the CRLF) of at most max_size bytes.
  bool read_line(std::string& line, std::size_t max_size) {
    line.clear();
    char c = 0;
    while (read_some(&c, 1, read_timeout_) == 1) {
      if (c == '\n' && !line.empty() && line.back() == '\r') {
        line.pop_back();
        return true;
      }
      line.push_back(c);
      if (line.size() > max_size + 1) return false;  // + 1: the CR still to be dropped
    }
    return false;
  }

 private:
  bool wait_io(short events, milliseconds timeout) const {
    auto deadline = Clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
      pollfd p{fd_, events, 0};
      auto r = ::poll(&p, 1, static_cast<int>(std::clamp<long long>(left, 0, 1LL << 30)));
      if (r > 0) return true;  // POLLHUP/POLLERR too: the following recv/send reports what happened
      if (r == 0) return false;
      if (errno != EINTR) return false;
    }
  }

  ssize_t read_some(char* ptr, std::size_t size, milliseconds timeout) {
    if (pos_ == buf_.size()) {
      if (!wait_io(POLLIN, timeout)) return -1;
      // Large reads bypass the buffer; small ones (httplib reads heads byte by byte) refill it.
      if (size >= kRecvChunk) return recv_into(ptr, size);
      auto n = fill();
      if (n <= 0) return n;
    }
    auto n = std::min(size, buf_.size() - pos_);
    std::memcpy(ptr, buf_.data() + pos_, n);
    pos_ += n;
    if (pos_ == buf_.size()) {
      buf_.clear();
      pos_ = 0;
    }
    return static_cast<ssize_t>(n);
  }

  ssize_t recv_into(char* ptr, std::size_t size) {
    for (;;) {
      auto n = ::recv(fd_, ptr, size, 0);
      if (n >= 0 || errno != EINTR) return n < 0 ? -1 : n;
    }
  }

  ssize_t fill() {
    auto old = buf_.size();
    buf_.resize(old + kRecvChunk);
    auto n = recv_into(buf_.data() + old, kRecvChunk);
    buf_.resize(old + static_cast<std::size_t>(std::max<ssize_t>(n, 0)));
    return n;
  }

  void compact() {
    if (pos_ == 0) return;
    buf_.erase(0, pos_);
    pos_ = 0;
  }

  template <typename Fn>
  void address_of(Fn fn, std::string& ip, int& port) const {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    ip.clear();
    port = -1;
    if (fn(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return;
    char text[INET6_ADDRSTRLEN] = {};
    if (addr.ss_family == AF_INET) {
      const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
      ::inet_ntop(AF_INET, &a->sin_addr, text, sizeof(text));
      port = ntohs(a->sin_port);
    } else if (addr.ss_family == AF_INET6) {
      const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
      ::inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof(text));
      port = ntohs(a->sin6_port);
    }
    ip = text;
  }

  int fd_;
  milliseconds read_timeout_;
  milliseconds write_timeout_;
  std::string buf_;
  std::size_t pos_ = 0;
  std::size_t head_size_ = 0;
};

// ---- connection threads ----

// ThreadPerConnectionQueue gives every connection its own thread: httplib's fixed pool lets a handful of
// idle keep-alive clients starve everybody else. The cap turns overload into accept backpressure.
class ThreadPerConnectionQueue final : public httplib::TaskQueue {
 public:
  explicit ThreadPerConnectionQueue(std::size_t max_threads) : max_threads_(max_threads) {}

  void enqueue(std::function<void()> fn) override {
    {
      std::unique_lock lock(mutex_);
      idle_.wait(lock, [&] { return active_ < max_threads_; });
      ++active_;
    }
    auto task = std::make_shared<std::function<void()>>(std::move(fn));
    try {
      std::thread([this, task] {
        (*task)();
        *task = nullptr;  // release what the task captured before shutdown() may return
        finish();
      }).detach();
    } catch (const std::system_error&) {
      // Out of threads: serving this one connection on the accept thread beats dropping it silently.
      (*task)();
      finish();
    }
  }

  void shutdown() override {
    std::unique_lock lock(mutex_);
    idle_.wait(lock, [&] { return active_ == 0; });
  }

 private:
  void finish() {
    // Notify while holding the lock: shutdown() may destroy this queue as soon as it can re-lock.
    std::lock_guard lock(mutex_);
    --active_;
    idle_.notify_all();
  }

  std::size_t max_threads_;
  std::mutex mutex_;
  std::condition_variable idle_;
  std::size_t active_ = 0;
};

// ---- per-request state shared between the connection loop and the handler ----

struct RequestContext {
  ConnStream* stream = nullptr;
  RawHead head;
  Clock::time_point start;
  bool has_body = false;   // the raw head announces a body (Content-Length or Transfer-Encoding)
  bool body_done = false;  // the handler consumed it, so the next request starts right after it
  bool close_after = false;
};

struct Framing {
  enum class Kind { None, Length, Chunked } kind = Kind::None;
  std::uint64_t length = 0;
  bool close_after = false;
};

// request_framing decides body framing from the raw head (RFC 9112 §6.3), rejecting what httplib would
// misread: unknown transfer codings, garbage or conflicting Content-Length values.
std::optional<HeadError> request_framing(const RawHead& head, Framing& out) {
  if (head.count("Transfer-Encoding") > 0) {
    const std::string te = head.joined("Transfer-Encoding");
    if (!iequals(trim_ows(te), "chunked"))
      return HeadError{501, "unsupported Transfer-Encoding " + in_quotes(te)};
    out.kind = Framing::Kind::Chunked;
    // Both framings present: chunked wins, and the connection must not be reused (RFC 9112 §6.3).
    out.close_after = head.count("Content-Length") > 0;
    return std::nullopt;
  }
  std::optional<std::uint64_t> length;
  bool bad = false;
  for (const auto& [name, value] : head.fields) {
    if (!iequals(name, "Content-Length")) continue;
    for_each_list_element(value, [&](std::string_view element) {
      std::uint64_t v = 0;
      if (!parse_u64(element, v) || (length && *length != v)) bad = true;
      length = v;
    });
    if (trim_ows(value).empty()) bad = true;
  }
  if (bad) return HeadError{400, "invalid Content-Length"};
  if (length) {
    out.kind = Framing::Kind::Length;
    out.length = *length;
  }
  return std::nullopt;
}

struct Overrides {
  int status = 200;
  milliseconds delay{0};
  std::optional<std::uint64_t> size;
  bool chunked = false;
  int sse_events = 0;
  milliseconds sse_interval{1000};
  std::vector<std::pair<std::string, std::string>> headers;
  bool close = false;
};

std::optional<std::string> parse_flag(const std::string& name, const std::string& text, bool& out) {
  if (text == "1" || text == "true" || text == "yes" || text.empty()) {
    out = true;
  } else if (text == "0" || text == "false" || text == "no") {
    out = false;
  } else {
    return name + ": expected 1 or 0, got " + in_quotes(text);
  }
  return std::nullopt;
}

std::optional<std::string> parse_int_in(const std::string& name, const std::string& text, std::uint64_t lo,
                                        std::uint64_t hi, int& out) {
  std::uint64_t v = 0;
  if (!parse_u64(text, v) || v < lo || v > hi)
    return name + ": expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi) +
           ", got " + in_quotes(text);
  out = static_cast<int>(v);
  return std::nullopt;
}

// parse_overrides reads the query parameters (httplib has already split and percent-decoded them).
std::optional<std::string> parse_overrides(const httplib::Request& req, const EchoOptions& defaults,
                                           Overrides& out) {
  out.status = defaults.status;
  out.delay = defaults.delay;
  out.size = defaults.body_size;
  out.sse_events = defaults.sse_events;
  out.sse_interval = defaults.sse_interval;
  auto param = [&](const char* name) -> std::optional<std::string> {
    if (!req.has_param(name)) return std::nullopt;
    return req.get_param_value(name);
  };
  if (auto v = param("status"))
    if (auto err = parse_int_in("status", *v, 200, 599, out.status)) return err;
  if (auto v = param("delay"))
    if (auto err = parse_duration(*v, out.delay)) return "delay: " + *err;
  if (auto v = param("size")) {
    std::uint64_t size = 0;
    if (auto err = parse_size(*v, size)) return "size: " + *err;
    out.size = size;
  }
  if (auto v = param("chunked"))
    if (auto err = parse_flag("chunked", *v, out.chunked)) return err;
  if (auto v = param("sse"))
    if (auto err = parse_int_in("sse", *v, 0, 1000000, out.sse_events)) return err;
  if (auto v = param("interval"))
    if (auto err = parse_duration(*v, out.sse_interval)) return "interval: " + *err;
  if (auto v = param("close"))
    if (auto err = parse_flag("close", *v, out.close)) return err;
  auto count = req.get_param_value_count("header");
  for (std::size_t i = 0; i < count; ++i) {
    auto text = req.get_param_value("header", i);
    auto colon = text.find(':');
    auto name = text.substr(0, colon);
    auto value = colon == std::string::npos ? std::string() : std::string(trim_ows(text.substr(colon + 1)));
    if (colon == std::string::npos || !is_token(name) || has_forbidden_value_char(value))
      return "header: expected Name:Value with a token name and no CR, LF or NUL, got " + in_quotes(text);
    out.headers.emplace_back(std::move(name), std::move(value));
  }
  return std::nullopt;
}

void set_error(httplib::Response& res, int status, const std::string& message) {
  res.status = status;
  res.set_content(dump_json(Json{{"error", message}}) + "\n", "application/json");
}

// mark_close makes httplib answer with Connection: close. It decides that from req's Connection header
// when writing the response; req is the non-const local of process_request, so the const_cast is sound.
void mark_close(const httplib::Request& req) {
  auto& mreq = const_cast<httplib::Request&>(req);
  mreq.headers.erase("Connection");
  mreq.headers.emplace("Connection", "close");
}

// The methods httplib routes to handlers; anything else is renamed before httplib parses the head.
bool is_routable_method(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "POST" || m == "PUT" || m == "PATCH" || m == "DELETE" ||
         m == "OPTIONS";
}

std::string status_reason(int status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 426:
      return "Upgrade Required";
    case 431:
      return "Request Header Fields Too Large";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Error";
  }
}

}  // namespace

// ---- EchoHttpServer: httplib::Server with its own connection loop ----

class EchoHttpServer final : public httplib::Server {
 public:
  explicit EchoHttpServer(EchoOptions options) : options_(std::move(options)) {
    auto block = std::make_shared<std::string>(kPayloadBlock + kPayloadAlphabet.size(), '\0');
    for (std::size_t i = 0; i < block->size(); ++i) (*block)[i] = echo_payload_byte(i);
    payload_block_ = std::move(block);

    new_task_queue = [] { return new ThreadPerConnectionQueue(kMaxConnectionThreads); };
    apply_server_defaults(*this, kKeepAliveMaxCount, kKeepAliveTimeoutSec, kIoTimeoutSec);
    route_every_method(*this, [this](const httplib::Request& req, httplib::Response& res,
                                     const httplib::ContentReader* reader) { handle(req, res, reader); });
  }

  const EchoOptions& options() const { return options_; }
  int listen_fd() const { return svr_sock_; }

  // begin_stop wakes every wait (delays, SSE pacing, keep-alive, body reads) so stop() joins promptly.
  void begin_stop() {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    for (int fd : connections_) ::shutdown(fd, SHUT_RDWR);
    stop_cv_.notify_all();
  }

 private:
  // Overrides httplib's private virtual: the .so calls it through the vtable for every accepted socket.
  bool process_and_close_socket(socket_t sock) override {
    if (register_connection(sock)) {
      int one = 1;
      ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      ConnStream strm(sock, to_millis(read_timeout_sec_, read_timeout_usec_),
                      to_millis(write_timeout_sec_, write_timeout_usec_));
      serve_connection(strm);
      unregister_connection(sock);
    }
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
    return true;
  }

  static milliseconds to_millis(time_t sec, time_t usec) { return milliseconds(sec * 1000 + usec / 1000); }

  bool register_connection(int fd) {
    std::lock_guard lock(mutex_);
    if (stopping_) return false;
    connections_.insert(fd);
    return true;
  }
  void unregister_connection(int fd) {
    std::lock_guard lock(mutex_);
    connections_.erase(fd);
  }
  bool stopping() const {
    std::lock_guard lock(mutex_);
    return stopping_;
  }
  // wait_until returns false when the server started stopping instead.
  bool wait_until(Clock::time_point deadline) {
    std::unique_lock lock(mutex_);
    return !stop_cv_.wait_until(lock, deadline, [&] { return stopping_; });
  }

  void serve_connection(ConnStream& strm) {
    for (std::size_t round = 1; round <= keep_alive_max_count_ && !stopping(); ++round) {
      auto status = strm.wait_head(std::chrono::seconds(keep_alive_timeout_sec_), kMaxHeadBytes);
      if (status == ConnStream::HeadStatus::TooLarge) {
        write_raw_error(strm, 431, "request head larger than " + std::to_string(kMaxHeadBytes) + " bytes");
        return;
      }
      if (status != ConnStream::HeadStatus::Ready) return;

      RequestContext ctx;
      ctx.stream = &strm;
      ctx.start = Clock::now();
      if (auto err = parse_raw_head(strm.head(), ctx.head)) {
        write_raw_error(strm, err->status, err->message);
        return;
      }
      if (ctx.head.has_token("Upgrade", "websocket")) {
        strm.consume_head();
        serve_websocket(strm, ctx.head);
        return;
      }
      // httplib answers 400 to methods it does not know (PROPFIND, PURGE, TRACE...). The echo reports the
      // method from the raw head anyway, so httplib is shown POST, which routes and can read a body.
      if (!is_routable_method(ctx.head.method)) strm.replace_head_prefix(ctx.head.method.size(), "POST");
      ctx.has_body = ctx.head.count("Content-Length") > 0 || ctx.head.count("Transfer-Encoding") > 0;

      const httplib::Request* current = nullptr;
      bool closed = false;
      bool ok = process_request(strm, round == keep_alive_max_count_, closed, [&](httplib::Request& req) {
        current = &req;
        prepare_request(req, ctx);
      });
      if (current) {
        std::lock_guard lock(mutex_);
        requests_.erase(current);
      }
      // An unread body would be parsed as the next request, so such a connection is closed instead.
      if (!ok || closed || ctx.close_after || (ctx.has_body && !ctx.body_done)) return;
    }
  }

  // prepare_request runs inside process_request after httplib parsed the head and before routing.
  void prepare_request(httplib::Request& req, RequestContext& ctx) {
    {
      std::lock_guard lock(mutex_);
      requests_[&req] = &ctx;
    }
    // httplib would decompress the body but keep Content-Encoding, and would hand a multipart body to
    // callbacks we do not set (bad_function_call → 500). The echo reports raw bytes, so hide both.
    req.headers.erase("Content-Encoding");
    req.headers.erase("Content-Type");
    // No automatic compression of responses and no Range slicing: the echo answers exactly what was asked.
    req.headers.erase("Accept-Encoding");
    req.ranges.clear();
    // httplib only recognises "Connection: close" spelled exactly so.
    if (ctx.head.has_token("Connection", "close")) {
      ctx.close_after = true;
      mark_close(req);
    }
  }

  RequestContext* find_context(const httplib::Request& req) {
    std::lock_guard lock(mutex_);
    auto it = requests_.find(&req);
    return it == requests_.end() ? nullptr : it->second;
  }

  void handle(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader* reader) {
    res.set_header("X-Echo-Name", options_.name);
    RequestContext* ctx = find_context(req);
    if (!ctx) return set_error(res, 500, "request context missing");

    Framing framing;
    if (auto err = request_framing(ctx->head, framing)) {
      ctx->close_after = true;
      mark_close(req);
      return set_error(res, err->status, err->message);
    }
    if (framing.close_after) {
      ctx->close_after = true;
      mark_close(req);
    }
    Sha256 sha;
    std::uint64_t body_size = 0;
    if (framing.kind != Framing::Kind::None && !read_body(req, *ctx, framing, reader, sha, body_size)) {
      ctx->close_after = true;
      mark_close(req);
      return set_error(res, 400, "could not read the request body");
    }
    ctx->body_done = true;

    Overrides ov;
    if (auto err = parse_overrides(req, options_, ov)) return set_error(res, 400, *err);
    if (ov.close) {
      ctx->close_after = true;
      mark_close(req);
    }
    if (ov.delay.count() > 0 && !wait_until(Clock::now() + ov.delay)) {
      ctx->close_after = true;
      mark_close(req);
      return set_error(res, 503, "server is stopping");
    }
    res.status = ov.status;
    for (const auto& [name, value] : ov.headers) res.set_header(name, value);
    if (ov.status == 204 || ov.status == 304) return;  // these never carry a body

    if (ov.sse_events > 0) return set_sse(res, *ctx, ov);
    if (ov.size) return set_payload(res, *ov.size, ov.chunked);
    res.set_content(describe(req, *ctx, body_size, sha.hex_digest()), "application/json");
  }

  // read_body streams the body through sha, never holding more than one piece of it in memory.
  bool read_body(const httplib::Request& req, RequestContext& ctx, const Framing& framing,
                 const httplib::ContentReader* reader, Sha256& sha, std::uint64_t& size) {
    auto sink = [&](const char* data, std::size_t n) {
      sha.update(data, n);
      size += n;
      return true;
    };
    // httplib reads bodies for POST/PUT/PATCH and for DELETE only with Content-Length (its framing rules
    // match request_framing once that rejected everything else).
    bool httplib_reads = reader && (req.method != "DELETE" || req.has_header("Content-Length"));
    if (httplib_reads) return (*reader)(sink);

    // GET, HEAD, OPTIONS (and DELETE chunked) bodies: httplib would parse them as the next request.
    ConnStream& strm = *ctx.stream;
    std::vector<char> buf(kRecvChunk);
    auto copy = [&](std::uint64_t remaining) {
      while (remaining > 0) {
        auto want = static_cast<std::size_t>(std::min<std::uint64_t>(remaining, buf.size()));
        auto n = strm.read(buf.data(), want);
        if (n <= 0) return false;
        sink(buf.data(), static_cast<std::size_t>(n));
        remaining -= static_cast<std::uint64_t>(n);
      }
      return true;
    };
    if (framing.kind == Framing::Kind::Length) return copy(framing.length);

    std::string line;
    for (;;) {
      if (!strm.read_line(line, 4096)) return false;
      auto hex = trim_ows(std::string_view(line).substr(0, line.find(';')));
      if (hex.empty() || hex.size() > 15) return false;
      std::uint64_t chunk = 0;
      for (char c : hex) {
        auto digit = std::string_view("0123456789abcdef").find(ascii_lower(c));
        if (digit == std::string_view::npos) return false;
        chunk = chunk * 16 + digit;
      }
      if (chunk == 0) break;
      if (!copy(chunk) || !strm.read_line(line, 0) || !line.empty()) return false;
    }
    // Trailer fields are read and dropped, up to the blank line.
    for (int i = 0; i < 100; ++i) {
      if (!strm.read_line(line, 8192)) return false;
      if (line.empty()) return true;
    }
    return false;
  }

  std::string describe(const httplib::Request& req, const RequestContext& ctx, std::uint64_t body_size,
                       const std::string& digest) const {
    const auto& head = ctx.head;
    auto query_at = head.target.find('?');
    Json headers = Json::array();
    for (const auto& [name, value] : head.fields) headers.push_back(Json::array({name, value}));
    Json doc;
    doc["name"] = options_.name;
    doc["method"] = head.method;
    doc["target"] = head.target;
    doc["path"] = head.target.substr(0, query_at);  // raw, like target: never percent-decoded
    doc["query"] = query_at == std::string::npos ? std::string() : head.target.substr(query_at + 1);
    doc["version"] = head.version;
    doc["headers"] = std::move(headers);
    doc["body_size"] = body_size;
    doc["body_sha256"] = digest;
    doc["remote_addr"] = host_port(req.remote_addr, req.remote_port);
    return dump_json(doc) + "\n";
  }

  void set_payload(httplib::Response& res, std::uint64_t size, bool chunked) {
    auto block = payload_block_;
    constexpr auto kCycle = kPayloadAlphabet.size();
    if (chunked) {
      // The provider is called again until done(); offset counts the bytes written so far.
      res.set_chunked_content_provider(
          "application/octet-stream", [block, size](std::size_t offset, httplib::DataSink& sink) {
            if (offset >= size) {
              sink.done();  // never write 0 bytes: that ends without 0\r\n\r\n
              return true;
            }
            auto n = static_cast<std::size_t>(std::min<std::uint64_t>(size - offset, kPayloadBlock));
            if (!sink.write(block->data() + offset % kCycle, n)) return false;
            if (offset + n >= size) sink.done();
            return true;
          });
    } else if (size == 0) {
      res.set_content(std::string(), "application/octet-stream");
    } else {
      res.set_content_provider(static_cast<std::size_t>(size), "application/octet-stream",
                               [block](std::size_t offset, std::size_t length, httplib::DataSink& sink) {
                                 auto n = std::min(length, kPayloadBlock);
                                 return sink.write(block->data() + offset % kCycle, n);
                               });
    }
  }

  void set_sse(httplib::Response& res, const RequestContext& ctx, const Overrides& ov) {
    struct SseState {
      int next = 1;
      Clock::time_point first_due;
    };
    auto state = std::make_shared<SseState>();
    state->first_due = Clock::now();
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream", [this, state, start = ctx.start, events = ov.sse_events,
                              interval = ov.sse_interval](std::size_t, httplib::DataSink& sink) {
          if (state->next > events) {
            sink.done();
            return true;
          }
          if (!wait_until(state->first_due + interval * (state->next - 1))) return false;
          auto t_ms = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
          Json data;
          data["name"] = options_.name;
          data["seq"] = state->next;
          data["t_ms"] = t_ms;
          auto event = "id: " + std::to_string(state->next) + "\ndata: " + dump_json(data) + "\n\n";
          // Each event goes out as its own chunk in one send (TCP_NODELAY), so it is flushed when due.
          if (!sink.write(event.data(), event.size())) return false;
          if (++state->next > events) sink.done();
          return true;
        });
  }

  void write_raw_error(ConnStream& strm, int status, const std::string& message,
                       const std::string& extra_headers = {}) {
    auto body = dump_json(Json{{"error", message}}) + "\n";
    auto response = "HTTP/1.1 " + std::to_string(status) + " " + status_reason(status) +
                    "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                    "\r\nConnection: close\r\n" + extra_headers + "\r\n" + body;
    strm.write_all(response);
  }

  // ---- WebSocket echo (RFC 6455) ----

  void serve_websocket(ConnStream& strm, const RawHead& head) {
    if (head.method != "GET" || head.version != "HTTP/1.1" || !head.has_token("Connection", "upgrade"))
      return write_raw_error(strm, 400, "a WebSocket upgrade needs GET, HTTP/1.1 and Connection: Upgrade");
    auto version = head.get("Sec-WebSocket-Version");
    if (!version || *version != "13")
      return write_raw_error(strm, 426, "only WebSocket version 13 is supported",
                             "Sec-WebSocket-Version: 13\r\n");
    auto key = head.get("Sec-WebSocket-Key");
    if (!key || key->size() != 24)
      return write_raw_error(strm, 400, "missing or malformed Sec-WebSocket-Key");

    std::string response =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
    response += "Sec-WebSocket-Accept: " + websocket_accept_key(*key) + "\r\n";
    // Clients that insist on a subprotocol get the first one they offered: the echo speaks all of them.
    std::optional<std::string> protocol;
    for_each_list_element(head.joined("Sec-WebSocket-Protocol"), [&](std::string_view p) {
      if (!protocol) protocol = std::string(p);
    });
    if (protocol) response += "Sec-WebSocket-Protocol: " + *protocol + "\r\n";
    response += "X-Echo-Name: " + options_.name + "\r\n\r\n";
    if (!strm.write_all(response)) return;
    websocket_echo(strm);
  }

  void websocket_echo(ConnStream& strm) {
    const milliseconds io_timeout = to_millis(read_timeout_sec_, read_timeout_usec_);
    auto send_close = [&](std::uint16_t code) {
      const char payload[2] = {static_cast<char>(code >> 8), static_cast<char>(code & 0xff)};
      strm.write_all(websocket_server_frame(WebSocketOpcode::Close, std::string_view(payload, 2)));
    };
    std::vector<char> buf(kPayloadBlock);
    for (;;) {
      char raw[14];
      if (!strm.read_exact(raw, 2, kWebSocketIdle)) return;
      std::size_t header_size = 2 +
                                ((raw[1] & 0x7f) == 126   ? 2
                                 : (raw[1] & 0x7f) == 127 ? 8
                                                          : 0) +
                                ((raw[1] & 0x80) ? 4 : 0);
      if (!strm.read_exact(raw + 2, header_size - 2, io_timeout)) return;
      WebSocketFrameHeader h;
      if (decode_websocket_header(std::string_view(raw, header_size), h) != FrameDecodeStatus::Complete ||
          h.rsv != 0 || !h.masked)
        return send_close(1002);  // protocol error: clients must mask, and no extension was negotiated

      bool is_data = h.opcode == WebSocketOpcode::Continuation || h.opcode == WebSocketOpcode::Text ||
                     h.opcode == WebSocketOpcode::Binary;
      if (is_data) {
        // Stream the payload back piece by piece (same FIN and opcode, unmasked): a huge frame costs 64 KiB.
        if (!strm.write_all(websocket_frame_header(h.fin, h.opcode, h.payload_size, nullptr))) return;
        for (std::uint64_t done = 0; done < h.payload_size;) {
          auto n = static_cast<std::size_t>(std::min<std::uint64_t>(h.payload_size - done, buf.size()));
          if (!strm.read_exact(buf.data(), n, io_timeout)) return;
          apply_websocket_mask(buf.data(), n, h.mask_key, done);
          if (!strm.write_all(std::string_view(buf.data(), n))) return;
          done += n;
        }
        continue;
      }
      // Control frames carry at most 125 bytes (checked by decode_websocket_header).
      std::string payload(static_cast<std::size_t>(h.payload_size), '\0');
      if (!strm.read_exact(payload.data(), payload.size(), io_timeout)) return;
      apply_websocket_mask(payload.data(), payload.size(), h.mask_key, 0);
      if (h.opcode == WebSocketOpcode::Ping) {
        if (!strm.write_all(websocket_server_frame(WebSocketOpcode::Pong, payload))) return;
      } else if (h.opcode == WebSocketOpcode::Close) {
        // Echo the status code (not the reason) and end the session; the caller shuts the socket down.
        if (payload.size() == 1) return send_close(1002);
        strm.write_all(
            websocket_server_frame(WebSocketOpcode::Close, std::string_view(payload).substr(0, 2)));
        return;
      }
      // Pong: unsolicited pongs are allowed and ignored.
    }
  }

  EchoOptions options_;
  std::shared_ptr<const std::string> payload_block_;  // kPayloadBlock bytes plus one cycle, for any offset
  mutable std::mutex mutex_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::set<int> connections_;
  std::map<const httplib::Request*, RequestContext*> requests_;
};

// ---- EchoServer ----

class EchoServer::Impl {
 public:
  explicit Impl(EchoOptions options) : server(std::move(options)) {}
  EchoHttpServer server;
  std::thread thread;
  std::atomic<std::uint16_t> port{0};
  std::atomic<bool> loop_exited{false};
  std::mutex lifecycle_mutex;
  bool started = false;
  bool stopped = false;
};

EchoServer::EchoServer(EchoOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

EchoServer::~EchoServer() {
  stop();
}

void EchoServer::start() {
  std::lock_guard lock(impl_->lifecycle_mutex);
  if (impl_->started) throw std::logic_error("EchoServer::start called twice");
  auto& server = impl_->server;
  const auto& opts = server.options();
  impl_->port = serve_on_thread(
      server, [&server] { return server.listen_fd(); }, opts.host, opts.port, impl_->thread, impl_->loop_exited,
      "echo server");
  impl_->started = true;
}

std::uint16_t EchoServer::port() const {
  return impl_->port;
}

const EchoOptions& EchoServer::options() const {
  return impl_->server.options();
}

void EchoServer::stop() {
  std::lock_guard lock(impl_->lifecycle_mutex);
  if (!impl_->started || impl_->stopped) return;
  impl_->stopped = true;
  impl_->server.begin_stop();
  impl_->server.stop();
  impl_->thread.join();  // listen_after_bind returns after every connection thread has finished
}

// ---- payload ----

char echo_payload_byte(std::uint64_t offset) {
  return kPayloadAlphabet[offset % kPayloadAlphabet.size()];
}

// ---- WebSocket codec ----

std::string websocket_accept_key(std::string_view client_key) {
  std::string input(client_key);
  input += kWebSocketGuid;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(input.data(), input.size(), digest, &size, EVP_sha1(), nullptr);
  unsigned char encoded[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
  int n = EVP_EncodeBlock(encoded, digest, static_cast<int>(size));
  return std::string(reinterpret_cast<const char*>(encoded), static_cast<std::size_t>(n));
}

std::string websocket_frame_header(bool fin, WebSocketOpcode opcode, std::uint64_t payload_size,
                                   const WebSocketMask* mask_key) {
  std::string out;
  out.push_back(static_cast<char>((fin ? 0x80 : 0x00) | static_cast<std::uint8_t>(opcode)));
  const std::uint8_t mask_bit = mask_key ? 0x80 : 0x00;
  if (payload_size < 126) {
    out.push_back(static_cast<char>(mask_bit | payload_size));
  } else if (payload_size <= 0xffff) {
    out.push_back(static_cast<char>(mask_bit | 126));
    for (int shift = 8; shift >= 0; shift -= 8)
      out.push_back(static_cast<char>((payload_size >> shift) & 0xff));
  } else {
    out.push_back(static_cast<char>(mask_bit | 127));
    for (int shift = 56; shift >= 0; shift -= 8)
      out.push_back(static_cast<char>((payload_size >> shift) & 0xff));
  }
  if (mask_key) out.append(reinterpret_cast<const char*>(mask_key->data()), mask_key->size());
  return out;
}

void apply_websocket_mask(char* data, std::size_t size, const WebSocketMask& mask_key, std::uint64_t offset) {
  for (std::size_t i = 0; i < size; ++i)
    data[i] = static_cast<char>(static_cast<std::uint8_t>(data[i]) ^ mask_key[(offset + i) % 4]);
}

std::string websocket_server_frame(WebSocketOpcode opcode, std::string_view payload, bool fin) {
  auto out = websocket_frame_header(fin, opcode, payload.size(), nullptr);
  out.append(payload);
  return out;
}

std::string websocket_client_frame(WebSocketOpcode opcode, std::string_view payload,
                                   const WebSocketMask& mask_key, bool fin) {
  auto out = websocket_frame_header(fin, opcode, payload.size(), &mask_key);
  auto at = out.size();
  out.append(payload);
  apply_websocket_mask(out.data() + at, payload.size(), mask_key, 0);
  return out;
}

FrameDecodeStatus decode_websocket_header(std::string_view data, WebSocketFrameHeader& header) {
  if (data.size() < 2) return FrameDecodeStatus::Incomplete;
  auto b0 = static_cast<std::uint8_t>(data[0]);
  auto b1 = static_cast<std::uint8_t>(data[1]);
  std::uint8_t op = b0 & 0x0f;
  if (!(op <= 0x2 || (op >= 0x8 && op <= 0xA))) return FrameDecodeStatus::Invalid;
  WebSocketFrameHeader h;
  h.fin = (b0 & 0x80) != 0;
  h.rsv = static_cast<std::uint8_t>((b0 >> 4) & 0x7);
  h.opcode = static_cast<WebSocketOpcode>(op);
  h.masked = (b1 & 0x80) != 0;
  std::uint8_t len7 = b1 & 0x7f;
  std::size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
  h.header_size = 2 + ext + (h.masked ? 4 : 0);
  if (data.size() < h.header_size) return FrameDecodeStatus::Incomplete;
  h.payload_size = len7;
  if (ext > 0) {
    h.payload_size = 0;
    for (std::size_t i = 0; i < ext; ++i)
      h.payload_size = (h.payload_size << 8) | static_cast<std::uint8_t>(data[2 + i]);
  }
  if (h.payload_size >> 63) return FrameDecodeStatus::Invalid;
  if ((op & 0x8) && (!h.fin || h.payload_size > 125)) return FrameDecodeStatus::Invalid;
  if (h.masked)
    for (std::size_t i = 0; i < 4; ++i) h.mask_key[i] = static_cast<std::uint8_t>(data[2 + ext + i]);
  header = h;
  return FrameDecodeStatus::Complete;
}

FrameDecodeStatus decode_websocket_frame(std::string_view data, WebSocketFrame& frame,
                                         std::size_t& consumed) {
  WebSocketFrameHeader h;
  auto status = decode_websocket_header(data, h);
  if (status != FrameDecodeStatus::Complete) return status;
  if (data.size() - h.header_size < h.payload_size) return FrameDecodeStatus::Incomplete;
  frame.header = h;
  frame.payload.assign(data.substr(h.header_size, static_cast<std::size_t>(h.payload_size)));
  if (h.masked) apply_websocket_mask(frame.payload.data(), frame.payload.size(), h.mask_key, 0);
  consumed = h.header_size + static_cast<std::size_t>(h.payload_size);
  return FrameDecodeStatus::Complete;
}

}  // namespace rproxy
