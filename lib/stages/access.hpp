// AccessStage lets a request through only from allowed client addresses and/or with valid credentials.
//
//   {"type": "access", "params": {
//      "allow": ["127.0.0.1/8", "::1", "10.0.0.0/8"],
//      "deny":  ["192.168.1.13/32"],
//      "basic":  {"users_file": "users.htpasswd", "realm": "rproxy"},
//      "bearer": {"tokens_file": "tokens.txt", "header": "Authorization", "realm": "api"},
//      "forward_credentials": false}}
//
// Order: deny (a match is 403), then allow (when non-empty the client must match one, else 403), then
// credentials (basic and/or bearer; either one is enough; otherwise 401 with a challenge per scheme). Rules
// look at Exchange::client_ip only, never at X-Forwarded-For, which any client can write. A rejected request
// is answered here and never reaches the upstream. On success the credential headers are removed unless
// forward_credentials is true, so the upstream never sees the proxy's credentials.
//
// Secrets: the users file holds crypt(3) hashes only (bcrypt, sha512-crypt, sha256-crypt, yescrypt); the
// tokens file holds "sha256:<hex>" digests or plain tokens, and only digests are kept in memory. Nothing
// secret is logged or echoed.
//
// Hooks: on_request. Settings are immutable after create; counters are atomic and the verification cache is
// behind a mutex, so one object serves every thread.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "rproxy/stage.hpp"
#include "stages/cidr.hpp"

namespace rproxy::stages {

using Sha256Digest = std::array<unsigned char, 32>;

struct AccessSettings {
  std::vector<CidrRange> allow;
  std::vector<CidrRange> deny;

  struct Basic {
    std::string realm = "rproxy";
    std::string users_file;
    std::unordered_map<std::string, std::string> users;  // user -> crypt(3) hash
    std::string dummy_hash;  // an entry's hash, verified against for unknown users (same cost either way)
  };
  std::optional<Basic> basic;

  struct Bearer {
    std::string realm = "rproxy";
    std::string header = "Authorization";  // "Bearer <token>"; any other header carries the bare token
    std::string tokens_file;
    std::vector<Sha256Digest> tokens;  // SHA-256 of each accepted token
  };
  std::optional<Bearer> bearer;

  bool forward_credentials = false;
};

class AccessStage : public Stage {
 public:
  explicit AccessStage(AccessSettings settings) : settings_(std::move(settings)) {}

  // create is the registry factory: parses params and reads the users and tokens files (problems are prefixed
  // with path) and returns the stage, or nullptr when any problem was found.
  static std::unique_ptr<Stage> create(const nlohmann::json& params, const std::string& path,
                                       const StageContext& context, std::vector<std::string>& problems);

  Decision on_request(Exchange& exchange) override;
  // report: {"allowed", "denied_ip", "unauthorized", "bearer", "by_user": {user: count}}.
  nlohmann::json report() const override;
  std::string summary() const override;

  const AccessSettings& settings() const { return settings_; }
  // cached_credentials: how many users' last correct password is cached (for tests and the curious).
  std::size_t cached_credentials() const {
    std::lock_guard lock(cache_mutex_);
    return cache_.size();
  }
  // Verification cache size bound; when full it is emptied (correct credentials then cost one crypt again).
  static constexpr std::size_t kCacheCap = 1024;

 private:
  enum class Check { Absent, Failed, Ok };
  // The checks set why to what was wrong when they return Failed (sent in the 401 body: never a secret).
  Check check_basic(const Exchange& exchange, std::string& user, std::string& why);
  Check check_bearer(const Exchange& exchange, std::string& why) const;
  bool verify_password(const std::string& user, const std::string& password);
  LocalResponse unauthorized(bool credentials_given, bool bearer_token_given, const std::string& why) const;

  const AccessSettings settings_;

  // Successful basic verifications: user -> SHA-256(user ":" password). A repeated correct credential then
  // costs a hash instead of a crypt (bcrypt is milliseconds, and stages run on event-loop threads).
  mutable std::mutex cache_mutex_;
  std::unordered_map<std::string, Sha256Digest> cache_;

  std::atomic<std::uint64_t> allowed_{0};
  std::atomic<std::uint64_t> denied_ip_{0};
  std::atomic<std::uint64_t> unauthorized_{0};
  std::atomic<std::uint64_t> bearer_ok_{0};
  mutable std::mutex by_user_mutex_;
  std::map<std::string, std::uint64_t> by_user_;
};

}  // namespace rproxy::stages
