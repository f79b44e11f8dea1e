// Tests for the split stage and its assignment rule: shares, determinism, monotone re-weighting,
// stickiness, overrides, failover accounting and param errors with their paths.
#include "stages/split.hpp"

#include <doctest/doctest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "rproxy/scenario.hpp"

using nlohmann::json;
using rproxy::Exchange;
using rproxy::Route;
using rproxy::Scenario;
using rproxy::StageContext;
using rproxy::stages::SplitStage;
using rproxy::stages::Variant;
using rproxy::stages::VariantPicker;

namespace {

Scenario scenario_with(std::vector<std::string> names, std::uint64_t seed = 1) {
  Scenario s;
  s.seed = seed;
  Route r;
  r.name = "default";
  std::uint16_t port = 3001;
  for (const auto& n : names) {
    rproxy::UpstreamSpec u;
    REQUIRE_FALSE(rproxy::parse_url("http://127.0.0.1:" + std::to_string(port++), u.url));
    u.name = n;
    r.upstreams.push_back(u);
  }
  s.routes.push_back(r);
  return s;
}

std::unique_ptr<SplitStage> make_stage(const json& params, const Scenario& s) {
  std::vector<std::string> problems;
  auto stage = SplitStage::create(params, "stages[0].params", StageContext{s, &s.routes[0]}, problems);
  INFO(json(problems).dump());
  REQUIRE(problems.empty());
  REQUIRE(stage);
  return std::unique_ptr<SplitStage>(static_cast<SplitStage*>(stage.release()));
}

std::vector<std::string> problems_of(const json& params, const Scenario& s) {
  std::vector<std::string> problems;
  auto stage = SplitStage::create(params, "stages[0].params", StageContext{s, &s.routes[0]}, problems);
  CHECK(stage == nullptr);
  return problems;
}

bool has_problem(const std::vector<std::string>& problems, const std::string& text) {
  for (const auto& p : problems)
    if (p.find(text) != std::string::npos) return true;
  return false;
}

Exchange request(std::string target = "/", rproxy::Headers headers = {}) {
  Exchange ex;
  ex.client_ip = "127.0.0.1";
  ex.request.method = "GET";
  ex.request.target = std::move(target);
  ex.request.headers = std::move(headers);
  return ex;
}

// Runs the request and response hooks as the engine would for a 200 from the assigned variant.
Exchange round_trip(SplitStage& stage, Exchange ex) {
  auto d = stage.on_request(ex);
  if (d.kind == rproxy::Decision::Kind::Respond) {
    ex.response = rproxy::ResponseHead{1, d.response->status, "", d.response->headers};
  } else {
    ex.upstream_name = *d.upstream;
    ex.response = rproxy::ResponseHead{1, 200, "OK", {}};
  }
  stage.on_response(ex);
  ex.outcome.status = ex.response->status;
  ex.outcome.duration_ms = 1.5;
  stage.on_complete(ex);
  return ex;
}

std::vector<std::string> set_cookies(const Exchange& ex) {
  std::vector<std::string> out;
  for (const auto& h : ex.response->headers)
    if (rproxy::iequals(h.name, "Set-Cookie")) out.push_back(h.value);
  return out;
}

const json kAB = {{"variants", {{{"name", "a"}, {"weight", 90}}, {{"name", "b"}, {"weight", 10}}}}};

}  // namespace

TEST_CASE("VariantPicker: 90/10 over 10,000 ordinals lands within 1.5 points") {
  VariantPicker picker({{"a", 90}, {"b", 10}}, 42);
  int b = 0;
  for (std::uint64_t i = 1; i <= 10000; ++i) b += picker.pick_ordinal(i) == 1;
  CHECK(b > 850);
  CHECK(b < 1150);
  // Keys as well as ordinals.
  int kb = 0;
  for (int i = 0; i < 10000; ++i) kb += picker.pick("user-" + std::to_string(i)) == 1;
  CHECK(kb > 850);
  CHECK(kb < 1150);
}

TEST_CASE("VariantPicker: three-way 50/30/20 shares") {
  VariantPicker picker({{"a", 50}, {"b", 30}, {"c", 20}}, 7);
  std::array<int, 3> n{};
  for (std::uint64_t i = 1; i <= 20000; ++i) ++n[picker.pick_ordinal(i)];
  CHECK(std::abs(n[0] - 10000) < 300);
  CHECK(std::abs(n[1] - 6000) < 300);
  CHECK(std::abs(n[2] - 4000) < 300);
}

