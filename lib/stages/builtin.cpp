// The registry and the explicit list of built-in stages. Registration is a plain function call, never a
// static initializer: objects nobody references are dropped from a static library by the linker, and the
// order of this list is the order `rproxy stages` prints.
#include <stdexcept>

#include "rproxy/stage.hpp"
#include "stages/access.hpp"
#include "stages/cache.hpp"
#include "stages/compress.hpp"
#include "stages/cors.hpp"
#include "stages/fault.hpp"
#include "stages/headers.hpp"
#include "stages/rate_limit.hpp"
#include "stages/record.hpp"
#include "stages/replay.hpp"
#include "stages/split.hpp"
#include "stages/static_files.hpp"

namespace rproxy {

void StageRegistry::add(StageInfo info) {
  // Two stages claiming one type is a programming error, not a config error: fail loudly at startup.
  if (info.type.empty() || !info.factory)
    throw std::logic_error("StageRegistry::add: stage needs a type and a factory");
  if (find(info.type) != nullptr)
    throw std::logic_error("StageRegistry::add: stage type registered twice: " + info.type);
  stages_.push_back(std::move(info));
}

const StageInfo* StageRegistry::find(const std::string& type) const {
  for (const auto& s : stages_)
    if (s.type == type) return &s;
  return nullptr;
}

void register_builtin_stages(StageRegistry& registry) {
  registry.add(
      {"headers", "set, add and remove request and response header fields", stages::HeadersStage::create});
  registry.add({"split", "A/B split: assign each exchange a variant (sticky, overridable) and send it there",
                stages::SplitStage::create});
  registry.add({"record", "write every completed exchange to a cassette (redacted, crash-safe; once/new/all)",
                stages::RecordStage::create});
  registry.add({"fault", "inject reproducible HTTP and connection faults by rule, journaling every decision",
                stages::FaultStage::create});
  registry.add({"access", "admit requests by client address (allow/deny CIDR) and/or Basic and Bearer credentials",
                stages::AccessStage::create});
  registry.add({"cors", "answer CORS preflights and add CORS headers to every response (allowed origins)",
                stages::CorsStage::create});
  registry.add({"rate_limit", "admit N requests per second/minute/hour per client, header, route or globally; 429 beyond",
                stages::RateLimitStage::create});
  registry.add({"static", "serve files from a directory (types, ranges, ETags, index, SPA fallback; never outside it)",
                stages::StaticStage::create, true});
  registry.add({"cache", "in-memory RFC 9111 response cache: freshness, revalidation, Vary, LRU bounded by bytes",
                stages::CacheStage::create});
  registry.add({"compress", "gzip/brotli response bodies as they stream, for clients that accept it (never SSE)",
                stages::CompressStage::create});
  registry.add({"replay", "answer requests from a cassette or HAR file, with a verdict; never contacts an upstream",
                stages::ReplayStage::create, true});
}

const StageRegistry& builtin_stage_registry() {
  // Built once, on first use (thread-safe since C++11), and immutable afterwards: no global mutable state.
  static const StageRegistry registry = [] {
    StageRegistry r;
    register_builtin_stages(r);
    return r;
  }();
  return registry;
}

}  // namespace rproxy
