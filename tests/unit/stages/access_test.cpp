// Tests for CIDR ranges and the access stage: IP rules, basic auth with real crypt(3) hashes made here,
// bearer tokens, credential stripping, param problems and the report.
#include "stages/access.hpp"

#include <crypt.h>
#include <doctest/doctest.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/sha256.hpp"
#include "rproxy/scenario.hpp"
#include "rproxy/stage.hpp"
#include "stages/cidr.hpp"
#include "support/problems.hpp"
#include "support/proxy_fixture.hpp"

using nlohmann::json;
using rproxy::Decision;
using rproxy::Exchange;
using rproxy::Headers;
using rproxy::stages::AccessStage;
using rproxy::stages::CidrRange;
using rproxy::stages::IpAddress;
using rproxy::test::Problems;
using rproxy::test::TempDir;

namespace {

constexpr const char* kPath = "stages[0].params";

// hash makes a crypt(3) hash of password with a fresh salt of the given method ($2b$, $6$, $y$, ...). bcrypt
// gets its cheapest cost so the tests stay fast.
std::string hash(const std::string& prefix, const std::string& password) {
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  unsigned long cost = prefix.substr(0, 2) == "$2" ? 4 : 0;
  REQUIRE(crypt_gensalt_rn(prefix.c_str(), cost, nullptr, 0, setting, sizeof setting) != nullptr);
  auto data = std::make_unique<crypt_data>();
  const char* out = crypt_rn(password.c_str(), setting, data.get(), sizeof *data);
  REQUIRE(out != nullptr);
  return out;
}

std::string base64(const std::string& in) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    unsigned n = static_cast<unsigned char>(in[i]) << 16 | static_cast<unsigned char>(in[i + 1]) << 8 |
                 static_cast<unsigned char>(in[i + 2]);
    for (int s : {18, 12, 6, 0}) out.push_back(kAlphabet[(n >> s) & 63]);
  }
  if (i + 1 == in.size()) {
    unsigned n = static_cast<unsigned char>(in[i]) << 16;
    out += {kAlphabet[(n >> 18) & 63], kAlphabet[(n >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    unsigned n = static_cast<unsigned char>(in[i]) << 16 | static_cast<unsigned char>(in[i + 1]) << 8;
    out += {kAlphabet[(n >> 18) & 63], kAlphabet[(n >> 12) & 63], kAlphabet[(n >> 6) & 63], '='};
  }
  return out;
}

std::string basic(const std::string& user, const std::string& password) {
  return "Basic " + base64(user + ":" + password);
}

std::unique_ptr<rproxy::Stage> build_ok(const json& params) {
  return rproxy::test::build_stage_ok<AccessStage>(params, kPath);
}

Problems problems_of(const json& params) {
  return rproxy::test::stage_problems<AccessStage>(params, kPath);
}

Exchange exchange(const std::string& client_ip, Headers headers = {}) {
  Exchange ex;
  ex.client_ip = client_ip;
  ex.request.method = "GET";
  ex.request.target = "/";
  ex.request.headers = std::move(headers);
  return ex;
}

std::string header(const rproxy::LocalResponse& r, const std::string& name) {
  return std::string(r.headers.get(name).value_or("<none>"));
}

std::vector<std::string> challenges(const rproxy::LocalResponse& r) {
  std::vector<std::string> out;
  for (const auto& h : r.headers)
    if (rproxy::iequals(h.name, "WWW-Authenticate")) out.push_back(h.value);
  return out;
}

// Runs on_request and returns the status: 0 when the request was let through.
int status_of(rproxy::Stage& stage, Exchange& ex) {
  auto d = stage.on_request(ex);
  if (d.kind == Decision::Kind::Continue) return 0;
  REQUIRE(d.kind == Decision::Kind::Respond);
  REQUIRE(d.response.has_value());
  return d.response->status;
}

rproxy::LocalResponse rejection(rproxy::Stage& stage, Exchange& ex) {
  auto d = stage.on_request(ex);
  REQUIRE(d.kind == Decision::Kind::Respond);
  REQUIRE(d.response.has_value());
  return *d.response;
}

CidrRange range(const std::string& text) {
  std::string error;
  auto r = CidrRange::parse(text, error);
  INFO(error);
  REQUIRE(r.has_value());
  return *r;
}

std::string range_error(const std::string& text) {
  std::string error;
  CHECK_FALSE(CidrRange::parse(text, error).has_value());
  return error;
}

}  // namespace

// ---- CIDR ----

TEST_CASE("cidr: IPv4 ranges and single addresses") {
  auto r = range("10.0.0.0/8");
  CHECK(r.to_string() == "10.0.0.0/8");
  CHECK(r.contains(std::string("10.0.0.0")));
  CHECK(r.contains(std::string("10.255.255.255")));
  CHECK_FALSE(r.contains(std::string("11.0.0.0")));
  CHECK_FALSE(r.contains(std::string("9.255.255.255")));
  auto one = range("192.168.1.7");
  CHECK(one.to_string() == "192.168.1.7/32");
  CHECK(one.contains(std::string("192.168.1.7")));
  CHECK_FALSE(one.contains(std::string("192.168.1.8")));
  auto odd = range("172.16.0.0/12");
  CHECK(odd.contains(std::string("172.31.255.255")));
  CHECK_FALSE(odd.contains(std::string("172.32.0.0")));
}

TEST_CASE("cidr: IPv6 ranges") {
  auto ula = range("fd00::/8");
  CHECK(ula.contains(std::string("fd12:3456::1")));
  CHECK_FALSE(ula.contains(std::string("fe80::1")));
  CHECK_FALSE(ula.contains(std::string("10.0.0.1")));
  auto loop = range("::1");
  CHECK(loop.to_string() == "::1/128");
  CHECK(loop.contains(std::string("::1")));
  CHECK(loop.contains(std::string("0:0:0:0:0:0:0:1")));
  CHECK_FALSE(loop.contains(std::string("::2")));
  CHECK_FALSE(loop.contains(std::string("127.0.0.1")));
  auto doc = range("2001:db8::/33");
  CHECK(doc.contains(std::string("2001:db8:7fff::1")));
  CHECK_FALSE(doc.contains(std::string("2001:db8:8000::1")));
}

TEST_CASE("cidr: IPv4-mapped IPv6 compares as IPv4") {
  auto v4 = range("127.0.0.1/8");
  CHECK(v4.contains(std::string("::ffff:127.0.0.5")));
  CHECK(v4.contains(std::string("::FFFF:7f00:1")));
  CHECK_FALSE(v4.contains(std::string("::ffff:128.0.0.1")));
  // A mapped rule is the IPv4 range it carries: /104 counts the 96 bits of ::ffff:0:0.
  auto mapped = range("::ffff:10.0.0.0/104");
  CHECK(mapped.to_string() == "10.0.0.0/8");
  CHECK(mapped.contains(std::string("10.1.2.3")));
  CHECK(mapped.contains(std::string("::ffff:10.1.2.3")));
  CHECK(range("::ffff:1.2.3.4").to_string() == "1.2.3.4/32");
  CHECK(IpAddress::parse("::ffff:1.2.3.4") == IpAddress::parse("1.2.3.4"));
  // Not mapped: the IPv4-compatible ::1.2.3.4 is an IPv6 address.
  CHECK_FALSE(v4.contains(std::string("::127.0.0.1")));
}

TEST_CASE("cidr: edge prefixes /0 /32 /128") {
  auto all4 = range("0.0.0.0/0");
  CHECK(all4.contains(std::string("0.0.0.0")));
  CHECK(all4.contains(std::string("255.255.255.255")));
  CHECK(all4.contains(std::string("::ffff:8.8.8.8")));
  CHECK_FALSE(all4.contains(std::string("2001:db8::1")));
  auto all6 = range("::/0");
  CHECK(all6.contains(std::string("2001:db8::1")));
  CHECK(all6.contains(std::string("::")));
  // ::/0 holds IPv4 clients too, in their mapped form.
  CHECK(all6.contains(std::string("8.8.8.8")));
  CHECK(range("1.2.3.4/32").contains(std::string("1.2.3.4")));
  CHECK_FALSE(range("1.2.3.4/32").contains(std::string("1.2.3.5")));
  CHECK(range("2001:db8::1/128").contains(std::string("2001:db8::1")));
  CHECK_FALSE(range("2001:db8::1/128").contains(std::string("2001:db8::")));
  CHECK(range("1.2.3.4/31").contains(std::string("1.2.3.5")));
  CHECK_FALSE(range("1.2.3.4/31").contains(std::string("1.2.3.6")));
}

TEST_CASE("cidr: host bits after the prefix are cleared") {
  CHECK(range("10.1.2.3/8").to_string() == "10.0.0.0/8");
  auto r = range("192.168.1.77/26");
  CHECK(r.to_string() == "192.168.1.64/26");
  CHECK(r.contains(std::string("192.168.1.64")));
  CHECK(r.contains(std::string("192.168.1.127")));
  CHECK_FALSE(r.contains(std::string("192.168.1.128")));
  CHECK(range("fe80::1234/10").to_string() == "fe80::/10");
  CHECK(range("febf::1/10").to_string() == "fe80::/10");
}

TEST_CASE("cidr: bad input is rejected with a message naming it") {
  CHECK(range_error("10.0.0.0/33") == "\"10.0.0.0/33\": prefix length 33 is too long for IPv4 (0 to 32)");
  CHECK(range_error("::/129") == "\"::/129\": prefix length 129 is too long for IPv6 (0 to 128)");
  CHECK(range_error("10.0.0.0/") == "\"10.0.0.0/\": prefix length after / must be a number from 0 to 32");
  CHECK(range_error("10.0.0.0/-1") == "\"10.0.0.0/-1\": prefix length after / must be a number from 0 to 32");
  CHECK(range_error("10.0.0.0/8x") == "\"10.0.0.0/8x\": prefix length after / must be a number from 0 to 32");
  CHECK(range_error("10.0.0.0/0008") ==
        "\"10.0.0.0/0008\": prefix length after / must be a number from 0 to 32");
  const std::string not_ip =
      " is not an IP address or CIDR range (e.g. "
      "10.0.0.0/8, 192.168.1.7, ::1, fd00::/8)";
  CHECK(range_error("10.0.0") == "\"10.0.0\"" + not_ip);
  CHECK(range_error("localhost") == "\"localhost\"" + not_ip);
  CHECK(range_error("") == "\"\"" + not_ip);
  CHECK(range_error("[::1]") == "\"[::1]\"" + not_ip);
  CHECK(range_error("10.0.0.0 /8") == "\"10.0.0.0 /8\"" + not_ip);
  CHECK(range_error("fe80::1%eth0") == "\"fe80::1%eth0\" has a zone (%...); write the address without it");
}

TEST_CASE(
    "cidr: contains is false for text that is not an address and ignores "
    "zones") {
  auto r = range("0.0.0.0/0");
  CHECK_FALSE(r.contains(std::string("")));
  CHECK_FALSE(r.contains(std::string("unix:/run/x.sock")));
  CHECK(range("fe80::/10").contains(std::string("fe80::1%eth0")));
}

// ---- IP rules ----

TEST_CASE("access: deny is checked before allow") {
  auto stage = build_ok({{"allow", {"10.0.0.0/8"}}, {"deny", {"10.0.0.13"}}});
  auto ok = exchange("10.0.0.14");
  CHECK(status_of(*stage, ok) == 0);
  auto bad = exchange("10.0.0.13");
  auto r = rejection(*stage, bad);
  CHECK(r.status == 403);
  CHECK(header(r, "X-Rproxy-Error") == "access_denied");
  CHECK(r.body == "403 Forbidden: 10.0.0.13 is not allowed\n");
  auto mapped = exchange("::ffff:10.0.0.13");
  CHECK(status_of(*stage, mapped) == 403);
}

TEST_CASE("access: a non-empty allow list rejects every other client") {
  auto stage = build_ok({{"allow", {"127.0.0.1/8", "::1"}}});
  for (const char* ip : {"127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"}) {
    auto ex = exchange(ip);
    CHECK_MESSAGE(status_of(*stage, ex) == 0, ip);
  }
  for (const char* ip : {"192.168.1.1", "::2", "128.0.0.1", ""}) {
    auto ex = exchange(ip);
    CHECK_MESSAGE(status_of(*stage, ex) == 403, ip);
  }
}

TEST_CASE("access: deny alone lets every other client through") {
  auto stage = build_ok({{"deny", {"192.168.1.13/32", "2001:db8::/32"}}});
  auto a = exchange("192.168.1.12");
  CHECK(status_of(*stage, a) == 0);
  auto b = exchange("192.168.1.13");
  CHECK(status_of(*stage, b) == 403);
  auto c = exchange("2001:db8::5");
  CHECK(status_of(*stage, c) == 403);
}

TEST_CASE("access: IP rules run before credentials are looked at") {
  TempDir dir;
  auto users = dir.write("users", "alice:" + hash("$6$", "pw") + "\n");
  auto stage = build_ok({{"deny", {"10.0.0.1"}}, {"basic", {{"users_file", users}}}});
  auto ex = exchange("10.0.0.1", {{"Authorization", basic("alice", "pw")}});
  CHECK(status_of(*stage, ex) == 403);
  CHECK(ex.request.headers.has("Authorization"));
}

// ---- basic ----

TEST_CASE(
    "access: basic auth accepts bcrypt, sha512-crypt, sha256-crypt and "
    "yescrypt hashes") {
  TempDir dir;
  auto users =
      dir.write("users.htpasswd",
                "# comment\n\nbob:" + hash("$2b$", "b-pass") + "\r\n" + "bob2y:" + hash("$2y$", "2y-pass") +
                    "\n" + "bob2a:" + hash("$2a$", "2a-pass") + "\n" + "sha:" + hash("$6$", "s-pass") + "\n" +
                    "sha256:" + hash("$5$", "5-pass") + "\n" + "yes:" + hash("$y$", "y-pass") + "\n");
  auto stage = build_ok({{"basic", {{"users_file", users}, {"realm", "rproxy"}}}});
  for (auto [user, password] : std::vector<std::pair<std::string, std::string>>{{"bob", "b-pass"},
                                                                                {"bob2y", "2y-pass"},
                                                                                {"bob2a", "2a-pass"},
                                                                                {"sha", "s-pass"},
                                                                                {"sha256", "5-pass"},
                                                                                {"yes", "y-pass"}}) {
    auto ex = exchange("127.0.0.1", {{"Host", "h"}, {"Authorization", basic(user, password)}});
    CHECK_MESSAGE(status_of(*stage, ex) == 0, user);
    CHECK(ex.tags["user"] == user);
    CHECK(ex.tags["auth"] == "basic");
    // Not forwarded by default: the upstream never sees the proxy's credentials.
    CHECK_FALSE(ex.request.headers.has("Authorization"));
    CHECK(ex.request.headers.has("Host"));
  }
}

TEST_CASE("access: hashes made by openssl passwd verify") {
  // openssl passwd -6 -salt abcdefgh 'open sesame', and -5: the tools the problem messages point to.
  TempDir dir;
  auto users = dir.write("users",
                         "six:$6$abcdefgh$CkjGkP7IIgZVUCNlt."
                         "Vi53LOYJLXZ5KzdpzEYCj01XGruA1hxZYJqccTU2zz68oJwAGsd1iPty5F7dHIatUTy/\n"
                         "five:$5$abcdefgh$FWXdh6oXOJQkX7oAcP02d0Gnxjct6ra8Fwv29U9RIN2\n");
  auto stage = build_ok({{"basic", {{"users_file", users}}}});
  for (const char* user : {"six", "five"}) {
    auto ok = exchange("127.0.0.1", {{"Authorization", basic(user, "open sesame")}});
    CHECK_MESSAGE(status_of(*stage, ok) == 0, user);
    auto wrong = exchange("127.0.0.1", {{"Authorization", basic(user, "open sesame ")}});
    CHECK_MESSAGE(status_of(*stage, wrong) == 401, user);
  }
}

TEST_CASE(
    "access: basic auth with a wrong password is 401 auth_failed with "
    "the challenge") {
  TempDir dir;
  auto users = dir.write("users", "alice:" + hash("$2b$", "right") + "\n");
  auto stage = build_ok({{"basic", {{"users_file", users}, {"realm", "staging"}}}});
  auto ex = exchange("127.0.0.1", {{"Authorization", basic("alice", "wrong")}});
  auto r = rejection(*stage, ex);
  CHECK(r.status == 401);
  CHECK(header(r, "X-Rproxy-Error") == "auth_failed");
  CHECK(challenges(r) == std::vector<std::string>{"Basic realm=\"staging\", charset=\"UTF-8\""});
  CHECK(r.body == "401 Unauthorized: wrong user name or password\n");
  CHECK(r.body.find("wrong\n") == std::string::npos);
  CHECK(ex.tags.count("user") == 0);
  // The request is left as it came: it is answered here and never forwarded.
  CHECK(ex.request.headers.has("Authorization"));
}

TEST_CASE("access: basic auth without credentials is 401 auth_required") {
  TempDir dir;
  auto users = dir.write("users", "alice:" + hash("$6$", "pw") + "\n");
  auto stage = build_ok({{"basic", {{"users_file", users}}}});
  auto ex = exchange("127.0.0.1");
  auto r = rejection(*stage, ex);
  CHECK(r.status == 401);
  CHECK(header(r, "X-Rproxy-Error") == "auth_required");
  CHECK(challenges(r) == std::vector<std::string>{"Basic realm=\"rproxy\", charset=\"UTF-8\""});
  CHECK(r.body == "401 Unauthorized: credentials required\n");
}

TEST_CASE("access: basic auth with malformed credentials is 401") {
  TempDir dir;
  auto users = dir.write("users", "alice:" + hash("$6$", "pw") + "\n");
  auto stage = build_ok({{"basic", {{"users_file", users}}}});
  const std::string malformed =
      "401 Unauthorized: malformed Basic credentials "
      "(expected base64 of USER:PASSWORD)\n";
  for (const std::string& value : {std::string("Basic !!!!"),
                                   std::string("Basic YWxpY2U="),  // "alice", no colon
                                   std::string("Basic YWxpY2U6cHc=="), std::string("Basic YQ")}) {
    auto ex = exchange("127.0.0.1", {{"Authorization", value}});
    auto r = rejection(*stage, ex);
    CHECK_MESSAGE(r.status == 401, value);
    CHECK(header(r, "X-Rproxy-Error") == "auth_failed");
    CHECK(r.body == malformed);
  }
  auto other = exchange("127.0.0.1", {{"Authorization", "Digest username=\"alice\""}});
  auto r = rejection(*stage, other);
  CHECK(header(r, "X-Rproxy-Error") == "auth_failed");
  CHECK(r.body == "401 Unauthorized: Authorization scheme not accepted (use Basic)\n");
  auto twice = exchange("127.0.0.1", {{"Authorization", basic("alice", "pw")}, {"Authorization", "Basic x"}});
  CHECK(rejection(*stage, twice).body == "401 Unauthorized: more than one Authorization header\n");
  // Unpadded base64 and a lower-case scheme are fine.
  auto unpadded = exchange("127.0.0.1", {{"Authorization", "basic YWxpY2U6cHc"}});
  CHECK(status_of(*stage, unpadded) == 0);
}

TEST_CASE("access: basic auth for a user not in the file is 401") {
  TempDir dir;
  auto users = dir.write("users", "alice:" + hash("$2b$", "pw") + "\n");
  auto stage = build_ok({{"basic", {{"users_file", users}}}});
  auto ex = exchange("127.0.0.1", {{"Authorization", basic("mallory", "pw")}});
  auto r = rejection(*stage, ex);
  CHECK(r.status == 401);
  CHECK(header(r, "X-Rproxy-Error") == "auth_failed");
  // Same words as a wrong password: the answer does not tell which user names exist.
  CHECK(r.body == "401 Unauthorized: wrong user name or password\n");
}

TEST_CASE("access: forward_credentials keeps the Authorization header") {
  TempDir dir;
  auto users = dir.write("users", "alice:" + hash("$6$", "pw") + "\n");
  auto stage = build_ok({{"basic", {{"users_file", users}}}, {"forward_credentials", true}});
  auto ex = exchange("127.0.0.1", {{"Authorization", basic("alice", "pw")}});
  CHECK(status_of(*stage, ex) == 0);
  CHECK(ex.request.headers.get("Authorization") == basic("alice", "pw"));
}

TEST_CASE("access: correct credentials are cached and wrong ones never are") {
  TempDir dir;
  auto users = dir.write("users", "alice:" + hash("$2b$", "pw") + "\nbob:" + hash("$2b$", "pw2") + "\n");
  auto stage = build_ok({{"basic", {{"users_file", users}}}});
  auto* access = dynamic_cast<AccessStage*>(stage.get());
  REQUIRE(access != nullptr);
  CHECK(access->cached_credentials() == 0);
  auto wrong = exchange("127.0.0.1", {{"Authorization", basic("alice", "nope")}});
  CHECK(status_of(*stage, wrong) == 401);
  CHECK(access->cached_credentials() == 0);
  for (int i = 0; i < 3; ++i) {
    auto ex = exchange("127.0.0.1", {{"Authorization", basic("alice", "pw")}});
    CHECK(status_of(*stage, ex) == 0);
  }
  CHECK(access->cached_credentials() == 1);
  // A cached user with another password still fails.
  auto again = exchange("127.0.0.1", {{"Authorization", basic("alice", "pw2")}});
  CHECK(status_of(*stage, again) == 401);
  auto b = exchange("127.0.0.1", {{"Authorization", basic("bob", "pw2")}});
  CHECK(status_of(*stage, b) == 0);
  CHECK(access->cached_credentials() == 2);
}

TEST_CASE("access: many threads share one stage") {
  TempDir dir;
  auto users = dir.write("users", "alice:" + hash("$2b$", "pw") + "\n");
  auto stage = build_ok({{"basic", {{"users_file", users}}}});
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  std::atomic<int> rejected{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        auto ex = exchange("127.0.0.1", {{"Authorization", basic("alice", i % 10 == 0 ? "bad" : "pw")}});
        (stage->on_request(ex).kind == Decision::Kind::Continue ? ok : rejected)++;
      }
    });
  for (auto& t : threads) t.join();
  CHECK(ok == 180);
  CHECK(rejected == 20);
  auto report = stage->report();
  CHECK(report["allowed"] == 180);
  CHECK(report["unauthorized"] == 20);
  CHECK(report["by_user"]["alice"] == 180);
}