TEST_CASE("VariantPicker: a pure function of seed and key") {
  VariantPicker p1({{"a", 1}, {"b", 1}}, 42);
  VariantPicker p2({{"a", 1}, {"b", 1}}, 42);
  VariantPicker p3({{"a", 1}, {"b", 1}}, 43);
  int same_seed_diff = 0;
  int other_seed_diff = 0;
  for (int i = 0; i < 1000; ++i) {
    auto key = "k" + std::to_string(i);
    same_seed_diff += p1.pick(key) != p2.pick(key);
    other_seed_diff += p1.pick(key) != p3.pick(key);
    CHECK(p1.pick_ordinal(static_cast<std::uint64_t>(i)) == p2.pick_ordinal(static_cast<std::uint64_t>(i)));
  }
  CHECK(same_seed_diff == 0);
  CHECK(other_seed_diff > 300);  // another seed is another assignment
  // Pinned values: the assignment is a contract (same on every platform and release); a change to the
  // hash or the picker that moves users between variants must fail here.
  VariantPicker pinned({{"a", 90}, {"b", 10}}, 42);
  std::string seq;
  for (std::uint64_t i = 1; i <= 40; ++i) seq += pinned.variants()[pinned.pick_ordinal(i)].name;
  CHECK(seq == "aabaaaaabaaaaaaaaaaaaaaaaaababaaaaaaaaaa");
  VariantPicker half({{"a", 1}, {"b", 1}}, 42);
  std::string keyed;
  for (int i = 0; i < 20; ++i) keyed += half.variants()[half.pick("user-" + std::to_string(i))].name;
  CHECK(keyed == "abbbabaaaababbbbaaab");
}

TEST_CASE("VariantPicker: moving 90/10 to 80/20 moves only a -> b, about 1/9 of a") {
  VariantPicker before({{"a", 90}, {"b", 10}}, 42);
  VariantPicker after({{"a", 80}, {"b", 20}}, 42);
  int a_to_b = 0;
  int b_to_a = 0;
  int a_before = 0;
  for (int i = 0; i < 20000; ++i) {
    auto key = "user-" + std::to_string(i);
    auto x = before.pick(key);
    auto y = after.pick(key);
    a_before += x == 0;
    a_to_b += x == 0 && y == 1;
    b_to_a += x == 1 && y == 0;
  }
  CHECK(b_to_a == 0);
  double moved = static_cast<double>(a_to_b) / a_before;
  CHECK(moved > 0.09);
  CHECK(moved < 0.13);
}

TEST_CASE(
    "VariantPicker: a growing variant never loses keys, a shrinking one never gains; adding only takes") {
  // 50/30/20 -> 40/30/30: a shrinks, c grows, b keeps its weight.
  VariantPicker before({{"a", 50}, {"b", 30}, {"c", 20}}, 9);
  VariantPicker after({{"a", 40}, {"b", 30}, {"c", 30}}, 9);
  VariantPicker added({{"a", 50}, {"b", 30}, {"c", 20}, {"d", 10}}, 9);
  int moved = 0;
  for (int i = 0; i < 10000; ++i) {
    auto key = std::to_string(i);
    auto x = before.pick(key);
    auto y = after.pick(key);
    moved += x != y;
    if (x == 2) CHECK(y == 2);  // c grew: keeps every key it had
    if (y == 0) CHECK(x == 0);  // a shrank: gains none
    auto z = added.pick(key);
    if (z != x) CHECK(z == 3);  // a new variant only takes keys; none move between the old ones
  }
  CHECK(moved < 1600);  // about 10% must move; rendezvous moves a little more with three variants
}

TEST_CASE("VariantPicker: weight 0 never wins") {
  VariantPicker picker({{"a", 1}, {"b", 0}}, 1);
  for (std::uint64_t i = 0; i < 1000; ++i) CHECK(picker.pick_ordinal(i) == 0);
}

