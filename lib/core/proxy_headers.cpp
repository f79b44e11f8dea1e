#include "core/proxy_headers.hpp"

#include <algorithm>
#include <array>
#include <string_view>

namespace rproxy {

namespace {
constexpr std::array<std::string_view, 10> kHopByHop = {
    "Connection", "Keep-Alive", "Proxy-Connection", "TE",      "Trailer", "Transfer-Encoding",
    "Upgrade",    "HTTP2-Settings", "Content-Length", "Expect"};

void append_list(Headers& headers, std::string_view name, std::string_view item) {
  auto existing = headers.joined(name);
  headers.set(name, existing.empty() ? std::string(item) : existing + ", " + std::string(item));
}
}  // namespace

void strip_connection_options(Headers& headers) {
  std::vector<std::string> named;
  for (const auto& h : headers)
    if (iequals(h.name, "Connection"))
      for (auto t : split_list(h.value))
        if (!iequals(t, "Host")) named.emplace_back(t);
  for (const auto& n : named) headers.remove(n);
  headers.remove("Connection");
}

void remove_hop_by_hop(Headers& headers) {
  // Every message passes through here twice: one pass over the fields, not one per hop-by-hop name.
  // The fields Connection names are hop-by-hop too (RFC 9110 §7.6.1). Their names are copied first:
  // remove_if moves fields while it runs.
  auto& fields = headers.fields();
  std::string listed;
  for (const auto& h : fields) {
    if (!iequals(h.name, "Connection")) continue;
    if (!listed.empty()) listed += ',';
    listed += h.value;
  }
  auto named_by_connection = [&](std::string_view name) {
    std::string_view rest = listed;
    while (!rest.empty()) {
      auto comma = rest.find(',');
      auto token = rest.substr(0, comma);
      while (!token.empty() && (token.front() == ' ' || token.front() == '\t')) token.remove_prefix(1);
      while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
      if (iequals(token, name) && !iequals(token, "Host")) return true;
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
    return false;
  };
  auto hop = [&](const Header& h) {
    return std::any_of(kHopByHop.begin(), kHopByHop.end(),
                       [&](std::string_view n) { return n.size() == h.name.size() && iequals(n, h.name); }) ||
           (!listed.empty() && named_by_connection(h.name));
  };
  fields.erase(std::remove_if(fields.begin(), fields.end(), hop), fields.end());
}

std::string host_header_value(const Url& url) {
  if (url.port != (url.scheme == "https" ? 443 : 80)) return url.authority();
  if (url.host.find(':') != std::string::npos) return "[" + url.host + "]";
  return url.host;
}

std::size_t via_hops(const Headers& headers) {
  std::size_t n = 0;
  for (const auto& h : headers) {
    if (!iequals(h.name, "Via")) continue;
    for (auto entry : split_list(h.value)) {
      // received-protocol RWS received-by [ RWS comment ]
      auto sp = entry.find_first_of(" \t");
      if (sp == std::string_view::npos) continue;
      auto by = entry.substr(sp);
      by.remove_prefix(std::min(by.size(), by.find_first_not_of(" \t")));
      by = by.substr(0, by.find_first_of(" \t"));
      if (by == kViaPseudonym) ++n;
    }
  }
  return n;
}

void prepare_upstream_request(RequestHead& head, const ForwardContext& ctx) {
  std::string upgrade;
  if (ctx.upgrade) upgrade = head.headers.joined("Upgrade");
  auto original_host = std::string(head.headers.get("Host").value_or(""));
  remove_hop_by_hop(head.headers);
  // Proxy-Authorization is meant for this proxy, never for the origin.
  head.headers.remove("Proxy-Authorization");
  if (!ctx.client_ip.empty()) append_list(head.headers, "X-Forwarded-For", ctx.client_ip);
  head.headers.set("X-Forwarded-Proto", ctx.scheme);
  if (!original_host.empty()) head.headers.set("X-Forwarded-Host", original_host);
  append_list(head.headers, "Via", std::string(head.version_minor == 0 ? "1.0 " : "1.1 ") + kViaPseudonym);
  if (ctx.send_upstream_host || original_host.empty()) head.headers.set("Host", ctx.upstream_authority);
  if (ctx.upgrade) {
    head.headers.set("Connection", "Upgrade");
    head.headers.set("Upgrade", upgrade);
  }
  head.version_minor = 1;
}

void prepare_client_response(ResponseHead& head, bool upgrade) {
  std::string up;
  if (upgrade) up = head.headers.joined("Upgrade");
  remove_hop_by_hop(head.headers);
  append_list(head.headers, "Via", std::string(head.version_minor == 0 ? "1.0 " : "1.1 ") + kViaPseudonym);
  if (upgrade) {
    head.headers.set("Connection", "Upgrade");
    head.headers.set("Upgrade", up);
  }
  head.version_minor = 1;
  if (head.reason.empty()) head.reason = std::string(reason_phrase(head.status));
}

}  // namespace rproxy
