// Unit tests for lib/core/body_encoder: gzip/brotli round trips through the real decoders, the streaming
// (flush) guarantee, Accept-Encoding negotiation and the compressible-type rules.
#include "core/body_encoder.hpp"

#include <brotli/decode.h>
#include <doctest/doctest.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

using namespace rproxy;

namespace {

// Gunzip decodes a gzip stream incrementally, the way a client reads a streamed response.
class Gunzip {
 public:
  Gunzip() { REQUIRE(inflateInit2(&zs_, 15 + 16) == Z_OK); }
  ~Gunzip() { inflateEnd(&zs_); }
  Gunzip(const Gunzip&) = delete;
  Gunzip& operator=(const Gunzip&) = delete;

  // feed returns everything the bytes so far decode to; false on a corrupt stream.
  bool feed(std::string_view in, std::string& out) {
    zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs_.avail_in = static_cast<uInt>(in.size());
    char buf[16 * 1024];
    do {
      zs_.next_out = reinterpret_cast<Bytef*>(buf);
      zs_.avail_out = sizeof buf;
      int rc = inflate(&zs_, Z_SYNC_FLUSH);
      if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) return false;
      out.append(buf, sizeof buf - zs_.avail_out);
      if (rc == Z_STREAM_END) ended_ = true;
    } while (zs_.avail_out == 0);
    return true;
  }
  bool ended() const { return ended_; }

 private:
  z_stream zs_{};
  bool ended_ = false;
};

// Unbrotli is Gunzip's counterpart for brotli.
class Unbrotli {
 public:
  Unbrotli() : state_(BrotliDecoderCreateInstance(nullptr, nullptr, nullptr), BrotliDecoderDestroyInstance) {
    REQUIRE(state_);
  }

  bool feed(std::string_view in, std::string& out) {
    auto next_in = reinterpret_cast<const uint8_t*>(in.data());
    std::size_t avail_in = in.size();
    for (;;) {
      std::size_t avail_out = 0;
      uint8_t* next_out = nullptr;
      auto rc =
          BrotliDecoderDecompressStream(state_.get(), &avail_in, &next_in, &avail_out, &next_out, nullptr);
      std::size_t n = 0;
      const uint8_t* p = BrotliDecoderTakeOutput(state_.get(), &n);
      out.append(reinterpret_cast<const char*>(p), n);
      if (rc == BROTLI_DECODER_RESULT_ERROR) return false;
      if (rc == BROTLI_DECODER_RESULT_SUCCESS) ended_ = true;
      if (rc != BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT) return true;
    }
  }
  bool ended() const { return ended_; }

 private:
  std::unique_ptr<BrotliDecoderState, decltype(&BrotliDecoderDestroyInstance)> state_;
  bool ended_ = false;
};

// decode_all decodes a complete body; nullopt unless it is valid and properly terminated.
std::optional<std::string> decode_all(ContentCoding coding, const std::string& encoded) {
  std::string out;
  if (coding == ContentCoding::Gzip) {
    Gunzip d;
    if (!d.feed(encoded, out) || !d.ended()) return std::nullopt;
  } else {
    Unbrotli d;
    if (!d.feed(encoded, out) || !d.ended()) return std::nullopt;
  }
  return out;
}

// One-shot decode with zlib's own gzip-aware uncompress path and brotli's one-call API, independent of
// the streaming helpers above.
std::optional<std::string> decode_one_shot(ContentCoding coding, const std::string& encoded,
                                           std::size_t expected_size) {
  std::string out(expected_size + 1, '\0');
  if (coding == ContentCoding::Brotli) {
    std::size_t size = out.size();
    if (BrotliDecoderDecompress(encoded.size(), reinterpret_cast<const uint8_t*>(encoded.data()), &size,
                                reinterpret_cast<uint8_t*>(out.data())) != BROTLI_DECODER_RESULT_SUCCESS)
      return std::nullopt;
    out.resize(size);
    return out;
  }
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 16) != Z_OK) return std::nullopt;
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(encoded.data()));
  zs.avail_in = static_cast<uInt>(encoded.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = inflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  inflateEnd(&zs);
  if (rc != Z_STREAM_END) return std::nullopt;
  return out;
}

std::string encode_whole(ContentCoding coding, const std::string& body, int level = -1) {
  auto enc = BodyEncoder::make(coding, level);
  std::string out;
  enc->encode(body, false, out);
  enc->finish(out);
  return out;
}