TEST_CASE("split: every response says its variant and the exchange carries it") {
  auto s = scenario_with({"a", "b"});
  auto stage = make_stage(kAB, s);
  auto ex = round_trip(*stage, request());
  CHECK((ex.variant == "a" || ex.variant == "b"));
  CHECK(ex.response->headers.get("X-Rproxy-Variant") == ex.variant);
  CHECK(ex.request.headers.get("X-Rproxy-Variant") == ex.variant);  // the upstream learns it too
  CHECK(set_cookies(ex).empty());                                   // not sticky: no cookie
}

TEST_CASE("split: sticky header keeps a key on its variant, a missing header falls back to random") {
  auto s = scenario_with({"a", "b"});
  auto params = kAB;
  params["sticky"] = "header:X-User-Id";
  auto stage = make_stage(params, s);
  for (int u = 0; u < 50; ++u) {
    auto id = "user-" + std::to_string(u);
    auto first = round_trip(*stage, request("/", {{"X-User-Id", id}})).variant;
    CHECK(first == stage->variant_for_key(id));
    for (int k = 0; k < 5; ++k) CHECK(round_trip(*stage, request("/", {{"X-User-Id", id}})).variant == first);
  }
  round_trip(*stage, request());
  CHECK(stage->report()["unkeyed"] == 1);
}

TEST_CASE("split: sticky query and ip") {
  auto s = scenario_with({"a", "b"});
  auto params = kAB;
  params["sticky"] = "query:uid";
  auto stage = make_stage(params, s);
  auto ex = round_trip(*stage, request("/x?a=1&uid=abc"));
  CHECK(ex.variant == stage->variant_for_key("abc"));
  CHECK(ex.request.target == "/x?a=1&uid=abc");  // the sticky parameter is not removed
  params["sticky"] = "ip";
  auto by_ip = make_stage(params, s);
  auto e2 = request();
  e2.client_ip = "10.1.2.3";
  CHECK(round_trip(*by_ip, e2).variant == by_ip->variant_for_key("10.1.2.3"));
}

TEST_CASE("split: cookie stickiness sets one HttpOnly SameSite=Lax cookie on first assignment") {
  auto s = scenario_with({"a", "b"}, 42);
  auto params = kAB;
  params["sticky"] = "cookie";
  auto stage = make_stage(params, s);
  auto first = round_trip(*stage, request());
  auto cookies = set_cookies(first);
  REQUIRE(cookies.size() == 1);
  CHECK(cookies[0].rfind("rproxy_split=", 0) == 0);
  CHECK(cookies[0].find("; Path=/") != std::string::npos);
  CHECK(cookies[0].find("; HttpOnly") != std::string::npos);
  CHECK(cookies[0].find("; SameSite=Lax") != std::string::npos);
  CHECK(cookies[0].find("; Max-Age=2592000") != std::string::npos);
  auto key = cookies[0].substr(13, cookies[0].find(';') - 13);
  CHECK(first.variant == stage->variant_for_key(key));
  for (int i = 0; i < 10; ++i) {
    auto again = round_trip(*stage, request("/", {{"Cookie", "theme=dark; rproxy_split=" + key}}));
    CHECK(again.variant == first.variant);
    CHECK(set_cookies(again).empty());
  }
  // Same seed, same request sequence: same cookie values.
  auto stage2 = make_stage(params, s);
  CHECK(set_cookies(round_trip(*stage2, request())) == cookies);
}

TEST_CASE("split: the override header forces a variant, unknown names get 400") {
  auto s = scenario_with({"a", "b"});
  auto stage = make_stage(kAB, s);
  for (int i = 0; i < 20; ++i)
    CHECK(round_trip(*stage, request("/", {{"X-Rproxy-Variant", "b"}})).variant == "b");
  auto bad = request("/", {{"X-Rproxy-Variant", "c"}});
  auto d = stage->on_request(bad);
  REQUIRE(d.kind == rproxy::Decision::Kind::Respond);
  CHECK(d.response->status == 400);
  CHECK(d.response->headers.get("X-Rproxy-Error") == "unknown_variant");
  CHECK(d.response->body.find("a, b") != std::string::npos);
  CHECK(stage->report()["variants"][1]["overrides"] == 20);
}

