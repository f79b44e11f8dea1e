// Router picks the route for a request: a matching host condition first (exact over "*.suffix"), then the
// path (exact beats the longest prefix), then the route with more method/header conditions, then
// declaration order.
#pragma once

#include <string>
#include <vector>

#include "rproxy/http.hpp"
#include "rproxy/scenario.hpp"

namespace rproxy {

class Router {
 public:
  explicit Router(const std::vector<Route>& routes);
  // match returns the index of the route for this request, or -1.
  int match(const RequestHead& head) const;

 private:
  struct Entry {
    const Route* route;
    int index;
  };
  std::vector<Entry> ordered_;  // most specific first
};

// route_matches tells whether route's conditions all hold for head.
bool route_matches(const Route& route, const RequestHead& head);
// path_prefix_matches is segment-aware: "/api" matches "/api", "/api/x", "/api?q" but not "/apix".
bool path_prefix_matches(std::string_view prefix, std::string_view path);
// host_matches compares a Host header value (port ignored) with "name" or "*.suffix".
bool host_matches(std::string_view pattern, std::string_view host_header);
// upstream_target applies strip_prefix / rewrite to an origin-form target (query kept byte for byte).
std::string upstream_target(const Route& route, std::string_view target);

}  // namespace rproxy