TEST_CASE(
    "access: unsupported users file entries are problems naming file, "
    "line and user") {
  TempDir dir;
  auto users = dir.write("users", "# users\nok:" + hash("$6$", "pw") +
                                      "\nplain:hunter2\napache:$apr1$abcdefgh$0123456789012345678901\n"
                                      "sha1:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\nmd5:$1$salt$"
                                      "0123456789012345678901\n"
                                      "cut:$2y$05$tooShort\nnocolon\nok:" +
                                      hash("$6$", "pw") + "\n");
  const std::string p = "stages[0].params.basic.users_file: " + users;
  const std::string help =
      " is not supported; supported: bcrypt $2y$/$2b$/$2a$ (htpasswd -nB "
      "USER), sha512-crypt $6$ (openssl "
      "passwd -6), sha256-crypt $5$ (openssl passwd -5), yescrypt $y$ "
      "(mkpasswd -m yescrypt)";
  auto problems = problems_of({{"basic", {{"users_file", users}}}});
  CHECK(problems == Problems{
                        p + " line 3 (user \"plain\"): a plain-text password (or DES crypt)" + help,
                        p +
                            " line 4 (user \"apache\"): an Apache MD5 hash ($apr1$, "
                            "htpasswd's default without -B)" +
                            help,
                        p + " line 5 (user \"sha1\"): an unsalted SHA-1 hash ({SHA})" + help,
                        p + " line 6 (user \"md5\"): an MD5-crypt hash ($1$)" + help,
                        p +
                            " line 7 (user \"cut\"): a malformed bcrypt hash (cut short or "
                            "edited?)" +
                            help,
                        p + " line 8: expected USER:HASH (make one with htpasswd -nB USER)",
                        p + " line 9 (user \"ok\"): user is also on line 2",
                    });
  // The plain-text password itself is never repeated.
  for (const auto& problem : problems) CHECK(problem.find("hunter2") == std::string::npos);
}

