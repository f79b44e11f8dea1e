// Oracle tests for rproxy::Headers, iequals, split_list, reason_phrase, RequestHead::path/query and
// serialize(), written from include/rproxy/http.hpp alone.

#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <vector>

#include "rproxy/http.hpp"
#include "rproxy/http_parser.hpp"

using namespace std::literals;
using rproxy::Header;
using rproxy::Headers;

namespace {
std::vector<Header> fields(const Headers& h) { return h.fields(); }
std::vector<std::string> strs(const std::vector<std::string_view>& v) { return {v.begin(), v.end()}; }
}  // namespace

TEST_CASE("headers: iequals is ASCII case-insensitive") {
  CHECK(rproxy::iequals("Content-Length", "content-length"));
  CHECK(rproxy::iequals("HOST", "host"));
  CHECK(rproxy::iequals("", ""));
  CHECK(rproxy::iequals("a-B_c~1", "A-b_C~1"));
  CHECK_FALSE(rproxy::iequals("host", "hosts"));
  CHECK_FALSE(rproxy::iequals("host", "hos"));
  CHECK_FALSE(rproxy::iequals("a", ""));
  CHECK_FALSE(rproxy::iequals("Transfer-Encoding", "Transfer_Encoding"));
  // Only ASCII letters fold: '@' (0x40) vs '`' (0x60) and '[' vs '{' differ by 0x20 but are not letters.
  CHECK_FALSE(rproxy::iequals("@", "`"));
  CHECK_FALSE(rproxy::iequals("[", "{"));
  CHECK_FALSE(rproxy::iequals("\xc3\xa9", "\xc3\x89"));
  // Kelvin sign / dotless i tricks must not match ASCII.
  CHECK_FALSE(rproxy::iequals("\xe2\x84\xaa", "k"));
}

TEST_CASE("headers: add keeps order duplicates and spelling") {
  Headers h;
  CHECK(h.empty());
  h.add("Host", "a");
  h.add("x-A", "1");
  h.add("X-a", "2");
  h.add("Accept", "*/*");
  CHECK(h.size() == 4);
  CHECK_FALSE(h.empty());
  CHECK(fields(h) == std::vector<Header>{{"Host", "a"}, {"x-A", "1"}, {"X-a", "2"}, {"Accept", "*/*"}});
  std::vector<std::string> names;
  for (const auto& f : h) names.push_back(f.name);
  CHECK(names == std::vector<std::string>{"Host", "x-A", "X-a", "Accept"});

  Headers init{{"A", "1"}, {"B", "2"}};
  CHECK(fields(init) == std::vector<Header>{{"A", "1"}, {"B", "2"}});
}

TEST_CASE("headers: count has and get are case-insensitive") {
  Headers h{{"Host", "a"}, {"X-A", "1"}, {"x-a", "2"}, {"X-B", ""}};
  CHECK(h.count("x-a") == 2);
  CHECK(h.count("X-A") == 2);
  CHECK(h.count("HOST") == 1);
  CHECK(h.count("missing") == 0);
  CHECK(h.count("X-") == 0);
  CHECK(h.has("host"));
  CHECK(h.has("x-b"));
  CHECK_FALSE(h.has("x-c"));
  CHECK(h.get("X-A") == "1");  // first value
  CHECK(h.get("x-b").has_value());
  CHECK(h.get("x-b") == "");  // present but empty is not absent
  CHECK_FALSE(h.get("nope").has_value());
}

TEST_CASE("headers: joined combines all values with comma space") {
  Headers h{{"Via", "1.0 a"}, {"Host", "x"}, {"via", "1.1 b"}, {"VIA", "1.1 c, 1.1 d"}};
  CHECK(h.joined("via") == "1.0 a, 1.1 b, 1.1 c, 1.1 d");
  CHECK(h.joined("host") == "x");
  CHECK(h.joined("missing") == "");
}

TEST_CASE("headers: set replaces every occurrence in place of the first") {
  SUBCASE("several occurrences") {
    Headers h{{"A", "1"}, {"x-y", "old1"}, {"B", "2"}, {"X-Y", "old2"}, {"C", "3"}};
    h.set("X-Y", "new");
    REQUIRE(h.size() == 4);
    CHECK(h.fields()[0] == Header{"A", "1"});
    CHECK(rproxy::iequals(h.fields()[1].name, "x-y"));
    CHECK(h.fields()[1].value == "new");
    CHECK(h.fields()[2] == Header{"B", "2"});
    CHECK(h.fields()[3] == Header{"C", "3"});
    CHECK(h.count("x-y") == 1);
    CHECK(h.get("x-y") == "new");
  }
  SUBCASE("absent name is appended at the end") {
    Headers h{{"A", "1"}, {"B", "2"}};
    h.set("Content-Length", "5");
    CHECK(fields(h) == std::vector<Header>{{"A", "1"}, {"B", "2"}, {"Content-Length", "5"}});
  }
  SUBCASE("single occurrence keeps its position") {
    Headers h{{"A", "1"}, {"B", "2"}, {"C", "3"}};
    h.set("b", "x");
    REQUIRE(h.size() == 3);
    CHECK(h.fields()[0] == Header{"A", "1"});
    CHECK(h.fields()[1].value == "x");
    CHECK(rproxy::iequals(h.fields()[1].name, "b"));
    CHECK(h.fields()[2] == Header{"C", "3"});
  }
  SUBCASE("set on empty headers") {
    Headers h;
    h.set("Host", "a");
    CHECK(fields(h) == std::vector<Header>{{"Host", "a"}});
  }
}