// mixed_body has the shapes real responses have: markup-like text, incompressible bytes and long runs.
std::string mixed_body(std::size_t size, std::mt19937& rng) {
  std::string body;
  body.reserve(size);
  constexpr std::string_view kMarkup = "<li class=\"item\">row</li>\n";
  std::uniform_int_distribution<int> kind(0, 2), byte(0, 255), len(1, 20000);
  while (body.size() < size) {
    auto n = std::min<std::size_t>(static_cast<std::size_t>(len(rng)), size - body.size());
    switch (kind(rng)) {
      case 0:
        for (std::size_t i = 0; i < n; ++i) body += kMarkup[i % kMarkup.size()];
        break;
      case 1:
        for (std::size_t i = 0; i < n; ++i) body += static_cast<char>(byte(rng));
        break;
      default:
        body.append(n, static_cast<char>(byte(rng)));
    }
  }
  return body;
}

const ContentCoding kCompressed[] = {ContentCoding::Gzip, ContentCoding::Brotli};

}  // namespace

TEST_CASE("body encoder: to_string gives the Content-Encoding tokens") {
  CHECK(to_string(ContentCoding::Identity) == "identity");
  CHECK(to_string(ContentCoding::Gzip) == "gzip");
  CHECK(to_string(ContentCoding::Brotli) == "br");
}

TEST_CASE("body encoder: an empty body round trips") {
  for (auto coding : kCompressed) {
    CAPTURE(to_string(coding));
    auto encoded = encode_whole(coding, "");
    CHECK_FALSE(encoded.empty());  // still a valid stream with a trailer
    CHECK(decode_all(coding, encoded) == "");
    CHECK(decode_one_shot(coding, encoded, 0) == "");
  }
}

TEST_CASE("body encoder: a small body round trips at every level") {
  const std::string body = "hello, compressed world\n";
  for (int level : {-1, 1, 6, 9}) {
    CAPTURE(level);
    auto encoded = encode_whole(ContentCoding::Gzip, body, level);
    CHECK(decode_all(ContentCoding::Gzip, encoded) == body);
    CHECK(decode_one_shot(ContentCoding::Gzip, encoded, body.size()) == body);
  }
  for (int level : {-1, 0, 4, 11}) {
    CAPTURE(level);
    auto encoded = encode_whole(ContentCoding::Brotli, body, level);
    CHECK(decode_all(ContentCoding::Brotli, encoded) == body);
    CHECK(decode_one_shot(ContentCoding::Brotli, encoded, body.size()) == body);
  }
}

TEST_CASE("body encoder: a 5 MiB mixed body fed in random pieces round trips") {
  std::mt19937 rng(20240611);
  const auto body = mixed_body(5 * 1024 * 1024, rng);
  for (auto coding : kCompressed) {
    CAPTURE(to_string(coding));
    auto enc = BodyEncoder::make(coding, -1);
    std::uniform_int_distribution<std::size_t> piece(0, 70000);
    std::uniform_int_distribution<int> one_in_eight(0, 7);
    std::string out;
    for (std::size_t at = 0; at < body.size();) {
      auto n = std::min(piece(rng), body.size() - at);
      enc->encode(std::string_view(body).substr(at, n), one_in_eight(rng) == 0, out);
      at += n;
    }
    enc->finish(out);
    CHECK(out.size() < body.size());
    auto decoded = decode_all(coding, out);
    REQUIRE(decoded);
    CHECK(decoded->size() == body.size());
    CHECK(*decoded == body);
    CHECK(decode_one_shot(coding, out, body.size()) == body);
  }
}

