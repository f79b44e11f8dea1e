// Integration tests for the admin endpoint: an in-process AdminServer on an ephemeral loopback port with a
// fake AdminTarget (lambdas that record what they were asked), driven with httplib::Client.
#include "admin_server.hpp"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "doctest/doctest.h"

namespace {

using rproxy::AdminReply;
using rproxy::AdminRequest;
using rproxy::AdminServer;
using rproxy::AdminTarget;
using rproxy::ListenAddress;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using Stages = std::vector<std::pair<std::string, std::string>>;

constexpr std::size_t kMiB = 1024 * 1024;

struct RecordedCall {
  std::string stage;
  AdminRequest request;
};

// FakeEngine stands in for the proxy: a fixed stage list, a report, and a call log. Stage "fail" throws;
// every other stage answers 201 with what it was asked, so forwarding is visible end to end.
struct FakeEngine {
  std::mutex mutex;
  Stages stage_list{{"default/fault", "fault"}, {"a", "headers"}, {"a/b", "split"}, {"fail", "fault"}};
  std::vector<RecordedCall> calls;
  std::atomic<int> report_calls{0};
  std::atomic<bool> report_throws{false};

  AdminTarget target() {
    AdminTarget t;
    t.report = [this]() -> Json {
      ++report_calls;
      if (report_throws) throw std::runtime_error("report exploded");
      return Json{{"requests", 42}, {"stages", {{"default/fault", {{"injected", 3}}}}}};
    };
    t.stages = [this] {
      std::lock_guard lock(mutex);
      return stage_list;
    };
    t.call = [this](const std::string& stage, const AdminRequest& request) {
      {
        std::lock_guard lock(mutex);
        calls.push_back(RecordedCall{stage, request});
      }
      if (stage == "fail") throw std::runtime_error("stage fail exploded");
      AdminReply reply;
      reply.status = 201;
      reply.body = Json{{"stage", stage}, {"method", request.method}, {"path", request.path}};
      return reply;
    };
    return t;
  }

  void set_stages(Stages stages) {
    std::lock_guard lock(mutex);
    stage_list = std::move(stages);
  }