TEST_CASE("split: query override is removed from the target and pins a cookie client, empty unpins") {
  auto s = scenario_with({"a", "b"});
  auto params = kAB;
  params["sticky"] = "cookie";
  auto stage = make_stage(params, s);
  auto ex = round_trip(*stage, request("/page?x=1&rproxy_variant=b&y=2"));
  CHECK(ex.variant == "b");
  CHECK(ex.request.target == "/page?x=1&y=2");
  bool pinned = false;
  for (const auto& c : set_cookies(ex)) pinned = pinned || c.rfind("rproxy_variant=b;", 0) == 0;
  CHECK(pinned);
  // The pin cookie keeps the client on b whatever its sticky key says.
  for (int i = 0; i < 20; ++i) {
    auto again = round_trip(
        *stage, request("/", {{"Cookie", "rproxy_split=k" + std::to_string(i) + "; rproxy_variant=b"}}));
    CHECK(again.variant == "b");
  }
  auto un = round_trip(*stage, request("/?rproxy_variant=", {{"Cookie", "rproxy_variant=b"}}));
  CHECK(un.request.target == "/");
  bool cleared = false;
  for (const auto& c : set_cookies(un))
    cleared = cleared || c.find("rproxy_variant=; Path=/; Max-Age=0") == 0;
  CHECK(cleared);
}

TEST_CASE("split: override disabled ignores header, query and cookie") {
  auto s = scenario_with({"a", "b"});
  auto params = json{{"variants", {{{"name", "a"}, {"weight", 1}}, {{"name", "b"}, {"weight", 0}}}},
                     {"override", false}};
  auto stage = make_stage(params, s);
  auto ex = round_trip(
      *stage, request("/?rproxy_variant=b", {{"X-Rproxy-Variant", "b"}, {"Cookie", "rproxy_variant=b"}}));
  CHECK(ex.variant == "a");
  CHECK(ex.request.target == "/?rproxy_variant=b");
}

TEST_CASE("split: failover serves from the other variant and counts it") {
  auto s = scenario_with({"a", "b"});
  auto stage =
      make_stage(json{{"variants", {{{"name", "a"}, {"weight", 1}}, {{"name", "b"}, {"weight", 0}}}}}, s);
  auto ex = request();
  auto d = stage->on_request(ex);
  CHECK(*d.upstream == "a");
  ex.tags["failover_from"] = "a";
  ex.upstream_name = "b";
  ex.response = rproxy::ResponseHead{1, 200, "OK", {}};
  stage->on_response(ex);
  CHECK(ex.response->headers.get("X-Rproxy-Variant") == "b");
  ex.outcome.status = 200;
  stage->on_complete(ex);
  auto rep = stage->report();
  CHECK(rep["variants"][0]["failovers_out"] == 1);
  CHECK(rep["variants"][1]["failovers_in"] == 1);
  CHECK(rep["variants"][1]["requests"] == 1);
  CHECK(rep["variants"][0]["requests"] == 0);
}

TEST_CASE("split: report counts requests, status classes, errors and shares") {
  auto s = scenario_with({"a", "b"});
  auto stage = make_stage(kAB, s);
  for (int i = 0; i < 1000; ++i) round_trip(*stage, request());
  auto ex = request();
  stage->on_request(ex);
  ex.outcome.status = 502;
  ex.outcome.error = "upstream_connect_refused";
  stage->on_complete(ex);
  auto rep = stage->report();
  CHECK(rep["requests"] == 1001);
  auto a = rep["variants"][0];
  auto b = rep["variants"][1];
  CHECK(a["requests"].get<int>() + b["requests"].get<int>() == 1001);
  CHECK(a["status"]["5xx"].get<int>() + b["status"]["5xx"].get<int>() == 1);
  CHECK(a["errors"].get<int>() + b["errors"].get<int>() == 1);
  CHECK(a["target_share"] == doctest::Approx(0.9));
  CHECK(a["share_ci95"][0].get<double>() < a["observed_share"].get<double>());
  CHECK(a["share_ci95"][1].get<double>() > a["observed_share"].get<double>());
  CHECK(a["latency_ms"]["p50"].get<double>() > 1.0);
  CHECK(stage->summary().find("variant") != std::string::npos);
}

TEST_CASE("split: explain names the variant and the scores") {
  auto s = scenario_with({"a", "b"}, 42);
  auto stage = make_stage(kAB, s);
  auto line = stage->explain("user-42");
  CHECK(line.find("-> variant " + stage->variant_for_key("user-42")) != std::string::npos);
  CHECK(line.find("seed 42") != std::string::npos);
}

