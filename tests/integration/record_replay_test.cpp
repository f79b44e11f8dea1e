// Integration tests for record and replay: a real upstream serving JSON, gzip, binary, chunked, SSE and
// stateful answers; the proxy in-process (or the rproxy binary for exit codes and memory); real sockets.
#include <doctest/doctest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "core/sha256.hpp"
#include "support/proxy_fixture.hpp"
#include "support/raw_client.hpp"
#include "support/subprocess.hpp"

using namespace rproxy;
using namespace rproxy::test;
using nlohmann::json;

namespace {

// MixedUpstream answers with every kind of body a recording must keep faithfully. /counter answers change
// on every call (stateful APIs), so repeated identical requests must be replayed in order.
class MixedUpstream {
 public:
  MixedUpstream() {
    server_.Get("/json", [](const httplib::Request& req, httplib::Response& res) {
      res.set_content(json{{"id", req.get_param_value("id")}, {"items", {1, 2, 3}}}.dump(),
                      "application/json");
    });
    server_.Get("/counter", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(json{{"count", ++counter_}}.dump(), "application/json");
    });
    server_.Get("/gzip", [](const httplib::Request&, httplib::Response& res) {
      // httplib compresses text for clients that accept gzip: the upstream sends Content-Encoding: gzip.
      res.set_content(std::string(5000, 'z') + "compressible text", "text/plain");
    });
    server_.Get("/binary", [](const httplib::Request& req, httplib::Response& res) {
      std::string bytes;
      int n = std::stoi(req.get_param_value("n"));
      for (int i = 0; i < 256 + n; ++i) bytes.push_back(static_cast<char>((i * 7 + n) & 0xff));
      res.set_content(bytes, "application/octet-stream");
    });
    server_.Get("/chunked", [](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider("text/plain", [](std::size_t offset, httplib::DataSink& sink) {
        if (offset >= 30) {
          sink.done();
          return true;
        }
        sink.write("0123456789", 10);
        return true;
      });
    });
    server_.Get("/sse", [](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider("text/event-stream", [](std::size_t offset, httplib::DataSink& sink) {
        if (offset >= 3 * 17) {
          sink.done();
          return true;
        }
        std::string ev = "data: event " + std::to_string(offset / 17) + "\n\n";
        ev.resize(17, ' ');
        sink.write(ev.data(), ev.size());
        return true;
      });
    });
    server_.Post("/echo", [](const httplib::Request& req, httplib::Response& res) {
      res.status = 201;
      res.set_header("Set-Cookie", "session=SECRETSESSION; Path=/; HttpOnly");
      res.set_content(req.body, "application/json");
    });
    port_ = static_cast<std::uint16_t>(server_.bind_to_any_port("127.0.0.1"));
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~MixedUpstream() { stop(); }
  void stop() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }
  std::uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  httplib::Server server_;
  std::thread thread_;
  std::uint16_t port_ = 0;
  std::atomic<int> counter_{0};
};

// The 100 requests of the mixed workload, in order.
std::vector<std::string> mixed_requests() {
  std::vector<std::string> out;
  for (int i = 0; i < 100; ++i) {
    switch (i % 7) {
      case 0:
        out.push_back(get_request("/json?id=" + std::to_string(i % 5) + "&lang=en"));
        break;
      case 1:
        out.push_back(get_request("/counter"));  // the same request, a different answer each time
        break;
      case 2:
        out.push_back(get_request("/gzip", "proxy.test", "Accept-Encoding: gzip\r\n"));
        break;
      case 3:
        out.push_back(get_request("/binary?n=" + std::to_string(i)));
        break;
      case 4:
        out.push_back(get_request("/chunked"));
        break;
      case 5:
        out.push_back(get_request("/sse"));
        break;
      default: {
        std::string body = json{{"i", i}, {"password", "hunter2"}, {"nested", {{"a", 1}}}}.dump();
        out.push_back(
            "POST /echo HTTP/1.1\r\nHost: proxy.test\r\nContent-Type: application/json\r\n"
            "Authorization: Bearer SECRETTOKEN\r\nContent-Length: " +
            std::to_string(body.size()) + "\r\n\r\n" + body);
      }
    }
  }
  return out;
}