TEST_CASE("access: an unreadable or empty users file is a problem") {
  TempDir dir;
  CHECK(problems_of({{"basic", {{"users_file", dir.path() + "/missing"}}}}) ==
        Problems{"stages[0].params.basic.users_file: cannot read " + dir.path() +
                 "/missing: No such file or directory"});
  CHECK(problems_of({{"basic", {{"users_file", dir.path()}}}}) ==
        Problems{"stages[0].params.basic.users_file: cannot read " + dir.path() + ": Is a directory"});
  auto empty = dir.write("empty", "# nobody yet\n");
  CHECK(problems_of({{"basic", {{"users_file", empty}}}}) ==
        Problems{"stages[0].params.basic.users_file: " + empty + " has no USER:HASH lines"});
}

// ---- bearer ----

TEST_CASE("access: bearer tokens as sha256 digests and plain tokens") {
  TempDir dir;
  // printf %s tok-xyz | sha256sum
  auto fixed = dir.write("fixed",
                         "sha256:"
                         "5d699dd34a86ef68942415bbe6a200e948e7025e3aef1bbda99b57fa6c84b2c5\n");
  auto fixed_stage = build_ok({{"bearer", {{"tokens_file", fixed}}}});
  auto by_fixed = exchange("127.0.0.1", {{"Authorization", "Bearer tok-xyz"}});
  CHECK(status_of(*fixed_stage, by_fixed) == 0);
  auto tokens = dir.write("tokens.txt", "# ci\nsha256:" + rproxy::sha256_hex("secret-one") +
                                            "\n\nSHA256:" + rproxy::sha256_hex("secret-two") + "\ndev-key\n");
  auto stage = build_ok({{"bearer", {{"tokens_file", tokens}, {"realm", "api"}}}});
  for (const char* token : {"secret-one", "secret-two", "dev-key"}) {
    auto ex = exchange("127.0.0.1", {{"Authorization", std::string("Bearer ") + token}});
    CHECK_MESSAGE(status_of(*stage, ex) == 0, token);
    CHECK_FALSE(ex.request.headers.has("Authorization"));
    CHECK(ex.tags["auth"] == "bearer");
  }
  auto wrong = exchange("127.0.0.1", {{"Authorization", "Bearer secret-three"}});
  auto r = rejection(*stage, wrong);
  CHECK(r.status == 401);
  CHECK(header(r, "X-Rproxy-Error") == "auth_failed");
  CHECK(challenges(r) == std::vector<std::string>{"Bearer realm=\"api\", error=\"invalid_token\""});
  CHECK(r.body == "401 Unauthorized: invalid token\n");
  auto none = exchange("127.0.0.1");
  auto r2 = rejection(*stage, none);
  CHECK(header(r2, "X-Rproxy-Error") == "auth_required");
  CHECK(challenges(r2) == std::vector<std::string>{"Bearer realm=\"api\""});
  // The digest itself is not a token.
  auto digest = exchange("127.0.0.1", {{"Authorization", "Bearer " + rproxy::sha256_hex("secret-one")}});
  CHECK(status_of(*stage, digest) == 401);
}