TEST_CASE("split: shadow mode sends everything to the primary and asks for copies") {
  auto s = scenario_with({"a", "b"});
  auto params =
      json{{"variants", {{{"name", "a"}}, {{"name", "b"}}}}, {"shadow", {{"variant", "b"}, {"percent", 50}}}};
  auto stage = make_stage(params, s);
  int copies = 0;
  for (int i = 0; i < 1000; ++i) {
    auto ex = request();
    auto d = stage->on_request(ex);
    CHECK(ex.variant == "a");
    if (d.shadow) {
      ++copies;
      CHECK(d.shadow->upstream == "b");
      CHECK(d.shadow->observer == stage.get());
    }
  }
  CHECK(copies > 430);
  CHECK(copies < 570);
  // Comparisons are tallied per route with examples.
  auto ex = request("/price");
  ex.route = "default";
  rproxy::CapturedResponse p;
  p.status = 200;
  p.headers = {{"Content-Type", "application/json"}};
  p.body = R"({"price": 1, "at": 5})";
  p.body_size = p.body.size();
  auto sh = p;
  sh.body = R"({"price": 2, "at": 6})";
  stage->on_shadow(ex, p, sh);
  stage->on_shadow(ex, p, p);
  stage->on_shadow_skipped(ex, "shadow queue full");
  auto rep = stage->report()["shadow"];
  CHECK(rep["compared"] == 2);
  CHECK(rep["identical"] == 1);
  CHECK(rep["different"] == 1);
  CHECK(rep["skipped"]["shadow queue full"] == 1);
  CHECK(rep["routes"]["default"]["differences"]["body $.price"] == 1);
  CHECK(rep["routes"]["default"]["examples"][0]["request"] == "GET /price");
}

TEST_CASE("split: param errors name their JSON path") {
  auto s = scenario_with({"a", "b"});
  CHECK(has_problem(problems_of(json::object(), s), "stages[0].params.variants: required"));
  CHECK(has_problem(problems_of({{"variants", {{{"name", "a"}}}}}, s), "at least two variants"));
  CHECK(has_problem(problems_of({{"variants", {{{"name", "a"}}, {{"name", "a"}}}}}, s),
                    "stages[0].params.variants[1].name: duplicate variant \"a\""));
  CHECK(has_problem(problems_of({{"variants", {{{"name", "a"}}, {{"name", "c"}}}}}, s),
                    "stages[0].params.variants[1].name: route \"default\" has no upstream named \"c\" (it "
                    "has \"a\", \"b\")"));
  auto bad_sticky = kAB;
  bad_sticky["sticky"] = "session";
  CHECK(has_problem(problems_of(bad_sticky, s),
                    "stages[0].params.sticky: must be none, cookie, ip, header:NAME or query:NAME"));
  bad_sticky["sticky"] = "header:";
  CHECK(has_problem(problems_of(bad_sticky, s), "needs a name after \"header:\""));
  auto unknown = kAB;
  unknown["weights"] = 1;
  CHECK(has_problem(problems_of(unknown, s), "stages[0].params.weights: unknown key"));
  auto short_cookie = kAB;
  short_cookie["cookie_max_age"] = "500ms";
  CHECK(has_problem(problems_of(short_cookie, s), "stages[0].params.cookie_max_age: must be at least 1s"));
  auto bad_weight = json{{"variants", {{{"name", "a"}, {"weight", -1}}, {{"name", "b"}}}}};
  CHECK(has_problem(problems_of(bad_weight, s), "stages[0].params.variants[0].weight: expected an integer"));
  auto zero = json{{"variants", {{{"name", "a"}, {"weight", 0}}, {{"name", "b"}, {"weight", 0}}}}};
  CHECK(has_problem(problems_of(zero, s), "weight 0"));
  auto shadow = kAB;
  shadow["shadow"] = {{"variant", "z"}, {"percent", 101}, {"ignore", {"$..x"}}};
  auto p = problems_of(shadow, s);
  CHECK(has_problem(p, "stages[0].params.shadow.variant: no variant named \"z\""));
  CHECK(has_problem(p, "stages[0].params.shadow.percent"));
  CHECK(has_problem(p, "stages[0].params.shadow.ignore[0]"));
  auto unnamed = scenario_with({"", ""});
  CHECK(has_problem(problems_of(kAB, unnamed), "its upstreams have no names"));
}
