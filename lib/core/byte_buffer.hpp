// ByteBuffer holds bytes read from a socket and not yet consumed. Unlike std::string it grows without
// zero-filling (a 64 KiB resize per read was a measurable share of a small request's cost), consumes from
// the front in O(1), and can drop its storage while a connection is idle.
#pragma once

#include <algorithm>
#include <cstring>
#include <memory>
#include <string_view>

namespace rproxy {

class ByteBuffer {
 public:
  std::string_view view() const { return {data_.get() + begin_, end_ - begin_}; }
  operator std::string_view() const { return view(); }
  std::size_t size() const { return end_ - begin_; }
  bool empty() const { return begin_ == end_; }

  // prepare returns space for at least n more bytes at the end; commit(k) makes k of them readable.
  char* prepare(std::size_t n) {
    if (cap_ - end_ < n) {
      std::size_t live = size();
      if (begin_ > 0 && cap_ - live >= n) {
        std::memmove(data_.get(), data_.get() + begin_, live);
      } else {
        std::size_t cap = std::max(cap_ * 2, live + n);
        std::unique_ptr<char[]> grown(new char[cap]);
        if (live) std::memcpy(grown.get(), data_.get() + begin_, live);
        data_ = std::move(grown);
        cap_ = cap;
      }
      begin_ = 0;
      end_ = live;
    }
    return data_.get() + end_;
  }
  void commit(std::size_t n) { end_ += n; }
  void consume(std::size_t n) {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }
  void clear() { begin_ = end_ = 0; }
  void append(std::string_view s) {
    std::memcpy(prepare(s.size()), s.data(), s.size());
    commit(s.size());
  }
  // release frees the storage when nothing is buffered (idle connections hold no buffer).
  void release() {
    if (empty()) {
      data_.reset();
      cap_ = begin_ = end_ = 0;
    }
  }

 private:
  std::unique_ptr<char[]> data_;
  std::size_t cap_ = 0;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

}  // namespace rproxy
