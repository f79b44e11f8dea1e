#include "admin_server.hpp"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "httplib_setup.hpp"
#include "rproxy/http.hpp"  // iequals

namespace rproxy {
namespace {

using Json = nlohmann::json;

constexpr std::size_t kMaxBody = 1024 * 1024;
// An oversized chunked body is still read (and dropped) up to this much so the connection stays in step
// for its next request, as httplib does for an oversized Content-Length; past it the reader gives up.
constexpr std::size_t kMaxDrain = 16 * kMaxBody;
// httplib notices stop() only between keep-alive rounds, so this also bounds how long stop() can wait.
constexpr time_t kKeepAliveTimeoutSec = 2;
constexpr std::size_t kKeepAliveMaxCount = 100;  // never 0: httplib's assert is compiled out
constexpr time_t kIoTimeoutSec = 10;
constexpr const char* kJsonType = "application/json";
constexpr std::string_view kStagesPrefix = "/stages/";

std::string quoted(const std::string& s) {
  return "\"" + s + "\"";
}

// "localhost" may resolve to either family, and httplib binds only the first answer: pin it.
std::string bind_host(const std::string& host) {
  return iequals(host, "localhost") ? "127.0.0.1" : host;
}

std::string dump(const Json& body) {
  // Stage replies may carry arbitrary bytes; invalid UTF-8 becomes U+FFFD rather than a throw.
  return body.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

struct Reply {
  int status = 200;
  Json body;
  std::string allow;  // the Allow header of a 405
  std::string text{};   // a plain-text body instead of JSON (metrics)
};

// The token comparison takes the same time wherever the first difference is.
bool constant_time_equal(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

Reply error_reply(int status, const std::string& message) {
  return Reply{status, Json{{"error", message}}, ""};
}

Reply method_not_allowed(const std::string& method, const std::string& path, const std::string& allow) {
  auto reply =
      error_reply(405, "method " + method + " is not allowed on " + path + " (allowed: " + allow + ")");
  reply.allow = allow;
  return reply;
}

enum class BodyStatus { Ok, TooLarge, Unreadable };

BodyStatus read_body(const httplib::Request& req, httplib::Response& res,
                     const httplib::ContentReader& reader, std::string& body) {
  // Safe: req is process_request's non-const local. A multipart Content-Type would route the plain reader
  // to httplib's (unset) multipart callbacks and throw; the admin API reads every body as opaque text.
  const_cast<httplib::Request&>(req).headers.erase("Content-Type");
  std::size_t seen = 0;
  bool ok = reader([&](const char* data, std::size_t size) {
    seen += size;
    if (seen > kMaxDrain) return false;
    if (seen <= kMaxBody) body.append(data, size);
    return true;
  });
  // httplib itself answers an oversized Content-Length with status 413 and a failed read.
  if (seen > kMaxBody || res.status == 413) return BodyStatus::TooLarge;
  return ok ? BodyStatus::Ok : BodyStatus::Unreadable;
}

class AdminHttpServer final : public httplib::Server {
 public:
  explicit AdminHttpServer(AdminTarget target) : target_(std::move(target)) {
    apply_server_defaults(*this, kKeepAliveMaxCount, kKeepAliveTimeoutSec, kIoTimeoutSec);
    set_payload_max_length(kMaxBody);
    // Every method goes to handle(), so wrong methods get a JSON 405 instead of httplib's plain 404, and
    // every body is read through the capped reader.
    route_every_method(*this, [this](const httplib::Request& req, httplib::Response& res,
                                     const httplib::ContentReader* reader) { handle(req, res, reader); });
    // Errors httplib produces itself (malformed request, 414, unroutable method) get a JSON body too.
    set_error_handler(httplib::Server::Handler([](const httplib::Request& req, httplib::Response& res) {
      const_cast<httplib::Request&>(req).ranges.clear();
      if (res.body.empty())
        res.set_content(dump(Json{{"error", "HTTP " + std::to_string(res.status)}}), kJsonType);
    }));
  }

  int listen_fd() const { return svr_sock_; }

 private:
  void handle(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader* reader) {
    // A Range header would make httplib slice the JSON into a 206.
    const_cast<httplib::Request&>(req).ranges.clear();
    Reply reply;
    try {
      reply = answer(req, res, reader);
    } catch (const std::exception& e) {
      reply = error_reply(500, e.what());
    } catch (...) {
      reply = error_reply(500, "unknown exception");
    }
    res.status = reply.status;
    if (!reply.allow.empty()) res.set_header("Allow", reply.allow);
    if (reply.status == 204 || reply.status == 304) return;  // these must not carry a body
    if (!reply.text.empty()) {
      res.set_content(reply.text, "text/plain; version=0.0.4; charset=utf-8");
      return;
    }
    res.set_content(dump(reply.body), kJsonType);
  }

  Reply answer(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader* reader) {
    // The listener is loopback-only already; this guards against a future bind change or a local proxy.
    if (!is_loopback_host(req.remote_addr))
      return error_reply(403, "the admin endpoint only answers loopback clients, not " + req.remote_addr);
    std::string body;
    if (reader) {
      // Read before routing even when the answer is an error, so a kept-alive connection stays in step.
      switch (read_body(req, res, *reader, body)) {
        case BodyStatus::Ok:
          break;
        case BodyStatus::TooLarge:
          return error_reply(413, "request body over " + std::to_string(kMaxBody) + " bytes");
        case BodyStatus::Unreadable:
          return error_reply(400, "cannot read the request body");
      }
    }
    const std::string method = req.method == "HEAD" ? "GET" : req.method;
    if (!target_.token.empty() && req.path != "/health") {
      auto auth = req.get_header_value("Authorization");
      if (!constant_time_equal(auth, "Bearer " + target_.token)) {
        res.set_header("WWW-Authenticate", "Bearer realm=\"rproxy admin\"");
        return error_reply(401, "this admin endpoint needs Authorization: Bearer <token> (--admin-token-file)");
      }
    }
    if (req.path == "/exchanges" && method == "GET") {
      std::size_t limit = 50;
      if (req.has_param("limit")) {
        auto text = req.get_param_value("limit");
        char* end = nullptr;
        auto n = std::strtoul(text.c_str(), &end, 10);
        if (text.empty() || *end != '\0' || n < 1 || n > 1000) return error_reply(400, "limit must be 1 to 1000");
        limit = n;
      }
      return Reply{200, target_.exchanges ? target_.exchanges(limit) : Json::array(), ""};
    }
    return route(method, req.path, body);
  }

  Reply route(const std::string& method, const std::string& path, const std::string& body) {
    const bool fixed = path == "/" || path == "/health" || path == "/report" || path == "/stages" ||
                       path == "/metrics" || path == "/upstreams" || path == "/summary";
    if (fixed && method != "GET") return method_not_allowed(method, path, "GET, HEAD");
    if (path == "/") return index();
    if (path == "/health") return Reply{200, Json{{"ok", true}}, ""};
    if (path == "/report") return Reply{200, target_.report ? target_.report() : Json(nullptr), ""};
    if (path == "/metrics") {
      Reply r;
      r.text = target_.metrics ? target_.metrics() : std::string("# no metrics\n");
      return r;
    }
    if (path == "/upstreams") return Reply{200, target_.upstreams ? target_.upstreams() : Json::object(), ""};
    if (path == "/scenario") return scenario(method, body);
    if (path == "/summary") return Reply{200, target_.summary ? target_.summary() : Json::array(), ""};
    if (path == "/stages") return stage_list();
    if (path.compare(0, kStagesPrefix.size(), kStagesPrefix) == 0)
      return call_stage(method, path, path.substr(kStagesPrefix.size()), body);
    return error_reply(404, "no endpoint " + path + " (GET / lists them)");
  }

  Reply scenario(const std::string& method, const std::string& body) {
    if (method != "GET" && method != "PUT" && method != "PATCH")
      return method_not_allowed(method, "/scenario", "GET, HEAD, PUT, PATCH");
    if (!target_.scenario) return error_reply(404, "no scenario here");
    if (method == "GET") return Reply{200, target_.scenario(), ""};
    auto doc = Json::parse(body, nullptr, false);
    if (doc.is_discarded()) return error_reply(400, "the body is not JSON");
    if (method == "PATCH") {
      if (!doc.is_object()) return error_reply(400, "a merge patch is a JSON object");
      auto merged = target_.scenario();
      merged.merge_patch(doc);
      doc = std::move(merged);
    }
    if (!target_.replace_scenario) return error_reply(405, "this scenario cannot be changed");
    auto problems = target_.replace_scenario(doc);
    if (!problems.empty()) {
      auto reply = error_reply(400, "invalid scenario: nothing was changed");
      reply.body["problems"] = problems;
      return reply;
    }
    return Reply{200, Json{{"ok", true}, {"scenario", target_.scenario()}}, ""};
  }

  static Reply index() {
    Json endpoints = Json::array({"GET /", "GET /health", "GET /report", "GET /metrics", "GET /upstreams",
                                  "GET /summary", "GET /exchanges", "GET|PUT|PATCH /scenario", "GET /stages",
                                  "GET|PUT|POST|DELETE /stages/<name>[/<path>]"});
    return Reply{200, Json{{"endpoints", std::move(endpoints)}}, ""};
  }

  std::vector<std::pair<std::string, std::string>> stages() const {
    if (!target_.stages) return {};
    return target_.stages();
  }

  Reply stage_list() const {
    Json list = Json::array();
    for (const auto& [name, type] : stages()) list.push_back(Json{{"name", name}, {"type", type}});
    return Reply{200, std::move(list), ""};
  }

  Reply call_stage(const std::string& method, const std::string& path, const std::string& rest,
                   const std::string& body) {
    const auto known = stages();
    const std::string* stage = nullptr;
    for (const auto& entry : known) {
      const std::string& name = entry.first;
      if (name.empty() || (stage && name.size() <= stage->size())) continue;
      if (rest.compare(0, name.size(), name) == 0 && (rest.size() == name.size() || rest[name.size()] == '/'))
        stage = &name;
    }
    if (!stage) {
      auto reply = error_reply(404, "no stage named " + quoted(rest));
      Json names = Json::array();
      for (const auto& entry : known) names.push_back(entry.first);
      reply.body["stages"] = std::move(names);
      return reply;
    }
    if (method != "GET" && method != "PUT" && method != "POST" && method != "DELETE")
      return method_not_allowed(method, path, "GET, HEAD, PUT, POST, DELETE");
    if (!target_.call) return error_reply(404, "stage " + quoted(*stage) + " has no admin API");
    AdminRequest request{method, rest.substr(stage->size()), body};
    AdminReply stage_reply = target_.call(*stage, request);
    if (stage_reply.status < 200 || stage_reply.status > 599)
      return error_reply(500, "stage " + quoted(*stage) + " replied with invalid status " +
                                  std::to_string(stage_reply.status));
    return Reply{stage_reply.status, std::move(stage_reply.body), ""};
  }

  AdminTarget target_;
};

}  // namespace

class AdminServer::Impl {
 public:
  Impl(const ListenAddress& address, AdminTarget target)
      : host(bind_host(address.host)), requested_port(address.port), server(std::move(target)) {}
  const std::string host;
  const std::uint16_t requested_port;
  AdminHttpServer server;
  std::thread thread;
  std::atomic<std::uint16_t> port{0};
  std::atomic<bool> loop_exited{false};
  std::mutex lifecycle_mutex;
  bool started = false;
  bool stopped = false;
};

AdminServer::AdminServer(const ListenAddress& address, AdminTarget target) {
  if (!is_loopback_host(address.host))
    throw std::invalid_argument("admin address " + address.to_string() +
                                " is not a loopback address (use 127.0.0.1, ::1 or localhost): the admin API "
                                "has no authentication");
  impl_ = std::make_unique<Impl>(address, std::move(target));
}

AdminServer::~AdminServer() {
  stop();
}

void AdminServer::start() {
  std::lock_guard lock(impl_->lifecycle_mutex);
  if (impl_->started) throw std::logic_error("AdminServer::start called twice");
  if (impl_->stopped) throw std::logic_error("AdminServer::start called after stop");
  auto& server = impl_->server;
  const auto& host = impl_->host;
  const int requested = impl_->requested_port;
  impl_->port = serve_on_thread(
      server, [&server] { return server.listen_fd(); }, host, static_cast<std::uint16_t>(requested), impl_->thread,
      impl_->loop_exited, "admin endpoint");
  impl_->started = true;
}

std::uint16_t AdminServer::port() const {
  return impl_->port;
}

std::string AdminServer::url() const {
  return "http://" + host_port(impl_->host, impl_->port);
}

void AdminServer::stop() {
  std::lock_guard lock(impl_->lifecycle_mutex);
  if (impl_->stopped) return;
  impl_->stopped = true;
  if (!impl_->started) return;
  impl_->server.stop();
  impl_->thread.join();  // listen_after_bind returns once every connection thread has finished
}


}  // namespace rproxy