TEST_CASE("access: bearer with a custom header takes the whole value as the token") {
  TempDir dir;
  auto tokens = dir.write("tokens", "sha256:" + rproxy::sha256_hex("k-123") + "\n");
  auto stage = build_ok({{"bearer", {{"tokens_file", tokens}, {"header", "X-Api-Key"}}}});
  auto ex = exchange("127.0.0.1", {{"x-api-key", " k-123 "}, {"Authorization", "Basic dXA6c3RyZWFt"}});
  CHECK(status_of(*stage, ex) == 0);
  CHECK_FALSE(ex.request.headers.has("X-Api-Key"));
  // Authorization is not this stage's business here: it goes to the upstream untouched.
  CHECK(ex.request.headers.get("Authorization") == "Basic dXA6c3RyZWFt");
  auto twice = exchange("127.0.0.1", {{"X-Api-Key", "k-123"}, {"X-Api-Key", "other"}});
  auto r = rejection(*stage, twice);
  CHECK(header(r, "X-Rproxy-Error") == "auth_failed");
  CHECK(r.body == "401 Unauthorized: more than one X-Api-Key header\n");
  CHECK(challenges(r) == std::vector<std::string>{"Bearer realm=\"rproxy\", error=\"invalid_token\""});
  auto bearer_form = exchange("127.0.0.1", {{"X-Api-Key", "Bearer k-123"}});
  CHECK(status_of(*stage, bearer_form) == 401);
  auto kept = build_ok(
      {{"bearer", {{"tokens_file", tokens}, {"header", "X-Api-Key"}}}, {"forward_credentials", true}});
  auto ex2 = exchange("127.0.0.1", {{"X-Api-Key", "k-123"}});
  CHECK(status_of(*kept, ex2) == 0);
  CHECK(ex2.request.headers.get("X-Api-Key") == "k-123");
}

