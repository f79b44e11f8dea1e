// Deadlines for socket operations without a timer per operation. Each worker keeps one DeadlineWheel that
// sweeps its registered deadlines every few milliseconds; arming a deadline is a store of a time point,
// so a request costs no timer syscalls. On expiry the owner's callback cancels the socket operation, and
// the coroutine sees `expired()`.
#pragma once

#include <chrono>
#include <functional>
#include <list>
#include <optional>

#include <asio/steady_timer.hpp>

namespace rproxy {

using SteadyClock = std::chrono::steady_clock;

class DeadlineWheel;

class Deadline {
 public:
  Deadline(DeadlineWheel& wheel, std::function<void()> on_expire);
  ~Deadline();
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

  void arm(SteadyClock::duration d) { arm_at(SteadyClock::now() + d); }
  void arm_at(SteadyClock::time_point t) {
    when_ = t;
    expired_ = false;
  }
  void disarm() { when_ = SteadyClock::time_point::max(); }
  bool expired() const { return expired_; }
  SteadyClock::time_point when() const { return when_; }

 private:
  friend class DeadlineWheel;
  DeadlineWheel& wheel_;
  std::function<void()> on_expire_;
  SteadyClock::time_point when_ = SteadyClock::time_point::max();
  bool expired_ = false;
  std::list<Deadline*>::iterator pos_;
};

class DeadlineWheel {
 public:
  explicit DeadlineWheel(asio::any_io_executor ex, std::chrono::milliseconds tick = std::chrono::milliseconds(20));
  void start();
  void stop();
  // release destroys the timer; call before the io_context goes away (entries may outlive it).
  void release() {
    stop();
    timer_.reset();
  }

 private:
  friend class Deadline;
  void schedule();
  void sweep();
  std::optional<asio::steady_timer> timer_;
  std::chrono::milliseconds tick_;
  std::list<Deadline*> entries_;
  bool stopped_ = false;
};

inline Deadline::Deadline(DeadlineWheel& wheel, std::function<void()> on_expire)
    : wheel_(wheel), on_expire_(std::move(on_expire)) {
  pos_ = wheel_.entries_.insert(wheel_.entries_.end(), this);
}
inline Deadline::~Deadline() { wheel_.entries_.erase(pos_); }

inline DeadlineWheel::DeadlineWheel(asio::any_io_executor ex, std::chrono::milliseconds tick)
    : timer_(std::in_place, ex), tick_(tick) {}
inline void DeadlineWheel::start() { schedule(); }
inline void DeadlineWheel::stop() {
  stopped_ = true;
  if (timer_) timer_->cancel();
}
inline void DeadlineWheel::schedule() {
  if (stopped_ || !timer_) return;
  timer_->expires_after(tick_);
  timer_->async_wait([this](std::error_code ec) {
    if (ec || stopped_) return;
    sweep();
    schedule();
  });
}
inline void DeadlineWheel::sweep() {
  auto now = SteadyClock::now();
  // Callbacks only cancel sockets; they never add or remove entries, so iterating is safe.
  for (auto* d : entries_) {
    // Expiry is sticky: the callback runs on every sweep until the owner disarms, because a cancel
    // that lands between two operations of a composed write would otherwise be lost.
    if (d->when_ <= now) {
      d->expired_ = true;
      d->on_expire_();
    }
  }
}

}  // namespace rproxy
