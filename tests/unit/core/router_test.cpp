// Unit tests for lib/core/router: matching rules and target rewriting, no sockets.
#include <doctest/doctest.h>

#include "core/router.hpp"

using namespace rproxy;

namespace {
RequestHead req(std::string method, std::string target, std::string host = "app.localhost") {
  RequestHead h;
  h.method = std::move(method);
  h.target = std::move(target);
  h.headers.add("Host", std::move(host));
  return h;
}
Route prefix_route(std::string name, std::string prefix) {
  Route r;
  r.name = std::move(name);
  r.match.path_prefix = std::move(prefix);
  return r;
}
}  // namespace

TEST_CASE("router: path prefixes are segment aware") {
  CHECK(path_prefix_matches("/api", "/api"));
  CHECK(path_prefix_matches("/api", "/api/"));
  CHECK(path_prefix_matches("/api", "/api/users"));
  CHECK_FALSE(path_prefix_matches("/api", "/apix"));
  CHECK_FALSE(path_prefix_matches("/api", "/ap"));
  CHECK(path_prefix_matches("/api/", "/api/x"));
  CHECK_FALSE(path_prefix_matches("/api/", "/api"));
  CHECK(path_prefix_matches("/", "/anything"));
}

TEST_CASE("router: longest prefix wins whatever the declaration order") {
  std::vector<Route> routes{prefix_route("root", "/"), prefix_route("api", "/api"),
                            prefix_route("v1", "/api/v1")};
  Router router(routes);
  CHECK(router.match(req("GET", "/")) == 0);
  CHECK(router.match(req("GET", "/api/users?x=1")) == 1);
  CHECK(router.match(req("GET", "/api/v1/users")) == 2);
  CHECK(router.match(req("GET", "/api/v10")) == 1);
}

TEST_CASE("router: exact path beats any prefix") {
  std::vector<Route> routes{prefix_route("api", "/api"), Route{}};
  routes[1].name = "health";
  routes[1].match.path = "/api/health";
  Router router(routes);
  CHECK(router.match(req("GET", "/api/health")) == 1);
  CHECK(router.match(req("GET", "/api/health?full=1")) == 1);
  CHECK(router.match(req("GET", "/api/health/x")) == 0);
}

TEST_CASE("router: host method and header conditions") {
  std::vector<Route> routes{prefix_route("any", "/"), prefix_route("admin", "/"), prefix_route("posts", "/"),
                            prefix_route("beta", "/")};
  routes[1].match.host = "admin.localhost";
  routes[2].match.methods = {"POST"};
  routes[3].match.headers = {{"X-Beta", "1"}};
  Router router(routes);
  CHECK(router.match(req("GET", "/", "admin.localhost:8080")) == 1);
  CHECK(router.match(req("GET", "/", "ADMIN.localhost")) == 1);
  CHECK(router.match(req("POST", "/")) == 2);
  auto beta = req("GET", "/");
  beta.headers.add("x-beta", "1");
  CHECK(router.match(beta) == 3);
  auto wrong = req("GET", "/");
  wrong.headers.add("X-Beta", "2");
  CHECK(router.match(wrong) == 0);
}

TEST_CASE("router: wildcard hosts match subdomains only") {
  CHECK(host_matches("*.localhost", "a.localhost"));
  CHECK(host_matches("*.localhost", "a.b.localhost:3000"));
  CHECK_FALSE(host_matches("*.localhost", "localhost"));
  CHECK_FALSE(host_matches("*.localhost", "evillocalhost"));
  CHECK(host_matches("[::1]", "[::1]:8080"));
}

TEST_CASE("router: no matching route gives -1") {
  std::vector<Route> routes{prefix_route("api", "/api")};
  Router router(routes);
  CHECK(router.match(req("GET", "/other")) == -1);
}

TEST_CASE("router: strip_prefix and rewrite keep the query byte for byte") {
  auto r = prefix_route("api", "/api");
  r.strip_prefix = true;
  CHECK(upstream_target(r, "/api/users?q=a%20b+c") == "/users?q=a%20b+c");
  CHECK(upstream_target(r, "/api") == "/");
  CHECK(upstream_target(r, "/api?x") == "/?x");
  auto slash = prefix_route("api", "/api/");
  slash.strip_prefix = true;
  CHECK(upstream_target(slash, "/api/users") == "/users");
  Route rw = prefix_route("rw", "/old");
  rw.rewrite = "/new/path";
  CHECK(upstream_target(rw, "/old/x?y=1") == "/new/path?y=1");
  CHECK(upstream_target(prefix_route("plain", "/a"), "/a/%2F?x") == "/a/%2F?x");
  CHECK(upstream_target(r, "*") == "*");
}

TEST_CASE("router: a host route wins over a catch-all path prefix") {
  std::vector<Route> routes{Route{}, prefix_route("frontend", "/"), prefix_route("wild", "/")};
  routes[0].name = "admin";
  routes[0].match.host = "admin.localhost";
  routes[2].match.host = "*.localhost";
  Router router(routes);
  CHECK(router.match(req("GET", "/", "admin.localhost")) == 0);
  CHECK(router.match(req("GET", "/", "shop.localhost")) == 2);
  CHECK(router.match(req("GET", "/", "example.com")) == 1);
}