TEST_CASE("access: bearer tokens file problems") {
  TempDir dir;
  auto bad = dir.write("tokens", "sha256:abc\nsha256:" + std::string(64, 'g') + "\ntok\ntok\n");
  const std::string p = "stages[0].params.bearer.tokens_file: " + bad;
  CHECK(problems_of({{"bearer", {{"tokens_file", bad}}}}) ==
        Problems{p + " line 1: sha256: needs 64 hex digits (printf %s TOKEN | "
                     "sha256sum)",
                 p + " line 2: sha256: needs 64 hex digits (printf %s TOKEN | "
                     "sha256sum)",
                 p + " line 4: same token as line 3"});
  auto empty = dir.write("empty", "\n# none\n");
  CHECK(problems_of({{"bearer", {{"tokens_file", empty}}}}) ==
        Problems{"stages[0].params.bearer.tokens_file: " + empty +
                 " has no tokens (one per line: sha256:HEX or the token itself)"});
}

// ---- basic and bearer ----

TEST_CASE(
    "access: basic and bearer together accept either and send both "
    "challenges") {
  TempDir dir;
  auto users = dir.write("users", "alice:" + hash("$y$", "pw") + "\n");
  auto tokens = dir.write("tokens", "sha256:" + rproxy::sha256_hex("tok") + "\n");
  auto stage =
      build_ok({{"basic", {{"users_file", users}, {"realm", "r1"}}}, {"bearer", {{"tokens_file", tokens}}}});
  auto by_password = exchange("127.0.0.1", {{"Authorization", basic("alice", "pw")}});
  CHECK(status_of(*stage, by_password) == 0);
  CHECK(by_password.tags["user"] == "alice");
  auto by_token = exchange("127.0.0.1", {{"Authorization", "Bearer tok"}});
  CHECK(status_of(*stage, by_token) == 0);
  CHECK(by_token.tags.count("user") == 0);

  auto none = exchange("127.0.0.1");
  auto r = rejection(*stage, none);
  CHECK(header(r, "X-Rproxy-Error") == "auth_required");
  CHECK(challenges(r) ==
        std::vector<std::string>{"Basic realm=\"r1\", charset=\"UTF-8\"", "Bearer realm=\"rproxy\""});
  auto wrong_token = exchange("127.0.0.1", {{"Authorization", "Bearer nope"}});
  auto r2 = rejection(*stage, wrong_token);
  CHECK(header(r2, "X-Rproxy-Error") == "auth_failed");
  CHECK(challenges(r2) == std::vector<std::string>{"Basic realm=\"r1\", charset=\"UTF-8\"",
                                                   "Bearer realm=\"rproxy\", error=\"invalid_token\""});
  auto wrong_password = exchange("127.0.0.1", {{"Authorization", basic("alice", "nope")}});
  auto r3 = rejection(*stage, wrong_password);
  CHECK(header(r3, "X-Rproxy-Error") == "auth_failed");
  CHECK(challenges(r3) ==
        std::vector<std::string>{"Basic realm=\"r1\", charset=\"UTF-8\"", "Bearer realm=\"rproxy\""});
  auto other = exchange("127.0.0.1", {{"Authorization", "Negotiate abc"}});
  CHECK(rejection(*stage, other).body ==
        "401 Unauthorized: Authorization scheme not accepted (use Basic or "
        "Bearer)\n");
}

