#include "core/router.hpp"

#include <algorithm>
#include <tuple>

namespace rproxy {

bool path_prefix_matches(std::string_view prefix, std::string_view path) {
  if (prefix.empty() || prefix == "/") return true;
  if (path.substr(0, prefix.size()) != prefix) return false;
  if (path.size() == prefix.size() || prefix.back() == '/') return true;
  return path[prefix.size()] == '/';
}

bool host_matches(std::string_view pattern, std::string_view host) {
  // Strip the port; keep IPv6 literals whole.
  if (!host.empty() && host.front() == '[') {
    host = host.substr(0, host.find(']') + 1);
  } else {
    host = host.substr(0, host.find(':'));
  }
  if (pattern.substr(0, 2) == "*.") {
    auto suffix = pattern.substr(1);  // ".example.com"
    return host.size() > suffix.size() && iequals(host.substr(host.size() - suffix.size()), suffix);
  }
  return iequals(pattern, host);
}

bool route_matches(const Route& route, const RequestHead& head) {
  const auto& m = route.match;
  auto path = head.path();
  if (m.path && path != *m.path) return false;
  if (m.path_prefix && !path_prefix_matches(*m.path_prefix, path)) return false;
  if (m.host && !host_matches(*m.host, head.headers.get("Host").value_or(""))) return false;
  if (!m.methods.empty() && std::find(m.methods.begin(), m.methods.end(), head.method) == m.methods.end()) return false;
  for (const auto& [name, want] : m.headers) {
    auto got = head.headers.get(name);
    if (!got || (want != "*" && *got != want)) return false;
  }
  return true;
}

Router::Router(const std::vector<Route>& routes) {
  for (std::size_t i = 0; i < routes.size(); ++i) ordered_.push_back({&routes[i], static_cast<int>(i)});
  // As in nginx and Caddy, the host picks first (exact over wildcard over none), then the path (exact
  // over the longest prefix; no prefix counts as "/"), then the number of method and header conditions.
  auto rank = [](const Route& r) {
    const auto& m = r.match;
    int host_rank = !m.host ? 0 : (m.host->rfind("*.", 0) == 0 ? 1 : 2);
    std::size_t path_rank = m.path ? (1u << 20) : (m.path_prefix ? m.path_prefix->size() : 1);
    std::size_t extra = (m.methods.empty() ? 0 : 1) + m.headers.size();
    return std::tuple{host_rank, path_rank, extra};
  };
  std::stable_sort(ordered_.begin(), ordered_.end(),
                   [&](const Entry& a, const Entry& b) { return rank(*a.route) > rank(*b.route); });
}

int Router::match(const RequestHead& head) const {
  for (const auto& e : ordered_)
    if (route_matches(*e.route, head)) return e.index;
  return -1;
}

std::string upstream_target(const Route& route, std::string_view target) {
  if (target.empty() || target.front() != '/') return std::string(target);  // "*"
  auto q = target.find('?');
  auto path = target.substr(0, q);
  auto query = q == std::string_view::npos ? std::string_view{} : target.substr(q);
  std::string out;
  if (route.rewrite) {
    out = *route.rewrite;
  } else if (route.strip_prefix && route.match.path_prefix && *route.match.path_prefix != "/") {
    auto prefix = std::string_view(*route.match.path_prefix);
    if (prefix.back() == '/') prefix.remove_suffix(1);
    out = std::string(path.substr(std::min(prefix.size(), path.size())));
    if (out.empty() || out.front() != '/') out.insert(out.begin(), '/');
  } else {
    out = std::string(path);
  }
  out += query;
  return out;
}

}  // namespace rproxy
