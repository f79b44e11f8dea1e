// CompressStage compresses responses for clients that accept it, the way Caddy's encode and nginx's gzip do:
//
//   {"type": "compress", "params": {"encodings": ["br", "gzip"], "types": ["text/*", "application/json"],
//                                   "min_size": "256B", "gzip_level": 6, "brotli_level": 4}}
//
// It decides in on_response and the engine compresses the body as it streams (flushing whenever the
// upstream pauses, so a long poll or a slow stream is never held back). A response is compressed when
// its Content-Type matches types (default: text-like types; never text/event-stream), it carries no
// Content-Encoding or Content-Range, Cache-Control has no no-transform, its status has a body and is not
// 206, its Content-Length (when given) is at least min_size, the request is HTTP/1.1 (a 1.0 client would
// need the connection closed to end the body) and the client's Accept-Encoding accepts one of encodings
// (the first of them wins among equal q-values). Compressible responses get Vary: Accept-Encoding
// whether or not they were compressed, so caches keep the variants apart; a compressed one loses
// Content-Length and Accept-Ranges and its ETag becomes weak (the bytes differ from the identity ones).
// Local responses (static files, cache hits, replays) are compressed the same way.
//
// Hooks: on_response. Stateless after construction apart from counters.
#pragma once

#include <atomic>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/body_encoder.hpp"
#include "rproxy/stage.hpp"

namespace rproxy::stages {

struct CompressSettings {
  std::vector<ContentCoding> encodings{ContentCoding::Brotli, ContentCoding::Gzip};
  std::vector<std::string> types = default_compressible_types();
  std::uint64_t min_size = 256;
  int gzip_level = 6;
  int brotli_level = 4;
};

class CompressStage : public Stage {
 public:
  explicit CompressStage(CompressSettings settings) : settings_(std::move(settings)) {}

  static std::unique_ptr<Stage> create(const nlohmann::json& params, const std::string& path,
                                       const StageContext& context, std::vector<std::string>& problems);

  Decision on_response(Exchange& exchange) override;
  nlohmann::json report() const override;
  std::string summary() const override;

 private:
  CompressSettings settings_;
  std::atomic<std::uint64_t> compressed_{0};
  std::atomic<std::uint64_t> gzip_{0};
  std::atomic<std::uint64_t> brotli_{0};
};

}  // namespace rproxy::stages