struct Seen {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // without X-Rproxy-Replay
  std::string body_sha256;
  bool operator==(const Seen&) const = default;
};

std::vector<Seen> drive(std::uint16_t port, const std::vector<std::string>& requests) {
  std::vector<Seen> out;
  RawClient c(port);
  for (const auto& req : requests) {
    c.send(req);
    auto r = c.read_response();
    Seen s;
    s.status = r.status;
    for (const auto& h : r.headers)
      if (!iequal(h.first, "X-Rproxy-Replay")) s.headers.push_back(h);
    s.body_sha256 = sha256_hex(r.body);
    out.push_back(std::move(s));
  }
  return out;
}

Scenario record_scenario(const std::string& upstream, json params) {
  auto s = make_scenario({make_route({upstream})});
  s.stages.push_back(StageSpec{"record", "", std::move(params)});
  return s;
}

Scenario replay_scenario(json params) {
  Route r;
  auto s = make_scenario({r});
  s.stages.push_back(StageSpec{"replay", "", std::move(params)});
  return s;
}

// A listener on a port that counts connection attempts (the "backend" during replay).
class Tripwire {
 public:
  explicit Tripwire(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bound_ = ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && ::listen(fd_, 16) == 0;
  }
  ~Tripwire() { ::close(fd_); }
  bool bound() const { return bound_; }
  int attempts() {
    int n = 0;
    while (true) {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) break;
      ::close(c);
      ++n;
    }
    return n;
  }

 private:
  int fd_ = -1;
  bool bound_ = false;
};

std::string all_files_text(const std::string& dir) {
  std::string out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out += read_file(e.path().string());
  return out;
}

}  // namespace