TEST_CASE("access: basic with a bearer header removes both credential headers") {
  TempDir dir;
  auto users = dir.write("users", "alice:" + hash("$6$", "pw") + "\n");
  auto tokens = dir.write("tokens", "tok\n");
  auto stage = build_ok(
      {{"basic", {{"users_file", users}}}, {"bearer", {{"tokens_file", tokens}, {"header", "X-Api-Key"}}}});
  auto ex = exchange("127.0.0.1", {{"Authorization", basic("alice", "pw")}, {"X-Api-Key", "wrong"}});
  CHECK(status_of(*stage, ex) == 0);
  CHECK(ex.request.headers.empty());
  auto ex2 = exchange("127.0.0.1", {{"X-Api-Key", "tok"}});
  CHECK(status_of(*stage, ex2) == 0);
}

// ---- params and report ----

TEST_CASE("access: param problems carry their paths") {
  CHECK(problems_of(json::object()) == Problems{"stages[0].params: nothing to check: give \"allow\", "
                                                "\"deny\", \"basic\" and/or \"bearer\""});
  CHECK(problems_of({{"allow", json::array()}}) ==
        Problems{"stages[0].params: nothing to check: give \"allow\", "
                 "\"deny\", \"basic\" and/or \"bearer\""});
  CHECK(problems_of(json::array()) == Problems{"stages[0].params: expected an object with \"allow\", "
                                               "\"deny\", \"basic\" and/or \"bearer\", "
                                               "got an array"});
  CHECK(problems_of({{"allow", {"10.0.0.0/8", "10.0.0.0/33"}}, {"denny", true}}) ==
        Problems{"stages[0].params.denny: unknown key (known: allow, deny, "
                 "basic, bearer, forward_credentials)",
                 "stages[0].params.allow[1]: \"10.0.0.0/33\": prefix length 33 "
                 "is too long for IPv4 (0 to 32)"});
  CHECK(problems_of({{"deny", "10.0.0.1"}}) ==
        Problems{"stages[0].params.deny: expected an array of strings, got "
                 "\"10.0.0.1\""});
  CHECK(problems_of({{"basic", {{"realm", "x"}}}}) ==
        Problems{"stages[0].params.basic.users_file: required: an htpasswd "
                 "file of USER:HASH lines (htpasswd -nB "
                 "USER)"});
  CHECK(problems_of({{"bearer", "tokens.txt"}}) ==
        Problems{"stages[0].params.bearer: expected an object with "
                 "\"tokens_file\" and optionally \"header\" and "
                 "\"realm\", got \"tokens.txt\""});
  TempDir dir;
  auto tokens = dir.write("tokens", "tok\n");
  CHECK(problems_of({{"bearer", {{"tokens_file", tokens}, {"header", "X Api"}, {"realm", "a\"b"}}},
                     {"forward_credentials", "no"}}) ==
        Problems{"stages[0].params.bearer.realm: must not contain quotes, "
                 "backslashes or control characters",
                 "stages[0].params.bearer.header: not a valid header name "
                 "(letters, digits and !#$%&'*+-.^_`|~ "
                 "only)",
                 "stages[0].params.forward_credentials: expected true or false, "
                 "got \"no\""});
}