  std::vector<RecordedCall> take_calls() {
    std::lock_guard lock(mutex);
    return std::exchange(calls, {});
  }
};

std::unique_ptr<httplib::Client> client_for(const AdminServer& server) {
  auto cli = std::make_unique<httplib::Client>("127.0.0.1", server.port());
  cli->set_connection_timeout(std::chrono::seconds(5));
  cli->set_read_timeout(std::chrono::seconds(10));
  cli->set_write_timeout(std::chrono::seconds(10));
  cli->set_tcp_nodelay(true);
  return cli;
}

// check_json asserts the documented response shape (JSON, 2-space indent, trailing newline) and parses it.
Json check_json(const httplib::Result& res) {
  REQUIRE(res);
  CHECK(res->get_header_value("Content-Type") == "application/json");
  CHECK(!res->body.empty());
  CHECK(res->body.back() == '\n');
  Json doc = Json::parse(res->body);
  CHECK(res->body == doc.dump(2) + "\n");
  return doc;
}

void check_error(const httplib::Result& res, int status) {
  REQUIRE(res);
  CHECK(res->status == status);
  Json doc = check_json(res);
  REQUIRE(doc.contains("error"));
  CHECK(doc["error"].is_string());
  CHECK(!doc["error"].get<std::string>().empty());
}

bool port_accepts(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

bool ipv6_loopback_available() {
  int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_addr = in6addr_loopback;
  bool ok = ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

// Running is a started server on 127.0.0.1:0 backed by a FakeEngine.
struct Running {
  FakeEngine engine;
  AdminServer server{ListenAddress{"127.0.0.1", 0}, engine.target()};
  Running() { server.start(); }
};

}  // namespace

TEST_SUITE("admin") {
  TEST_CASE("index and health answer JSON on an ephemeral loopback port") {
    Running r;
    REQUIRE(r.server.port() != 0);
    CHECK(r.server.url() == "http://127.0.0.1:" + std::to_string(r.server.port()));
    auto cli = client_for(r.server);

    auto index = cli->Get("/");
    REQUIRE(index);
    CHECK(index->status == 200);
    Json doc = check_json(index);
    REQUIRE(doc["endpoints"].is_array());
    CHECK(doc["endpoints"].size() == 10);
    auto listed = [&](const std::string& endpoint) {
      for (const auto& e : doc["endpoints"])
        if (e == endpoint) return true;
      return false;
    };
    CHECK(listed("GET /health"));
    CHECK(listed("GET /report"));
    CHECK(listed("GET /stages"));

    auto health = cli->Get("/health");
    REQUIRE(health);
    CHECK(health->status == 200);
    CHECK(check_json(health) == Json{{"ok", true}});
  }

  TEST_CASE("report is the target's report, whole even when a Range is asked for") {
    Running r;
    auto cli = client_for(r.server);
    auto res = cli->Get("/report");
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(check_json(res) == Json{{"requests", 42}, {"stages", {{"default/fault", {{"injected", 3}}}}}});
    CHECK(r.engine.report_calls == 1);

    // httplib would slice a plain body into a 206; the admin API always answers with the whole document.
    auto ranged = cli->Get("/report", httplib::Headers{{"Range", "bytes=0-3"}});
    REQUIRE(ranged);
    CHECK(ranged->status == 200);
    CHECK(check_json(ranged)["requests"] == 42);
    CHECK(r.engine.report_calls == 2);
  }

  TEST_CASE("stages lists names and types in the target's order") {
    Running r;
    auto cli = client_for(r.server);
    auto res = cli->Get("/stages");
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(check_json(res) == Json::parse(R"([{"name": "default/fault", "type": "fault"},
                                             {"name": "a", "type": "headers"},
                                             {"name": "a/b", "type": "split"},
                                             {"name": "fail", "type": "fault"}])"));

    r.engine.set_stages({});
    auto empty = cli->Get("/stages");
    REQUIRE(empty);
    CHECK(empty->status == 200);
    CHECK(empty->body == "[]\n");
  }

  TEST_CASE("stage calls forward method, rest of the path and body for a name containing a slash") {
    Running r;
    auto cli = client_for(r.server);

    auto get = cli->Get("/stages/default/fault");
    REQUIRE(get);
    CHECK(get->status == 201);
    CHECK(check_json(get) == Json{{"stage", "default/fault"}, {"method", "GET"}, {"path", ""}});

    const std::string rule = R"({"match": {"path": "/pay"}, "delay": "2s"})";
    auto put = cli->Put("/stages/default/fault/rules/slow-pay", rule, "application/json");
    REQUIRE(put);
    CHECK(put->status == 201);
    CHECK(check_json(put) ==
          Json{{"stage", "default/fault"}, {"method", "PUT"}, {"path", "/rules/slow-pay"}});

    auto post = cli->Post("/stages/default/fault/rules", "{}", "application/json");
    REQUIRE(post);
    CHECK(post->status == 201);

    auto del = cli->Delete("/stages/default/fault/rules/slow-pay", "bye", "text/plain");
    REQUIRE(del);
    CHECK(del->status == 201);
    CHECK(check_json(del)["method"] == "DELETE");

    auto calls = r.engine.take_calls();
    REQUIRE(calls.size() == 4);
    CHECK(calls[0].stage == "default/fault");
    CHECK(calls[0].request.method == "GET");
    CHECK(calls[0].request.path == "");
    CHECK(calls[0].request.body == "");
    CHECK(calls[1].request.method == "PUT");
    CHECK(calls[1].request.path == "/rules/slow-pay");
    CHECK(calls[1].request.body == rule);
    CHECK(calls[2].request.method == "POST");
    CHECK(calls[2].request.path == "/rules");
    CHECK(calls[2].request.body == "{}");
    CHECK(calls[3].request.method == "DELETE");
    CHECK(calls[3].request.body == "bye");

    // A multipart Content-Type does not trip httplib's multipart reader: the body arrives as sent.
    const std::string form = "--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--x--\r\n";
    auto multipart = cli->Post("/stages/a", form, "multipart/form-data; boundary=x");
    REQUIRE(multipart);
    CHECK(multipart->status == 201);
    calls = r.engine.take_calls();
    REQUIRE(calls.size() == 1);
    CHECK(calls[0].request.body == form);
  }

  TEST_CASE("the longest stage name that prefixes the path at a '/' boundary wins") {
    Running r;
    auto cli = client_for(r.server);
    struct Case {
      std::string target, stage, path;
    };
    const std::vector<Case> cases{
        {"/stages/a", "a", ""},         {"/stages/a/", "a", "/"},           {"/stages/a/b", "a/b", ""},
        {"/stages/a/b/c", "a/b", "/c"}, {"/stages/a/bc", "a", "/bc"},       {"/stages/a/c/b", "a", "/c/b"},
        {"/stages/a/b/", "a/b", "/"},   {"/stages/a/b/b/x", "a/b", "/b/x"},
    };
    for (const auto& c : cases) {
      CAPTURE(c.target);
      auto res = cli->Get(c.target);
      REQUIRE(res);
      CHECK(res->status == 201);
      CHECK(check_json(res) == Json{{"stage", c.stage}, {"method", "GET"}, {"path", c.path}});
    }
    // The resolution must not depend on the order the target lists stages in.
    r.engine.set_stages({{"a/b", "split"}, {"a", "headers"}});
    auto res = cli->Get("/stages/a/b/c");
    REQUIRE(res);
    CHECK(check_json(res)["stage"] == "a/b");
  }

  TEST_CASE("unknown paths and stages are JSON 404s") {
    Running r;
    auto cli = client_for(r.server);
    for (const std::string target : {"/nope", "/health/", "/stage/a", "/stagesx", "/report/x"}) {
      CAPTURE(target);
      check_error(cli->Get(target), 404);
    }
    for (const std::string target : {"/stages/", "/stages/missing", "/stages/ab", "/stages/default",
                                     "/stages/default/faulty", "/stages/A"}) {
      CAPTURE(target);
      auto res = cli->Get(target);
      check_error(res, 404);
      Json doc = Json::parse(res->body);
      CHECK(doc["error"].get<std::string>().find("no stage named") == 0);
    }
    auto res = cli->Put("/stages/missing/rules", "{}", "application/json");
    check_error(res, 404);
    CHECK(Json::parse(res->body)["error"] == "no stage named \"missing/rules\"");
    CHECK(r.engine.take_calls().empty());
  }

  TEST_CASE("a wrong method is a 405 with Allow") {
    Running r;
    auto cli = client_for(r.server);
    auto post_health = cli->Post("/health", "{}", "application/json");
    check_error(post_health, 405);
    CHECK(post_health->get_header_value("Allow") == "GET, HEAD");
    check_error(cli->Delete("/"), 405);
    check_error(cli->Put("/report", "{}", "application/json"), 405);
    check_error(cli->Post("/stages", "{}", "application/json"), 405);
    check_error(cli->Options("/stages"), 405);
    CHECK(r.engine.report_calls == 0);

    auto patch = cli->Patch("/stages/a/rules", "{}", "application/json");
    check_error(patch, 405);
    CHECK(patch->get_header_value("Allow") == "GET, HEAD, PUT, POST, DELETE");
    CHECK(r.engine.take_calls().empty());

    // HEAD reaches the GET handlers: fine on a fixed endpoint.
    auto head = cli->Head("/health");
    REQUIRE(head);
    CHECK(head->status == 200);
  }

  TEST_CASE("request bodies over 1 MiB are refused with 413, sized or chunked") {
    Running r;
    auto cli = client_for(r.server);

    const std::string exact(kMiB, 'x');
    auto ok = cli->Put("/stages/a", exact, "application/octet-stream");
    REQUIRE(ok);
    CHECK(ok->status == 201);
    auto calls = r.engine.take_calls();
    REQUIRE(calls.size() == 1);
    CHECK(calls[0].request.body.size() == kMiB);

    const std::string over(kMiB + 1, 'x');
    auto sized = cli->Put("/stages/a", over, "application/octet-stream");
    check_error(sized, 413);

    // Chunked: httplib's own payload limit only covers Content-Length, so this is the server's cap.
    const std::string piece(64 * 1024, 'y');
    auto chunked = cli->Post(
        "/stages/a",
        [&](std::size_t offset, httplib::DataSink& sink) {
          if (offset >= 2 * kMiB) {
            sink.done();
          } else {
            sink.write(piece.data(), piece.size());
          }
          return true;
        },
        "application/octet-stream");
    check_error(chunked, 413);
    CHECK(r.engine.take_calls().empty());

    // The server is still fine afterwards.
    auto health = cli->Get("/health");
    REQUIRE(health);
    CHECK(health->status == 200);
  }

  TEST_CASE("an exception from the target is a 500 with its message and the server keeps serving") {
    Running r;
    auto cli = client_for(r.server);

    auto call = cli->Post("/stages/fail/x", "{}", "application/json");
    check_error(call, 500);
    CHECK(Json::parse(call->body)["error"] == "stage fail exploded");

    r.engine.report_throws = true;
    auto report = cli->Get("/report");
    check_error(report, 500);
    CHECK(Json::parse(report->body)["error"] == "report exploded");

    auto health = cli->Get("/health");
    REQUIRE(health);
    CHECK(health->status == 200);
  }

  TEST_CASE("a throwing stage list and an invalid stage status are 500s") {
    AdminTarget target;
    target.stages = []() -> Stages { throw std::runtime_error("no list today"); };
    AdminServer server(ListenAddress{"127.0.0.1", 0}, std::move(target));
    server.start();
    auto cli = client_for(server);
    auto list = cli->Get("/stages");
    check_error(list, 500);
    CHECK(Json::parse(list->body)["error"] == "no list today");
    check_error(cli->Get("/stages/a"), 500);
    // An unset report callback is a null report, not an error.
    auto report = cli->Get("/report");
    REQUIRE(report);
    CHECK(report->status == 200);
    CHECK(report->body == "null\n");

    AdminTarget odd;
    odd.stages = [] { return Stages{{"s", "t"}}; };
    odd.call = [](const std::string&, const AdminRequest&) { return AdminReply{0, Json::object()}; };
    AdminServer odd_server(ListenAddress{"127.0.0.1", 0}, std::move(odd));
    odd_server.start();
    check_error(client_for(odd_server)->Get("/stages/s"), 500);
  }

  TEST_CASE("a slow stage call does not hold up other admin requests") {
    std::promise<void> release;
    auto released = release.get_future().share();
    std::atomic<bool> entered{false};
    AdminTarget target;
    target.stages = [] { return Stages{{"slow", "fault"}}; };
    target.call = [&](const std::string&, const AdminRequest&) {
      entered = true;
      released.wait_for(std::chrono::seconds(10));
      return AdminReply{};
    };
    AdminServer server(ListenAddress{"127.0.0.1", 0}, std::move(target));
    server.start();

    std::thread slow([&] {
      auto cli = client_for(server);
      auto res = cli->Get("/stages/slow");
      CHECK(res);
    });
    auto deadline = Clock::now() + std::chrono::seconds(5);
    while (!entered && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    REQUIRE(entered);

    auto start = Clock::now();
    auto health = client_for(server)->Get("/health");
    auto took = Clock::now() - start;
    release.set_value();
    slow.join();
    REQUIRE(health);
    CHECK(health->status == 200);
    CHECK(took < std::chrono::seconds(1));
  }

  TEST_CASE("a non-loopback address is refused in the constructor, naming the address") {
    for (const auto& address :
         {ListenAddress{"0.0.0.0", 9090}, ListenAddress{"::", 0}, ListenAddress{"10.0.0.1", 8080},
          ListenAddress{"example.com", 80}, ListenAddress{"", 0}}) {
      CAPTURE(address.to_string());
      bool threw = false;
      try {
        AdminServer server(address, AdminTarget{});
      } catch (const std::invalid_argument& e) {
        threw = true;
        CHECK(std::string(e.what()).find(address.to_string()) != std::string::npos);
      }
      CHECK(threw);
    }
    CHECK_NOTHROW(AdminServer(ListenAddress{"127.0.0.1", 0}, AdminTarget{}));
    CHECK_NOTHROW(AdminServer(ListenAddress{"localhost", 0}, AdminTarget{}));
  }

  TEST_CASE("is_loopback_host accepts only loopback literals and localhost") {
    using rproxy::is_loopback_host;
    for (const std::string host : {"127.0.0.1", "127.5.5.5", "127.255.255.255", "::1", "0:0:0:0:0:0:0:1",
                                   "localhost", "LocalHost", "::ffff:127.0.0.1"}) {
      CAPTURE(host);
      CHECK(is_loopback_host(host));
    }
    for (const std::string host :
         {"0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "126.255.255.255", "example.com", "",
          "127.0.0.1.example.com", "localhost.example.com", "::2", "::ffff:10.0.0.1", "[::1]", "127.1"}) {
      CAPTURE(host);
      CHECK_FALSE(is_loopback_host(host));
    }
  }

  TEST_CASE("localhost binds 127.0.0.1 and ::1 gets a bracketed URL") {
    AdminServer local(ListenAddress{"localhost", 0}, AdminTarget{});
    local.start();
    CHECK(local.url() == "http://127.0.0.1:" + std::to_string(local.port()));
    CHECK(port_accepts(local.port()));

    if (!ipv6_loopback_available()) {
      MESSAGE("no IPv6 loopback here; skipping the ::1 half");
      return;
    }
    AdminServer v6(ListenAddress{"::1", 0}, AdminTarget{});
    v6.start();
    CHECK(v6.url() == "http://[::1]:" + std::to_string(v6.port()));
    httplib::Client cli("::1", v6.port());
    cli.set_connection_timeout(std::chrono::seconds(5));
    auto res = cli.Get("/health");
    REQUIRE(res);
    CHECK(res->status == 200);
  }

  TEST_CASE("a port already in use is a runtime_error, not a shared port") {
    Running first;
    AdminServer second(ListenAddress{"127.0.0.1", first.server.port()}, AdminTarget{});
    bool threw = false;
    try {
      second.start();
    } catch (const std::runtime_error& e) {
      threw = true;
      CHECK(std::string(e.what()).find("127.0.0.1:" + std::to_string(first.server.port())) !=
            std::string::npos);
    }
    CHECK(threw);
    CHECK(second.port() == 0);
  }

  TEST_CASE("stop is idempotent and the port stops accepting") {
    AdminServer never_started(ListenAddress{"127.0.0.1", 0}, AdminTarget{});
    never_started.stop();
    never_started.stop();
    CHECK_THROWS_AS(never_started.start(), std::logic_error);

    Running r;
    const auto port = r.server.port();
    CHECK(port_accepts(port));
    {
      auto cli = client_for(r.server);
      auto res = cli->Get("/health");
      REQUIRE(res);
      CHECK(res->status == 200);
    }
    CHECK_THROWS_AS(r.server.start(), std::logic_error);
    auto start = Clock::now();
    r.server.stop();
    CHECK(Clock::now() - start < std::chrono::seconds(3));
    r.server.stop();
    CHECK_FALSE(port_accepts(port));
    httplib::Client cli("127.0.0.1", port);
    cli.set_connection_timeout(std::chrono::seconds(2));
    CHECK_FALSE(cli.Get("/health"));
  }
}
