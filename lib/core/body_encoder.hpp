// Response compression: streaming gzip/brotli encoders, Accept-Encoding negotiation (RFC 9110 §12.5.3)
// and the choice of which media types are worth compressing.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rproxy {

enum class ContentCoding { Identity, Gzip, Brotli };

// to_string is the coding's Content-Encoding token: "identity", "gzip", "br".
std::string_view to_string(ContentCoding coding);

// BodyEncoder compresses a body as it streams: each encode() appends to out everything that can be sent
// now. With flush=true the output so far decodes to all input so far (Z_SYNC_FLUSH /
// BROTLI_OPERATION_FLUSH), so streamed responses (server-sent chunks, long polls) are not held back in the
// compressor; flushing costs some ratio, so only flush when the upstream paused. finish() appends the
// trailer; a second finish() appends nothing. Memory is bounded by the compressor, never the body: about
// 256 KiB per gzip stream, about 3 MiB per brotli stream at level 4 (more at higher levels).
//
// encode() after finish() throws std::logic_error. If a call throws (bad_alloc, a compressor error) the
// encoder has lost output and every later call throws std::runtime_error: the body cannot be completed and
// the connection should be closed.
class BodyEncoder {
 public:
  // make returns a passthrough encoder for Identity. level: gzip 1-9, brotli 0-11, -1 for the default (gzip
  // 6; brotli 4, since brotli's own default of 11 is far too slow for a proxy); ignored for Identity. Throws
  // std::invalid_argument for a level out of range and std::runtime_error if the compressor cannot start.
  // size_hint: the body's length when known (0 = unknown); smaller windows for small bodies make
  // compressing them several times cheaper without costing ratio (the window never needs to exceed the body).
  static std::unique_ptr<BodyEncoder> make(ContentCoding coding, int level = -1, std::uint64_t size_hint = 0);

  BodyEncoder(const BodyEncoder&) = delete;
  BodyEncoder& operator=(const BodyEncoder&) = delete;
  virtual ~BodyEncoder() = default;

  virtual void encode(std::string_view in, bool flush, std::string& out) = 0;
  virtual void finish(std::string& out) = 0;

 protected:
  BodyEncoder() = default;
};

// choose_coding picks the response coding for a request's Accept-Encoding value: q-values (q=0 means not
// acceptable), "*" for every coding not listed, case-insensitive tokens, "x-gzip" as gzip. offered is the
// server's preference order; among the codings the client accepts with the highest q, the first offered
// wins. Identity is the answer when the header is absent or nothing offered is acceptable (even if the
// client refused identity too: sending it uncompressed beats a 406). Malformed elements are ignored.
ContentCoding choose_coding(std::optional<std::string_view> accept_encoding,
                            const std::vector<ContentCoding>& offered);

// is_compressible_type says whether a Content-Type's media type (parameters ignored, case-insensitive)
// matches one of patterns, where '*' matches any run of characters ("text/*", "application/*+json").
// Always false for an empty content_type and for text/event-stream: SSE must reach the client unbuffered
// and some clients break on compressed event streams.
bool is_compressible_type(std::string_view content_type, const std::vector<std::string>& patterns);

// default_compressible_types lists text-like types that compress well, in the spirit of Caddy's and the
// usual nginx defaults. Already-compressed formats (images, woff/woff2, archives, media) are left out.
const std::vector<std::string>& default_compressible_types();

}  // namespace rproxy