TEST_CASE("body encoder: after a flush the output so far decodes to all input so far") {
  std::mt19937 rng(7);
  for (auto coding : kCompressed) {
    CAPTURE(to_string(coding));
    auto enc = BodyEncoder::make(coding, -1);
    Gunzip gunzip;
    Unbrotli unbrotli;
    auto client_reads = [&](std::string_view bytes, std::string& decoded) {
      return coding == ContentCoding::Gzip ? gunzip.feed(bytes, decoded) : unbrotli.feed(bytes, decoded);
    };
    std::string sent_in, decoded;
    std::uniform_int_distribution<int> len(0, 3000);
    for (int i = 0; i < 200; ++i) {
      CAPTURE(i);
      // Server-sent-event-like pieces, sometimes with unflushed pieces before them.
      std::string piece = "data: {\"seq\": " + std::to_string(i) + "}\n\n";
      if (i % 3 == 0) piece += mixed_body(static_cast<std::size_t>(len(rng)), rng);
      std::string out;
      bool flush = i % 5 != 4;
      enc->encode(piece, flush, out);
      sent_in += piece;
      REQUIRE(client_reads(out, decoded));
      if (flush) {
        CHECK_FALSE(out.empty());
        REQUIRE(decoded.size() == sent_in.size());
        CHECK(decoded == sent_in);
      }
    }
    // A flush with nothing new is harmless.
    std::string out;
    enc->encode("", true, out);
    enc->encode("", true, out);
    REQUIRE(client_reads(out, decoded));
    CHECK(decoded == sent_in);
    out.clear();
    enc->finish(out);
    REQUIRE(client_reads(out, decoded));
    CHECK(decoded == sent_in);
    CHECK((coding == ContentCoding::Gzip ? gunzip.ended() : unbrotli.ended()));
  }
}

TEST_CASE("body encoder: repetitive text shrinks a lot") {
  std::string html;
  for (int i = 0; i < 2000; ++i)
    html += "<tr><td class=\"name\">item " + std::to_string(i % 50) + "</td><td>ok</td></tr>\n";
  for (auto coding : kCompressed) {
    CAPTURE(to_string(coding));
    auto encoded = encode_whole(coding, html);
    CHECK(encoded.size() * 10 < html.size());
    CHECK(decode_all(coding, encoded) == html);
  }
}

TEST_CASE("body encoder: output is not held back until the end of the body") {
  // Incompressible bytes without any flush: the compressors must still emit as they go rather than keep
  // the body, or memory would grow with the body.
  std::mt19937 rng(99);
  std::uniform_int_distribution<int> byte(0, 255);
  std::string chunk(64 * 1024, '\0');
  for (auto coding : kCompressed) {
    CAPTURE(to_string(coding));
    auto enc = BodyEncoder::make(coding, -1);
    std::string out;
    std::size_t fed = 0;
    for (int i = 0; i < 64; ++i) {
      for (auto& c : chunk) c = static_cast<char>(byte(rng));
      enc->encode(chunk, false, out);
      fed += chunk.size();
    }
    CHECK(out.size() + 1024 * 1024 > fed);
    enc->finish(out);
    CHECK(decode_all(coding, out).value_or("").size() == fed);
  }
}

TEST_CASE("body encoder: identity passes bytes through") {
  auto enc = BodyEncoder::make(ContentCoding::Identity, 42);  // the level is ignored
  std::string out;
  enc->encode("abc", false, out);
  enc->encode("", true, out);
  enc->encode(std::string_view("d\0e", 3), true, out);
  enc->finish(out);
  enc->finish(out);
  CHECK(out == std::string("abcd\0e", 6));
  CHECK_THROWS_AS(enc->encode("late", false, out), std::logic_error);
}

TEST_CASE("body encoder: levels out of range are rejected at creation") {
  CHECK_THROWS_AS(BodyEncoder::make(ContentCoding::Gzip, 0), std::invalid_argument);
  CHECK_THROWS_AS(BodyEncoder::make(ContentCoding::Gzip, 10), std::invalid_argument);
  CHECK_THROWS_AS(BodyEncoder::make(ContentCoding::Gzip, -2), std::invalid_argument);
  CHECK_THROWS_AS(BodyEncoder::make(ContentCoding::Brotli, 12), std::invalid_argument);
  CHECK_THROWS_AS(BodyEncoder::make(ContentCoding::Brotli, -5), std::invalid_argument);
  CHECK(BodyEncoder::make(ContentCoding::Brotli, 0));
}

TEST_CASE("body encoder: encode after finish throws and finish twice adds nothing") {
  for (auto coding : kCompressed) {
    CAPTURE(to_string(coding));
    auto enc = BodyEncoder::make(coding, -1);
    std::string out;
    enc->encode("some body", false, out);
    enc->finish(out);
    auto finished = out;
    enc->finish(out);
    CHECK(out == finished);
    CHECK_THROWS_AS(enc->encode("more", false, out), std::logic_error);
    CHECK(out == finished);
    CHECK(decode_all(coding, out) == "some body");
  }
}