TEST_CASE("access: report counts allowed, denied and unauthorized requests by user") {
  TempDir dir;
  auto users = dir.write("users", "alice:" + hash("$6$", "a") + "\nbob:" + hash("$6$", "b") + "\n");
  auto tokens = dir.write("tokens", "tok\n");
  auto stage = build_ok({{"deny", {"10.0.0.0/8"}},
                         {"basic", {{"users_file", users}}},
                         {"bearer", {{"tokens_file", tokens}, {"header", "X-Api-Key"}}}});
  auto run = [&](const std::string& ip, Headers h) {
    auto ex = exchange(ip, std::move(h));
    return status_of(*stage, ex);
  };
  CHECK(run("127.0.0.1", {{"Authorization", basic("alice", "a")}}) == 0);
  CHECK(run("127.0.0.1", {{"Authorization", basic("alice", "a")}}) == 0);
  CHECK(run("127.0.0.1", {{"Authorization", basic("bob", "b")}}) == 0);
  CHECK(run("127.0.0.1", {{"X-Api-Key", "tok"}}) == 0);
  CHECK(run("10.1.1.1", {{"Authorization", basic("alice", "a")}}) == 403);
  CHECK(run("127.0.0.1", {{"Authorization", basic("bob", "a")}}) == 401);
  CHECK(run("127.0.0.1", {}) == 401);
  CHECK(stage->report() == json{{"allowed", 4},
                                {"denied_ip", 1},
                                {"unauthorized", 2},
                                {"bearer", 1},
                                {"by_user", {{"alice", 2}, {"bob", 1}}}});
  CHECK(stage->summary() ==
        "access: 4 allowed, 1 denied by IP, 2 "
        "unauthorized, 1 by token (alice 2, bob 1)");
}
