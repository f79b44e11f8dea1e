// StaticStage serves files from a directory, for a front-end build next to an API behind the same origin.
//
//   {"type": "static", "params": {"root": "./dist", "prefix": "/", "index": ["index.html"], "spa": true,
//                                 "cache_control": "no-cache"}}
//
// GET and HEAD only (405 otherwise). The request path, minus prefix, is percent-decoded exactly once and
// split into segments; ".." segments, NUL bytes and encoded slashes are refused, and the file finally
// opened is resolved (realpath) and must lie inside the resolved root, so neither "..", "%2e%2e",
// "%252e%252e" nor a symlink pointing out of the root can reach anything outside it. Directories redirect
// to their "/" form and serve their index file; with spa, a path that names no file and looks like a page
// (no extension, or the client accepts text/html) gets the root index.html instead of 404.
//
// Responses carry Content-Type (by extension), Content-Length, Last-Modified, a strong ETag (size and
// mtime), Accept-Ranges and Cache-Control. If-None-Match / If-Modified-Since give 304; a single byte range
// (Range: bytes=a-b, a-, -n; If-Range honoured) gives 206 with Content-Range, an unsatisfiable one 416.
// Bodies stream from the file in bounded pieces (LocalResponse::body_file), never loaded whole.
//
// Hooks: on_request (answers every request on its route). Stateless after construction.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rproxy/stage.hpp"

namespace rproxy::stages {

struct StaticSettings {
  std::string root;       // as configured
  std::string real_root;  // resolved once at start
  std::string prefix = "/";
  std::vector<std::string> index{"index.html"};
  bool spa = false;
  std::string cache_control = "no-cache";
};

class StaticStage : public Stage {
 public:
  explicit StaticStage(StaticSettings settings) : settings_(std::move(settings)) {}
  static std::unique_ptr<Stage> create(const nlohmann::json& params, const std::string& path,
                                       const StageContext& context, std::vector<std::string>& problems);
  Decision on_request(Exchange& exchange) override;

 private:
  StaticSettings settings_;
};

// content_type_for: the media type for a file name's extension (text types with charset=utf-8).
std::string content_type_for(const std::string& name);
// http_date / parse_http_date: IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), seconds since the epoch.
std::string http_date(std::int64_t epoch_seconds);
std::optional<std::int64_t> parse_http_date(std::string_view text);

}  // namespace rproxy::stages