TEST_CASE("choose_coding: absent, empty and identity-only headers give identity") {
  const std::vector<ContentCoding> offered{ContentCoding::Brotli, ContentCoding::Gzip};
  CHECK(choose_coding(std::nullopt, offered) == ContentCoding::Identity);
  CHECK(choose_coding("", offered) == ContentCoding::Identity);
  CHECK(choose_coding("identity", offered) == ContentCoding::Identity);
  CHECK(choose_coding("deflate, zstd", offered) == ContentCoding::Identity);
  CHECK(choose_coding("gzip, br", {}) == ContentCoding::Identity);
}

TEST_CASE("choose_coding: the highest q wins") {
  const std::vector<ContentCoding> offered{ContentCoding::Brotli, ContentCoding::Gzip};
  CHECK(choose_coding("br;q=1.0, gzip;q=0.8", offered) == ContentCoding::Brotli);
  CHECK(choose_coding("br;q=0.5, gzip;q=0.8", offered) == ContentCoding::Gzip);
  CHECK(choose_coding("gzip;q=0.001, br;q=0", offered) == ContentCoding::Gzip);
  CHECK(choose_coding("br;q=0.999,gzip;q=1", offered) == ContentCoding::Gzip);
  CHECK(choose_coding("identity;q=1, gzip;q=0.5", offered) == ContentCoding::Identity);
}

TEST_CASE("choose_coding: q=0 refuses a coding") {
  const std::vector<ContentCoding> offered{ContentCoding::Brotli, ContentCoding::Gzip};
  CHECK(choose_coding("gzip;q=0", offered) == ContentCoding::Identity);
  CHECK(choose_coding("gzip;q=0.000, br;q=0", offered) == ContentCoding::Identity);
  CHECK(choose_coding("br;q=0, gzip", offered) == ContentCoding::Gzip);
  // Refusing identity too still gets identity: better than no response.
  CHECK(choose_coding("identity;q=0, *;q=0", offered) == ContentCoding::Identity);
}

TEST_CASE("choose_coding: the wildcard covers codings not listed") {
  const std::vector<ContentCoding> offered{ContentCoding::Brotli, ContentCoding::Gzip};
  CHECK(choose_coding("*", offered) == ContentCoding::Brotli);
  CHECK(choose_coding("*;q=0.5", offered) == ContentCoding::Brotli);
  CHECK(choose_coding("*;q=0.5, gzip", offered) == ContentCoding::Gzip);
  CHECK(choose_coding("br;q=0, *", offered) == ContentCoding::Gzip);
  CHECK(choose_coding("*;q=0, gzip;q=0.1", offered) == ContentCoding::Gzip);
  CHECK(choose_coding("*;q=0", offered) == ContentCoding::Identity);
}

TEST_CASE("choose_coding: ties go to the server's order") {
  CHECK(choose_coding("gzip, br", {ContentCoding::Brotli, ContentCoding::Gzip}) == ContentCoding::Brotli);
  CHECK(choose_coding("gzip, br", {ContentCoding::Gzip, ContentCoding::Brotli}) == ContentCoding::Gzip);
  CHECK(choose_coding("br;q=0.7, gzip;q=0.7", {ContentCoding::Gzip, ContentCoding::Brotli}) ==
        ContentCoding::Gzip);
  // A compressed coding beats an equally weighted identity unless the server offers identity first.
  CHECK(choose_coding("identity, gzip", {ContentCoding::Gzip}) == ContentCoding::Gzip);
  CHECK(choose_coding("identity, gzip", {ContentCoding::Identity, ContentCoding::Gzip}) ==
        ContentCoding::Identity);
  // Only offered codings are chosen.
  CHECK(choose_coding("br", {ContentCoding::Gzip}) == ContentCoding::Identity);
}

TEST_CASE("choose_coding: tokens are case-insensitive, whitespace is ignored and x-gzip is gzip") {
  const std::vector<ContentCoding> offered{ContentCoding::Brotli, ContentCoding::Gzip};
  CHECK(choose_coding("GZIP", offered) == ContentCoding::Gzip);
  CHECK(choose_coding("  Br ; Q=0.9 ,\tgzip;q=0.1  ", offered) == ContentCoding::Brotli);
  CHECK(choose_coding("x-gzip", offered) == ContentCoding::Gzip);
  CHECK(choose_coding("X-GZIP;q=0.3, br;q=0.2", offered) == ContentCoding::Gzip);
  CHECK(choose_coding("gzip, deflate, br, zstd", offered) == ContentCoding::Brotli);  // a browser's value
}

