// Unit tests for lib/core/balancer: every policy, deterministic for a seed.
#include <doctest/doctest.h>

#include <map>

#include "core/balancer.hpp"

using namespace rproxy;

TEST_CASE("balancer: round robin cycles through upstreams") {
  Balancer b(Balance::RoundRobin, {1, 1, 1}, 1);
  std::vector<std::size_t> seq;
  for (int i = 0; i < 6; ++i) seq.push_back(b.pick());
  CHECK(seq == std::vector<std::size_t>{0, 1, 2, 0, 1, 2});
}

TEST_CASE("balancer: skipped upstreams are avoided unless all are skipped") {
  Balancer b(Balance::RoundRobin, {1, 1, 1}, 1);
  for (int i = 0; i < 6; ++i) CHECK(b.pick({false, true, false}) != 1);
  auto all = b.pick({true, true, true});
  CHECK(all < 3);
}

TEST_CASE("balancer: smooth weighted round robin interleaves by weight") {
  Balancer b(Balance::Weighted, {3, 1}, 1);
  std::vector<std::size_t> seq;
  for (int i = 0; i < 8; ++i) seq.push_back(b.pick());
  CHECK(seq == std::vector<std::size_t>{0, 0, 1, 0, 0, 0, 1, 0});
  std::map<std::size_t, int> counts;
  for (int i = 0; i < 400; ++i) counts[b.pick()]++;
  CHECK(counts[0] == 300);
  CHECK(counts[1] == 100);
}

TEST_CASE("balancer: least_conn prefers the upstream with fewer active requests") {
  Balancer b(Balance::LeastConn, {1, 1}, 1);
  b.begin(0);
  for (int i = 0; i < 4; ++i) CHECK(b.pick() == 1);
  b.begin(1);
  b.begin(1);
  CHECK(b.pick() == 0);
  b.end(1);
  b.end(1);
  b.end(0);
  std::map<std::size_t, int> counts;
  for (int i = 0; i < 10; ++i) counts[b.pick()]++;
  CHECK(counts[0] == 5);  // ties rotate
}

TEST_CASE("balancer: random is reproducible for a seed and differs across seeds") {
  auto run = [](std::uint64_t seed) {
    Balancer b(Balance::Random, {1, 1, 1, 1}, seed);
    std::vector<std::size_t> seq;
    for (int i = 0; i < 64; ++i) seq.push_back(b.pick());
    return seq;
  };
  CHECK(run(7) == run(7));
  CHECK(run(7) != run(8));
  std::map<std::size_t, int> counts;
  for (auto i : run(42)) counts[i]++;
  CHECK(counts.size() == 4);
}