TEST_CASE("headers: remove drops every occurrence and returns the count") {
  Headers h{{"Connection", "close"}, {"A", "1"}, {"connection", "x"}, {"B", "2"}, {"CONNECTION", "y"}};
  CHECK(h.remove("Connection") == 3);
  CHECK(fields(h) == std::vector<Header>{{"A", "1"}, {"B", "2"}});
  CHECK(h.remove("connection") == 0);
  CHECK(h.remove("missing") == 0);
  CHECK(h.remove("a") == 1);
  CHECK(h.remove("B") == 1);
  CHECK(h.empty());
}

TEST_CASE("headers: has_token finds list members case-insensitively") {
  Headers h{{"Connection", "keep-alive, Upgrade"}};
  CHECK(h.has_token("connection", "upgrade"));
  CHECK(h.has_token("Connection", "Keep-Alive"));
  CHECK(h.has_token("CONNECTION", "keep-alive"));
  CHECK_FALSE(h.has_token("connection", "close"));
  CHECK_FALSE(h.has_token("connection", "grade"));    // not a substring match
  CHECK_FALSE(h.has_token("connection", "keep"));
  CHECK_FALSE(h.has_token("connection", "keep-alive, Upgrade"));
  CHECK_FALSE(h.has_token("upgrade", "upgrade"));     // wrong field
  CHECK_FALSE(h.has_token("missing", "x"));

  Headers multi{{"Connection", "keep-alive"}, {"X", "close"}, {"connection", " ,  X-Foo ,X-Bar\t,"}};
  CHECK(multi.has_token("connection", "x-foo"));
  CHECK(multi.has_token("connection", "X-BAR"));
  CHECK(multi.has_token("connection", "keep-alive"));
  CHECK_FALSE(multi.has_token("connection", "close"));  // only in X
  CHECK_FALSE(multi.has_token("connection", ""));

  Headers te{{"Transfer-Encoding", "gzip,chunked"}};
  CHECK(te.has_token("transfer-encoding", "chunked"));
  CHECK(te.has_token("transfer-encoding", "GZIP"));
}

TEST_CASE("headers: split_list trims and drops empty elements") {
  CHECK(strs(rproxy::split_list("a, b,c")) == std::vector<std::string>{"a", "b", "c"});
  CHECK(strs(rproxy::split_list(" a , ,b,, c ")) == std::vector<std::string>{"a", "b", "c"});
  CHECK(strs(rproxy::split_list("\ta\t,\t b")) == std::vector<std::string>{"a", "b"});
  CHECK(strs(rproxy::split_list("single")) == std::vector<std::string>{"single"});
  CHECK(strs(rproxy::split_list("a b , c\td")) == std::vector<std::string>{"a b", "c\td"});
  CHECK(rproxy::split_list("").empty());
  CHECK(rproxy::split_list(",,,").empty());
  CHECK(rproxy::split_list(" , \t, ").empty());
  CHECK(strs(rproxy::split_list(",chunked")) == std::vector<std::string>{"chunked"});
  CHECK(strs(rproxy::split_list("gzip, chunked")) == std::vector<std::string>{"gzip", "chunked"});
  // Views point into the argument (no copies that could dangle differently).
  std::string src = "x, y";
  auto parts = rproxy::split_list(src);
  REQUIRE(parts.size() == 2);
  CHECK(parts[0].data() == src.data());
  CHECK(parts[1].data() == src.data() + 3);
}