TEST_CASE("choose_coding: garbage does not crash and grants nothing it did not clearly say") {
  const std::vector<ContentCoding> offered{ContentCoding::Brotli, ContentCoding::Gzip};
  for (auto value : {";;,q=abc", ",,,", ";", "q=1", ";q=1", "gzip;q=abc", "gzip;q=", "gzip;q=2", "gzip;q=1.5",
                     "gzip;q=0.1234", "gzip;q=-1", "gzip;q=.5", "br;q=1.001", "\t", "\x01\xff", "*;q=x"}) {
    CAPTURE(value);
    CHECK(choose_coding(value, offered) == ContentCoding::Identity);
  }
  // A broken element does not spoil the good ones.
  CHECK(choose_coding("br;q=abc, gzip", offered) == ContentCoding::Gzip);
  CHECK(choose_coding(";;,q=abc, gzip;q=0.5", offered) == ContentCoding::Gzip);
  // Unknown parameters are ignored.
  CHECK(choose_coding("gzip;foo=bar;q=0.5", offered) == ContentCoding::Gzip);
}

TEST_CASE("is_compressible_type: media types match exactly or by wildcard, parameters ignored") {
  const std::vector<std::string> patterns{"text/html", "text/*", "application/*+json", "application/json"};
  CHECK(is_compressible_type("text/html", patterns));
  CHECK(is_compressible_type("text/html; charset=utf-8", patterns));
  CHECK(is_compressible_type("TEXT/HTML", patterns));
  CHECK(is_compressible_type(" Text/Plain ;charset=UTF-8", patterns));
  CHECK(is_compressible_type("application/problem+json", patterns));
  CHECK(is_compressible_type("application/json;charset=utf-8", patterns));
  CHECK_FALSE(is_compressible_type("application/jsonx", patterns));
  CHECK_FALSE(is_compressible_type("application/json+xml", patterns));
  CHECK_FALSE(is_compressible_type("image/png", patterns));
  CHECK_FALSE(is_compressible_type("", patterns));
  CHECK_FALSE(is_compressible_type("; charset=utf-8", patterns));
  CHECK_FALSE(is_compressible_type("text/html", {}));
  CHECK(is_compressible_type("text/html", {"text/html"}));
  CHECK_FALSE(is_compressible_type("text/htm", {"text/html"}));
  CHECK_FALSE(is_compressible_type("text/html", {"text/htm"}));
}

TEST_CASE("is_compressible_type: never for server-sent events") {
  CHECK_FALSE(is_compressible_type("text/event-stream", {"text/*"}));
  CHECK_FALSE(is_compressible_type("Text/Event-Stream; charset=utf-8", {"text/event-stream", "*"}));
  CHECK_FALSE(is_compressible_type("text/event-stream", default_compressible_types()));
}

TEST_CASE("default_compressible_types: text-like types in, already compressed types out") {
  const auto& d = default_compressible_types();
  for (auto type :
       {"text/html; charset=utf-8", "text/css", "text/plain", "application/json", "application/javascript",
        "application/xml", "application/problem+json", "application/ld+json", "application/manifest+json",
        "application/rss+xml", "image/svg+xml", "application/wasm", "font/ttf", "font/otf",
        "application/x-javascript"}) {
    CAPTURE(type);
    CHECK(is_compressible_type(type, d));
  }
  for (auto type : {"image/png", "image/jpeg", "image/webp", "font/woff2", "font/woff", "application/zip",
                    "application/gzip", "application/octet-stream", "video/mp4", "application/pdf", ""}) {
    CAPTURE(type);
    CHECK_FALSE(is_compressible_type(type, d));
  }
}

TEST_CASE("body encoder: a size hint shrinks the window and stays correct even when the body is larger") {
  std::mt19937 rng(7);
  const std::string small = mixed_body(3000, rng);
  const std::string large = mixed_body(200000, rng);
  for (auto coding : {ContentCoding::Gzip, ContentCoding::Brotli}) {
    CAPTURE(to_string(coding));
    for (std::uint64_t hint : {std::uint64_t{1}, std::uint64_t{3000}, std::uint64_t{1} << 40}) {
      CAPTURE(hint);
      for (const auto* body : {&small, &large}) {
        auto enc = BodyEncoder::make(coding, -1, hint);
        std::string out;
        enc->encode(*body, false, out);
        enc->finish(out);
        CHECK(decode_all(coding, out) == *body);
      }
    }
  }
}
