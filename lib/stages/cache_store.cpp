#include "stages/cache_store.hpp"

#include <algorithm>

namespace rproxy::stages {

std::uint64_t CachedResponse::size() const {
  std::uint64_t n = body.size();
  for (const auto& h : headers) n += h.name.size() + h.value.size() + 4;  // "name: value\r\n"
  for (const auto& [name, value] : vary) n += name.size() + (value ? value->size() : 0);
  return n;
}

CacheStore::Entry CacheStore::find(const std::string& key, const Selects& selects) {
  std::lock_guard lock(mutex_);
  auto it = index_.find(key);
  if (it == index_.end()) return nullptr;
  // Several variants may fit (a response without Vary next to one with it): the most recent wins
  // (RFC 9111 §4.1).
  Lru::iterator best = lru_.end();
  for (auto node : it->second)
    if (selects(*node->entry) &&
        (best == lru_.end() || node->entry->response_time > best->entry->response_time))
      best = node;
  if (best == lru_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, best);
  return best->entry;
}

void CacheStore::unlink(Lru::iterator node) {
  auto it = index_.find(*node->key);
  auto& variants = it->second;
  variants.erase(std::find(variants.begin(), variants.end(), node));
  bytes_ -= node->charge;
  lru_.erase(node);
  if (variants.empty()) index_.erase(it);
}

bool CacheStore::put(const std::string& key, Entry entry, const Selects& supersedes) {
  const std::uint64_t charge = key.size() + entry->size();
  if (charge > max_bytes_) return false;
  std::lock_guard lock(mutex_);
  if (auto it = index_.find(key); it != index_.end()) {
    auto old = it->second;  // unlink may erase the vector itself
    for (auto node : old)
      if (supersedes(*node->entry)) unlink(node);
  }
  auto slot = index_.try_emplace(key).first;
  lru_.push_front(Node{&slot->first, std::move(entry), charge});
  slot->second.push_back(lru_.begin());
  bytes_ += charge;
  while (bytes_ > max_bytes_) {
    unlink(std::prev(lru_.end()));  // never the new entry: it fits alone
    ++evicted_;
  }
  return true;
}

std::size_t CacheStore::erase(const std::string& key) {
  std::lock_guard lock(mutex_);
  auto it = index_.find(key);
  if (it == index_.end()) return 0;
  auto nodes = it->second;
  for (auto node : nodes) unlink(node);
  return nodes.size();
}

bool CacheStore::erase(const std::string& key, const CachedResponse* entry) {
  std::lock_guard lock(mutex_);
  auto it = index_.find(key);
  if (it == index_.end()) return false;
  for (auto node : it->second)
    if (node->entry.get() == entry) {
      unlink(node);
      return true;
    }
  return false;
}

CacheStore::Stats CacheStore::stats() const {
  std::lock_guard lock(mutex_);
  return {lru_.size(), bytes_, evicted_};
}

}  // namespace rproxy::stages
