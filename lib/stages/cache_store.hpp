// CacheStore keeps the cache stage's stored responses: a thread-safe LRU bounded by bytes, where one key
// (route, scheme, host, target) holds several variants (Vary) and each variant is its own LRU entry.
//
// An entry is charged its key, body, header lines (name + value + 4) and Vary values; when a put goes over
// max_bytes the least recently used entries go first, and an entry larger than max_bytes on its own is
// never stored. Entries are immutable and shared: a reader keeps its shared_ptr after eviction, so
// serving never races with the store. One mutex guards everything; find, put and erase are O(1) in the
// number of entries (linear only in the variants of one key, a handful).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "rproxy/http.hpp"
#include "stages/cache_policy.hpp"

namespace rproxy::stages {

// CachedResponse is one stored response with what the freshness rules concluded when it was stored.
struct CachedResponse {
  int status = 200;
  // As the upstream sent them, less hop-by-hop and private="..." fields, with Date added when missing.
  Headers headers;
  std::string body;
  VaryKey vary;  // the request header values this variant answers
  SysTime request_time{};
  SysTime response_time{};
  std::chrono::milliseconds lifetime{0};      // freshness lifetime
  bool always_revalidate = false;             // no-cache: never served without asking the upstream
  bool never_stale = false;                   // must-revalidate (or proxy-revalidate / s-maxage when shared)
  std::vector<std::string> hide_unvalidated;  // no-cache="..." fields: only sent after a revalidation

  // size is what the entry is charged in the store (besides its key).
  std::uint64_t size() const;
};

class CacheStore {
 public:
  using Entry = std::shared_ptr<const CachedResponse>;
  // Selects picks variants of a key (Vary matching against the request at hand).
  using Selects = std::function<bool(const CachedResponse&)>;

  explicit CacheStore(std::uint64_t max_bytes) : max_bytes_(max_bytes) {}

  // find returns the most recent variant under key that `selects` accepts, marking it used.
  Entry find(const std::string& key, const Selects& selects);
  // put stores entry under key, replacing the variants `supersedes` accepts, then evicts down to
  // max_bytes. Returns false (storing nothing, removing nothing) when the entry alone is over max_bytes.
  bool put(const std::string& key, Entry entry, const Selects& supersedes);
  // erase drops every variant of key (invalidation); the second form drops one entry if still stored.
  std::size_t erase(const std::string& key);
  bool erase(const std::string& key, const CachedResponse* entry);

  struct Stats {
    std::uint64_t entries = 0;
    std::uint64_t bytes = 0;
    std::uint64_t evicted = 0;
  };
  Stats stats() const;
  std::uint64_t max_bytes() const { return max_bytes_; }

 private:
  struct Node {
    const std::string* key;  // points into index_ (stable: node-based map)
    Entry entry;
    std::uint64_t charge = 0;
  };
  using Lru = std::list<Node>;
  void unlink(Lru::iterator node);  // with mutex_ held

  const std::uint64_t max_bytes_;
  mutable std::mutex mutex_;
  Lru lru_;  // most recently used first
  std::unordered_map<std::string, std::vector<Lru::iterator>> index_;
  std::uint64_t bytes_ = 0;
  std::uint64_t evicted_ = 0;
};

}  // namespace rproxy::stages
