// ScriptedUpstream: a tiny raw TCP server on 127.0.0.1:<ephemeral> for upstream misbehaviour tests. Each
// accepted connection runs a script (on its own thread): optionally read the request head, wait, send
// literal bytes, wait, then close, reset or stay silent until stop(). Everything received on every
// connection is recorded, so a test can assert that the upstream got nothing at all.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace rproxy::test {

// UpstreamScript is what one connection does.
struct UpstreamScript {
  enum class End {
    Close,   // FIN after the bytes
    Reset,   // RST (SO_LINGER 0) after the bytes
    Silent,  // keep the connection open, reading and recording, until the peer or stop() ends it
  };
  bool read_head = true;                        // wait for "\r\n\r\n" before answering
  std::chrono::milliseconds delay_before{0};    // after the head, before sending
  std::string response{};                       // bytes to send (may be empty)
  std::chrono::milliseconds delay_after{0};     // after sending, before ending
  End end = End::Close;
  // Serve the same exchange this many times on the connection before ending (keep-alive upstreams).
  int exchanges = 1;
  // After the exchanges: read one more request head before ending (an upstream that closes a reused
  // connection just as a request arrives).
  bool read_head_before_end = false;
};

class ScriptedUpstream {
 public:
  // scripts[i] runs on the i-th accepted connection; the last one repeats for later connections.
  explicit ScriptedUpstream(std::vector<UpstreamScript> scripts);
  explicit ScriptedUpstream(UpstreamScript script) : ScriptedUpstream(std::vector<UpstreamScript>{std::move(script)}) {}
  ~ScriptedUpstream();
  ScriptedUpstream(const ScriptedUpstream&) = delete;
  ScriptedUpstream& operator=(const ScriptedUpstream&) = delete;

  std::uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  // received returns every byte received so far on all connections (in arrival order per connection).
  std::string received() const;
  std::size_t connections() const { return accepted_.load(); }
  // heads_received counts complete request heads seen so far.
  std::size_t heads_received() const;
  // wait_for_heads blocks until n request heads arrived or timeout passes; returns whether they did.
  bool wait_for_heads(std::size_t n, std::chrono::milliseconds timeout);
  // stop closes the listener and every connection, then joins the threads. Idempotent.
  void stop();

 private:
  void accept_loop();
  void serve(int fd, const UpstreamScript& script);
  // read_head_on reads until a head ends (recording); false on EOF, error or stop.
  bool read_head_on(int fd, std::string& pending);
  bool sleep_for(std::chrono::milliseconds d);  // false when stopping
  void record(const char* data, std::size_t n);

  std::vector<UpstreamScript> scripts_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: readable once stop() was called
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> accepted_{0};
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::string received_;
  std::size_t heads_ = 0;
  std::vector<int> open_fds_;
  std::thread acceptor_;
  std::vector<std::thread> workers_;
};

// ClosedPort reserves a loopback port nobody listens on (bound, never listening): connecting to it is
// refused at once, and no other test can grab the port while this object lives.
class ClosedPort {
 public:
  ClosedPort();
  ~ClosedPort();
  ClosedPort(const ClosedPort&) = delete;
  ClosedPort& operator=(const ClosedPort&) = delete;
  std::uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

}  // namespace rproxy::test