TEST_SUITE("record") {
  TEST_CASE("record/replay: 100 mixed exchanges replay three times, identical, with the backend down") {
    TempDir dir;
    auto cassette = dir.file("rec.json");
    auto requests = mixed_requests();
    std::vector<Seen> live;
    std::uint16_t backend_port = 0;
    {
      MixedUpstream up;
      backend_port = up.port();
      ProxyFixture proxy(
          record_scenario(up.url(), {{"out", cassette}, {"redact", {{"json_fields", {"password"}}}}}));
      live = drive(proxy.port(), requests);
      proxy.stop();
      auto rep = proxy.server().report()["stages"]["record"];
      CHECK(rep["recorded"] == 100);
    }
    for (const auto& s : live) REQUIRE((s.status == 200 || s.status == 201));
    auto doc = json::parse(read_file(cassette));
    REQUIRE(doc["interactions"].size() == 100);
    // Faithful: gzip stays gzip (with a decoded view), binary is base64, chunked keeps its framing.
    const auto& gz = doc["interactions"][2]["response"];
    CHECK(gz["body"].contains("base64"));
    CHECK(gz["body"]["decoded"]["text"].get<std::string>().find("compressible text") != std::string::npos);
    CHECK(doc["interactions"][3]["response"]["body"].contains("base64"));

    Tripwire backend(backend_port);
    for (int round = 0; round < 3; ++round) {
      CAPTURE(round);
      ProxyFixture replay(
          replay_scenario({{"cassette", cassette}, {"redact", {{"json_fields", {"password"}}}}}));
      auto again = drive(replay.port(), requests);
      REQUIRE(again.size() == live.size());
      for (std::size_t i = 0; i < live.size(); ++i) {
        CAPTURE(i);
        CAPTURE(requests[i].substr(0, requests[i].find('\r')));
        CHECK(again[i].status == live[i].status);
        // The POSTs differ on purpose: their Set-Cookie and echoed password were redacted when recorded.
        if (i % 7 == 6) continue;
        CHECK(again[i].headers == live[i].headers);
        CHECK(again[i].body_sha256 == live[i].body_sha256);
      }
      auto verdict = replay.server().report()["stages"]["replay"];
      CHECK(verdict["hits"] == 100);
      CHECK(verdict["miss_count"] == 0);
      CHECK(verdict["unused"].empty());
    }
    if (backend.bound()) CHECK(backend.attempts() == 0);
  }

  TEST_CASE("record: secrets never reach the recording, replay with another token still matches") {
    TempDir dir;
    auto out = dir.file("rec/");
    MixedUpstream up;
    {
      ProxyFixture proxy(record_scenario(
          up.url(),
          {{"out", out},
           {"redact", {{"json_fields", {"password"}}, {"query", {"token"}}, {"headers", {"X-Session"}}}}}));
      std::string body = R"({"user":"ann","password":"hunter2"})";
      auto r = fetch(proxy.port(),
                     "POST /echo?token=QUERYSECRET&x=1 HTTP/1.1\r\nHost: proxy.test\r\n"
                     "Authorization: Bearer SECRETTOKEN\r\nCookie: sid=COOKIESECRET\r\n"
                     "X-Api-Key: APIKEYSECRET\r\nX-Session: SESSIONSECRET\r\n"
                     "Content-Type: application/json\r\nContent-Length: " +
                         std::to_string(body.size()) + "\r\n\r\n" + body);
      REQUIRE(r.status == 201);
    }
    auto text = all_files_text(dir.path());
    for (const char* secret : {"hunter2", "SECRETTOKEN", "COOKIESECRET", "APIKEYSECRET", "SESSIONSECRET",
                               "QUERYSECRET", "SECRETSESSION"}) {
      CAPTURE(secret);
      CHECK(text.find(secret) == std::string::npos);
    }
    auto doc = json::parse(read_file(dir.file("rec/cassette.json")));
    const auto& req = doc["interactions"][0]["request"];
    // Lengths stay consistent: the recorded Content-Length is the redacted body's.
    std::string recorded_body = req["body"]["text"];
    for (const auto& h : req["headers"])
      if (h[0] == "Content-Length") CHECK(h[1] == std::to_string(recorded_body.size()));
    CHECK(req["target"] == "/echo?token=REDACTED&x=1");

    up.stop();
    ProxyFixture replay(replay_scenario(
        {{"cassette", out},
         {"redact", {{"json_fields", {"password"}}, {"query", {"token"}}, {"headers", {"X-Session"}}}}}));
    std::string body = R"({"user":"ann","password":"other"})";
    auto r = fetch(replay.port(),
                   "POST /echo?token=OTHER&x=1 HTTP/1.1\r\nHost: elsewhere:1234\r\n"
                   "Authorization: Bearer ANOTHERTOKEN\r\nContent-Type: application/json\r\n"
                   "Content-Length: " +
                       std::to_string(body.size()) + "\r\n\r\n" + body);
    CHECK(r.status == 201);
    CHECK(r.header("X-Rproxy-Replay") == "hit");
  }

  TEST_CASE("record: the same traffic recorded twice gives identical files") {
    TempDir dir;
    auto requests = mixed_requests();
    for (const char* name : {"one.json", "two.json"}) {
      MixedUpstream up;
      ProxyFixture proxy(record_scenario(up.url(), {{"out", dir.file(name)}}));
      drive(proxy.port(), requests);
    }
    CHECK(read_file(dir.file("one.json")) == read_file(dir.file("two.json")));
    CHECK(std::filesystem::exists(dir.file("one.json")));
  }

  TEST_CASE("replay: a miss names the closest recording and what differs, repeats answer in order") {
    TempDir dir;
    auto cassette = dir.file("rec.json");
    {
      MixedUpstream up;
      ProxyFixture proxy(record_scenario(up.url(), {{"out", cassette}}));
      drive(proxy.port(),
            {get_request("/json?id=1&lang=en"), get_request("/counter"), get_request("/counter")});
    }
    ProxyFixture replay(replay_scenario({{"cassette", cassette}}));
    CHECK(fetch(replay.port(), get_request("/json?lang=en&id=1")).status == 200);  // query order is free
    CHECK(fetch(replay.port(), get_request("/counter")).json()["count"] == 1);
    CHECK(fetch(replay.port(), get_request("/counter")).json()["count"] == 2);
    auto after = fetch(replay.port(), get_request("/counter"));  // after the last: an explicit miss
    CHECK(after.status == 502);
    CHECK(after.json()["reason"].get<std::string>().find("were used") != std::string::npos);
    auto miss = fetch(replay.port(), get_request("/json?id=2&lang=en"));
    CHECK(miss.status == 502);
    CHECK(miss.header("X-Rproxy-Replay") == "miss");
    auto j = miss.json();
    CHECK(j["closest"]["id"] == 1);
    bool names_query = false;
    for (const auto& d : j["closest"]["differences"]) names_query = names_query || d["field"] == "query id";
    CHECK(names_query);
    auto verdict = replay.server().report()["stages"]["replay"];
    CHECK(verdict["hits"] == 3);
    CHECK(verdict["miss_count"] == 2);
  }

  TEST_CASE("record modes: once replays and refuses new requests, new appends, all starts afresh") {
    TempDir dir;
    auto cassette = dir.file("rec.json");
    MixedUpstream up;
    {
      ProxyFixture proxy(record_scenario(up.url(), {{"out", cassette}}));
      drive(proxy.port(), {get_request("/json?id=1")});
    }
    {
      ProxyFixture proxy(record_scenario(up.url(), {{"out", cassette}, {"mode", "once"}}));
      auto hit = fetch(proxy.port(), get_request("/json?id=1"));
      CHECK(hit.header("X-Rproxy-Replay") == "hit");
      auto refused = fetch(proxy.port(), get_request("/json?id=2"));
      CHECK(refused.status == 502);
      CHECK(refused.json()["hint"].get<std::string>().find("mode once") != std::string::npos);
    }
    CHECK(json::parse(read_file(cassette))["interactions"].size() == 1);
    {
      ProxyFixture proxy(record_scenario(up.url(), {{"out", cassette}, {"mode", "new"}}));
      CHECK(fetch(proxy.port(), get_request("/json?id=1")).header("X-Rproxy-Replay") == "hit");
      auto fresh = fetch(proxy.port(), get_request("/json?id=2"));
      CHECK(fresh.status == 200);
      CHECK_FALSE(fresh.has_header("X-Rproxy-Replay"));
    }
    auto doc = json::parse(read_file(cassette));
    REQUIRE(doc["interactions"].size() == 2);
    CHECK(doc["interactions"][1]["id"] == 2);
    {
      ProxyFixture proxy(record_scenario(up.url(), {{"out", cassette}, {"mode", "all"}}));
      drive(proxy.port(), {get_request("/json?id=3")});
    }
    doc = json::parse(read_file(cassette));
    REQUIRE(doc["interactions"].size() == 1);
    CHECK(doc["interactions"][0]["request"]["target"] == "/json?id=3");
  }

  TEST_CASE("record CLI: documented forms, a killed recorder leaves a readable recording, strict exit code") {
    TempDir dir;
    auto cassette = dir.file("recording.json");
    MixedUpstream up;
    {
      Subprocess p({RPROXY_BINARY, "record", "--listen", "127.0.0.1:0", "--to", up.url(), "--out", cassette});
      auto line = p.wait_for_stderr("rproxy: listening on http://", std::chrono::seconds(10));
      REQUIRE(line);
      auto port = static_cast<std::uint16_t>(std::stoi(line->substr(line->rfind(':') + 1)));
      for (int i = 0; i < 5; ++i)
        REQUIRE(fetch(port, get_request("/json?id=" + std::to_string(i))).status == 200);
      // Every completed exchange is on disk as soon as it completes: SIGKILL loses nothing.
      std::size_t n = 0;
      for (int i = 0; i < 100 && n < 5; ++i) {
        auto doc = json::parse(read_file(cassette), nullptr, false);
        n = doc.is_discarded() ? 0 : doc["interactions"].size();
        if (n < 5) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      p.signal(SIGKILL);
      p.wait_exit(std::chrono::seconds(5));
      CHECK(n == 5);
    }
    auto junit = dir.file("replay.xml");
    {
      Subprocess p(
          {RPROXY_BINARY, "replay", "--listen", "127.0.0.1:0", cassette, "--strict", "--junit", junit});
      auto line = p.wait_for_stderr("rproxy: listening on http://", std::chrono::seconds(10));
      REQUIRE(line);
      auto port = static_cast<std::uint16_t>(std::stoi(line->substr(line->rfind(':') + 1)));
      for (int i = 0; i < 5; ++i)
        CHECK(fetch(port, get_request("/json?id=" + std::to_string(i))).status == 200);
      p.signal(SIGTERM);
      CHECK(p.wait_exit(std::chrono::seconds(10)) == 0);  // everything used, nothing missed
    }
    {
      Subprocess p(
          {RPROXY_BINARY, "replay", "--listen", "127.0.0.1:0", cassette, "--strict", "--junit", junit});
      auto line = p.wait_for_stderr("rproxy: listening on http://", std::chrono::seconds(10));
      REQUIRE(line);
      auto port = static_cast<std::uint16_t>(std::stoi(line->substr(line->rfind(':') + 1)));
      CHECK(fetch(port, get_request("/json?id=9")).status == 502);
      p.signal(SIGTERM);
      CHECK(p.wait_exit(std::chrono::seconds(10)) == 3);  // a miss and unused recordings fail the CI job
      CHECK(p.stderr_text().find("miss: GET /json?id=9") != std::string::npos);
      auto xml = read_file(junit);
      CHECK(xml.find("<testsuite") != std::string::npos);
      CHECK(xml.find("failures=") != std::string::npos);
    }
  }
}

TEST_SUITE("record") {
  TEST_CASE("record/replay: HAR export and import round trip, a .har file replays directly") {
    TempDir dir;
    auto cassette = dir.file("rec.json");
    auto requests = mixed_requests();
    std::vector<Seen> live;
    {
      MixedUpstream up;
      ProxyFixture proxy(record_scenario(up.url(), {{"out", cassette}}));
      live = drive(proxy.port(), requests);
    }
    auto har = dir.file("rec.har");
    auto exported = run_command({RPROXY_BINARY, "har", "export", cassette, har});
    REQUIRE(exported.exit_code == 0);
    auto doc = json::parse(read_file(har));
    CHECK(doc["log"]["version"] == "1.2");
    CHECK(doc["log"]["entries"].size() == 100);
    auto imported = run_command({RPROXY_BINARY, "har", "import", har, dir.file("back.json")});
    REQUIRE(imported.exit_code == 0);
    auto a = json::parse(read_file(cassette));
    auto b = json::parse(read_file(dir.file("back.json")));
    CHECK(a["interactions"] == b["interactions"]);  // nothing lost on the way through HAR
    ProxyFixture replay(replay_scenario({{"cassette", har}}));
    auto again = drive(replay.port(), requests);
    for (std::size_t i = 0; i < live.size(); ++i) {
      CAPTURE(i);
      CHECK(again[i].status == live[i].status);
      if (i % 7 != 6) CHECK(again[i].body_sha256 == live[i].body_sha256);
    }
    CHECK(replay.server().report()["stages"]["replay"]["hits"] == 100);
  }

  TEST_CASE("replay: recorded pace replays streamed chunks with their timing, instant does not wait") {
    TempDir dir;
    auto cassette = dir.file("rec.json");
    auto echo = start_echo("sse");
    {
      ProxyFixture proxy(record_scenario(echo_url(*echo), {{"out", cassette}, {"timing", true}}));
      REQUIRE(fetch(proxy.port(), get_request("/events?sse=3&interval=200ms")).status == 200);
    }
    echo->stop();
    auto doc = json::parse(read_file(cassette));
    REQUIRE(doc["interactions"][0]["response"].contains("chunks"));
    auto timed = [&](const std::string& pace) {
      ProxyFixture replay(replay_scenario({{"cassette", cassette}, {"pace", pace}}));
      auto t0 = Clock::now();
      auto r = fetch(replay.port(), get_request("/events?sse=3&interval=200ms"));
      CHECK(r.status == 200);
      CHECK(r.body.find("data:") != std::string::npos);
      return ms_since(t0);
    };
    auto recorded = timed("recorded");
    auto instant = timed("instant");
    MESSAGE("SSE of 3 events 200 ms apart replayed in " << recorded << " ms (recorded pace), " << instant
                                                        << " ms (instant)");
    CHECK(recorded >= 350);
    CHECK(instant < 150);
  }
}

TEST_SUITE("record") {
  TEST_CASE("replay --against: recorded requests sent to a live backend, differences reported, exit 3") {
    TempDir dir;
    auto cassette = dir.file("rec.json");
    {
      MixedUpstream up;
      ProxyFixture proxy(record_scenario(up.url(), {{"out", cassette}}));
      drive(proxy.port(), {get_request("/json?id=1"), get_request("/counter"), get_request("/binary?n=3")});
    }
    MixedUpstream same;  // a fresh build of the same backend answers the same
    auto ok = run_command({RPROXY_BINARY, "replay", cassette, "--against", same.url()});
    CHECK(ok.exit_code == 0);
    CHECK(ok.out.find("#2 GET /counter: same") != std::string::npos);
    auto other = start_echo("other");  // a different backend
    auto report = dir.file("against.json");
    auto bad =
        run_command({RPROXY_BINARY, "replay", cassette, "--against", echo_url(*other), "--report", report});
    CHECK(bad.exit_code == 3);
    CHECK(bad.out.find("differs") != std::string::npos);
    auto rep = json::parse(read_file(report));
    CHECK(rep["different"] == 3);
  }
}

TEST_SUITE("slow") {
  TEST_CASE("record/replay: a 200 MiB body is recorded and replayed in bounded memory") {
    TempDir dir;
    auto cassette = dir.file("big.json");
    auto echo = start_echo("big");
    const std::uint64_t size = 200ULL << 20;
    auto run = [&](std::vector<std::string> argv) {
      const std::string command = argv[1];
      Subprocess p(std::move(argv));
      auto line = p.wait_for_stderr("rproxy: listening on http://", std::chrono::seconds(10));
      REQUIRE(line);
      auto port = static_cast<std::uint16_t>(std::stoi(line->substr(line->rfind(':') + 1)));
      auto before = p.memory().vm_hwm_kib;
      RawClient c(port);
      c.send(get_request("/big?size=200MiB"));
      ReadOptions o;
      o.timeout = std::chrono::seconds(60);
      auto r = c.read_response(o);
      CHECK(r.status == 200);
      CHECK(r.body.size() == size);
      CHECK(first_payload_mismatch(r.body) == -1);
      auto after = p.memory().vm_hwm_kib;
      MESSAGE(command << ": VmHWM " << before << " -> " << after << " KiB");
      CHECK(after - before < 64 * 1024);
      p.signal(SIGTERM);
      CHECK(p.wait_exit(std::chrono::seconds(20)) == 0);
    };
    run({RPROXY_BINARY, "record", "--listen", "127.0.0.1:0", "--to", echo_url(*echo), "--out", cassette,
         "--quiet"});
    echo->stop();
    run({RPROXY_BINARY, "replay", "--listen", "127.0.0.1:0", cassette, "--strict", "--quiet"});
  }
}
