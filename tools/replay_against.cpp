#include "replay_against.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <iostream>

#include "cli.hpp"
#include "core/proxy_headers.hpp"
#include "core/shadow_client.hpp"
#include "run_scenario.hpp"
#include "stages/replay.hpp"
#include "stages/shadow_diff.hpp"
#include "stages/split.hpp"

namespace rproxy::cli {

namespace {

constexpr std::uint64_t kCaptureCap = 1024 * 1024;

CapturedResponse recorded_response(const store::Interaction& it, const std::string& bodies_dir) {
  CapturedResponse r;
  r.status = it.status;
  r.headers = it.response_headers;
  auto bytes = store::read_body_bytes(it.response_body, bodies_dir);
  BodyCapture capture{&r, kCaptureCap, {}};
  capture.add(bytes);
  return r;
}

std::string request_head(const store::Interaction& it, const Url& url, std::uint64_t body_size) {
  RequestHead head;
  head.method = it.method;
  head.target = it.target;
  head.version_minor = 1;
  head.headers = it.request_headers;
  remove_hop_by_hop(head.headers);
  head.headers.remove("Expect");
  head.headers.set("Host", host_header_value(url));
  if (body_size > 0 || it.request_headers.has("Content-Length"))
    head.headers.set("Content-Length", std::to_string(body_size));
  head.headers.set("Connection", "close");
  return serialize(head);
}

}  // namespace

int replay_against(const AgainstOptions& o) {
  Url url;
  if (auto err = parse_url(o.url, url)) {
    std::cerr << "rproxy: error: --against " << o.url << ": " << *err << "\n";
    return kExitUsage;
  }
  TlsTarget tls;
  if (url.scheme == "https") {
    try {
      tls.context = tls::make_client_context(o.upstream_ca, o.insecure);
      tls.verify = !o.insecure;
    } catch (const std::exception& e) {
      std::cerr << "rproxy: error: --upstream-ca: " << e.what() << "\n";
      return kExitUsage;
    }
  }
  stages::DiffOptions diff;
  if (!o.compare_headers.empty()) diff.headers = o.compare_headers;
  for (const auto& f : o.ignore_json) {
    if (auto err = stages::check_ignore_entry(f)) {
      std::cerr << "rproxy: error: --ignore-json " << f << ": " << *err << "\n";
      return kExitUsage;
    }
  }
  diff.ignore = o.ignore_json;
  store::CassettePath path;
  store::Cassette cassette;
  try {
    cassette = stages::load_recording(o.recording, path);
  } catch (const std::exception& e) {
    std::cerr << "rproxy: error: " << e.what() << "\n";
    return kExitUsage;
  }

  nlohmann::json rows = nlohmann::json::array();
  std::uint64_t identical = 0;
  std::uint64_t different = 0;
  asio::io_context ctx;
  for (const auto& it : cassette.interactions) {
    const std::string body = store::read_body_bytes(it.request_body, path.bodies_dir);
    const std::string head = request_head(it, url, body.size());
    CapturedResponse live;
    asio::co_spawn(ctx,
                   exchange_once(url, tls, head, body, it.method, kCaptureCap, std::chrono::seconds(30), live),
                   asio::detached);
    ctx.run();
    ctx.restart();
    auto recorded = recorded_response(it, path.bodies_dir);
    auto diffs = stages::compare_responses(recorded, live, diff);
    std::string line = "#" + std::to_string(it.id) + " " + it.method + " " + it.target;
    if (diffs.empty()) {
      ++identical;
      std::cout << line << ": same\n";
      continue;
    }
    ++different;
    nlohmann::json list = nlohmann::json::array();
    std::cout << line << ": differs\n";
    for (const auto& d : diffs) {
      std::cout << "    " << d.where << ": recorded " << d.primary << ", live " << d.shadow << "\n";
      list.push_back({{"where", d.where}, {"recorded", d.primary}, {"live", d.shadow}});
    }
    rows.push_back({{"id", it.id}, {"request", it.method + " " + it.target}, {"differences", list}});
  }
  std::cerr << "rproxy: against " << o.url << ": " << identical << " same, " << different << " different of "
            << cassette.interactions.size() << "\n";
  if (!o.report.empty()) {
    nlohmann::json rep = {{"against", o.url},
                          {"recording", o.recording},
                          {"same", identical},
                          {"different", different},
                          {"differences", rows}};
    std::string error;
    if (!write_file_atomically(
            o.report, rep.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n", error)) {
      std::cerr << "rproxy: error: " << error << "\n";
      return kExitRuntime;
    }
  }
  return different == 0 ? kExitOk : stages::kStrictReplayExit;
}

}  // namespace rproxy::cli