TEST_CASE("headers: reason_phrase knows the standard codes") {
  CHECK(rproxy::reason_phrase(200) == "OK");
  CHECK(rproxy::reason_phrase(400) == "Bad Request");
  CHECK(rproxy::reason_phrase(404) == "Not Found");
  CHECK(rproxy::reason_phrase(405) == "Method Not Allowed");
  CHECK(rproxy::reason_phrase(408) == "Request Timeout");
  CHECK((rproxy::reason_phrase(413) == "Content Too Large" || rproxy::reason_phrase(413) == "Payload Too Large"));
  CHECK((rproxy::reason_phrase(414) == "URI Too Long" || rproxy::reason_phrase(414) == "Request-URI Too Long"));
  CHECK(rproxy::reason_phrase(431) == "Request Header Fields Too Large");
  CHECK(rproxy::reason_phrase(500) == "Internal Server Error");
  CHECK(rproxy::reason_phrase(501) == "Not Implemented");
  CHECK(rproxy::reason_phrase(502) == "Bad Gateway");
  CHECK(rproxy::reason_phrase(503) == "Service Unavailable");
  CHECK(rproxy::reason_phrase(504) == "Gateway Timeout");
  CHECK(rproxy::reason_phrase(505) == "HTTP Version Not Supported");
  CHECK(rproxy::reason_phrase(999) == "");
  CHECK(rproxy::reason_phrase(0) == "");
  CHECK(rproxy::reason_phrase(-1) == "");
}

TEST_CASE("headers: path and query split the raw target") {
  struct T {
    std::string target, path, query;
  };
  for (const auto& t : std::vector<T>{{"/", "/", ""},
                                      {"/a?b=c%20d", "/a", "b=c%20d"},
                                      {"/a?", "/a", ""},
                                      {"/a?b?c", "/a", "b?c"},
                                      {"/a%3Fb", "/a%3Fb", ""},
                                      {"*", "*", ""},
                                      {"http://h/x?y", "http://h/x", "y"}}) {
    CAPTURE(t.target);
    rproxy::RequestHead h;
    h.target = t.target;
    CHECK(h.path() == t.path);
    CHECK(h.query() == t.query);
  }
}

TEST_CASE("headers: serialize request head") {
  rproxy::RequestHead h;
  h.method = "GET";
  h.target = "/";
  h.headers.add("Host", "a");
  CHECK(rproxy::serialize(h) == "GET / HTTP/1.1\r\nHost: a\r\n\r\n");

  rproxy::RequestHead p;
  p.method = "POST";
  p.target = "/a?b=c%20d";
  p.version_minor = 0;
  p.headers = Headers{{"host", "x"}, {"X-A", "1"}, {"x-a", "2"}, {"Content-Length", "0"}, {"Empty", ""}};
  CHECK(rproxy::serialize(p) ==
        "POST /a?b=c%20d HTTP/1.0\r\nhost: x\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 0\r\nEmpty: \r\n\r\n");

  rproxy::RequestHead bare;
  bare.method = "OPTIONS";
  bare.target = "*";
  CHECK(rproxy::serialize(bare) == "OPTIONS * HTTP/1.1\r\n\r\n");
}

TEST_CASE("headers: serialize response head") {
  rproxy::ResponseHead h;
  h.status = 200;
  h.reason = "OK";
  h.headers.add("Content-Length", "5");
  h.headers.add("Set-Cookie", "a=1");
  h.headers.add("Set-Cookie", "b=2");
  CHECK(rproxy::serialize(h) == "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n");

  rproxy::ResponseHead n;
  n.version_minor = 0;
  n.status = 404;
  n.reason = "Not Found";
  CHECK(rproxy::serialize(n) == "HTTP/1.0 404 Not Found\r\n\r\n");

  // An empty reason still yields a well-formed status line ("HTTP/1.1 204 " or a filled-in phrase).
  rproxy::ResponseHead e;
  e.status = 204;
  e.reason = "";
  std::string s = rproxy::serialize(e);
  CHECK((s == "HTTP/1.1 204 \r\n\r\n" || s == "HTTP/1.1 204 No Content\r\n\r\n"));
}

TEST_CASE("headers: serialized heads parse back to the same head") {
  rproxy::RequestHead h;
  h.method = "PUT";
  h.target = "/x?y=%41";
  h.headers = Headers{{"Host", "a.example:8080"}, {"x-Dup", "1"}, {"X-dup", "2"}, {"Content-Length", "3"}};
  auto wire = rproxy::serialize(h);
  auto r = rproxy::parse_request_head(wire + "abc");
  REQUIRE(r.status == rproxy::ParseStatus::Complete);
  CHECK(r.consumed == wire.size());
  CHECK(r.head.method == h.method);
  CHECK(r.head.target == h.target);
  CHECK(r.head.version_minor == 1);
  CHECK(r.head.headers.fields() == h.headers.fields());

  rproxy::ResponseHead s;
  s.status = 301;
  s.reason = "Moved Permanently";
  s.headers = Headers{{"Location", "/y"}, {"Content-Length", "0"}};
  auto swire = rproxy::serialize(s);
  auto rr = rproxy::parse_response_head(swire);
  REQUIRE(rr.status == rproxy::ParseStatus::Complete);
  CHECK(rr.consumed == swire.size());
  CHECK(rr.head.status == 301);
  CHECK(rr.head.reason == "Moved Permanently");
  CHECK(rr.head.headers.fields() == s.headers.fields());
}
