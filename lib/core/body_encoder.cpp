#include "core/body_encoder.hpp"

#include <brotli/encode.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <stdexcept>

#include "rproxy/http.hpp"

namespace rproxy {

namespace {

// EncoderBase enforces the call-order rules documented in the header for every coding.
class EncoderBase : public BodyEncoder {
 public:
  void encode(std::string_view in, bool flush, std::string& out) final {
    begin();
    compress(in, flush ? Op::Flush : Op::Process, out);
    state_ = State::Open;
  }
  void finish(std::string& out) final {
    if (state_ == State::Finished) return;
    begin();
    compress({}, Op::Finish, out);
    state_ = State::Finished;
  }

 protected:
  enum class Op { Process, Flush, Finish };
  virtual void compress(std::string_view in, Op op, std::string& out) = 0;

 private:
  enum class State { Open, Broken, Finished };
  void begin() {
    if (state_ == State::Finished) throw std::logic_error("BodyEncoder: encode after finish");
    if (state_ == State::Broken) throw std::runtime_error("BodyEncoder: unusable after an earlier failure");
    // Stays Broken unless compress() returns: an interrupted compressor has consumed input whose output
    // was lost, so anything sent after it would be a corrupt body.
    state_ = State::Broken;
  }
  State state_ = State::Open;
};

// IdentityEncoder lets callers treat "no compression" like any other coding.
class IdentityEncoder final : public EncoderBase {
  void compress(std::string_view in, Op, std::string& out) override { out.append(in); }
};

class GzipEncoder final : public EncoderBase {
 public:
  // window_bits and mem_level shrink for small bodies, as nginx does: deflateInit's allocation and
  // clearing of a full 32 KiB window and 64K-entry hash dominate the cost of compressing a small response.
  GzipEncoder(int level, int window_bits, int mem_level) {
    // windowBits 15+16 selects the gzip wrapper; memLevel 8 is zlib's default (about 256 KiB per stream).
    if (deflateInit2(&zs_, level, Z_DEFLATED, window_bits + 16, mem_level, Z_DEFAULT_STRATEGY) != Z_OK)
      throw std::runtime_error("gzip: deflateInit2 failed");
  }
  ~GzipEncoder() override { deflateEnd(&zs_); }

 private:
  void compress(std::string_view in, Op op, std::string& out) override {
    const int mode = op == Op::Finish ? Z_FINISH : op == Op::Flush ? Z_SYNC_FLUSH : Z_NO_FLUSH;
    // avail_in is 32-bit, so huge inputs go in slices; only the last one carries the flush.
    constexpr std::size_t kMaxSlice = std::size_t{1} << 30;
    do {
      auto slice = in.substr(0, kMaxSlice);
      in.remove_prefix(slice.size());
      deflate_slice(slice, in.empty() ? mode : Z_NO_FLUSH, out);
    } while (!in.empty());
  }

  void deflate_slice(std::string_view in, int mode, std::string& out) {
    zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs_.avail_in = static_cast<uInt>(in.size());
    char buf[16 * 1024];
    // deflate stops early only when the output buffer is full, so a partly used buffer means all input
    // was consumed and the flush (if any) is complete.
    do {
      zs_.next_out = reinterpret_cast<Bytef*>(buf);
      zs_.avail_out = sizeof buf;
      // Z_BUF_ERROR only means "nothing to do" (e.g. an empty encode), which is fine.
      if (deflate(&zs_, mode) == Z_STREAM_ERROR) throw std::runtime_error("gzip: deflate failed");
      out.append(buf, sizeof buf - zs_.avail_out);
    } while (zs_.avail_out == 0);
  }

  // zlib keeps a pointer back to the z_stream, so it lives here, in an object that never moves.
  z_stream zs_{};
};

class BrotliEncoder final : public EncoderBase {
 public:
  BrotliEncoder(int level, int lgwin, std::uint64_t size_hint)
      : state_(BrotliEncoderCreateInstance(nullptr, nullptr, nullptr)) {
    // A 256 KiB window (Envoy's default) instead of brotli's 4 MiB. With 4 MiB, quality 4 takes about
    // 20 MiB per response and holds back up to 8 MiB of unflushed input before emitting a byte; with 256 KiB
    // it is about 3 MiB and 512 KiB, and web responses rarely gain from reaching further back.
    if (!state_ ||
        !BrotliEncoderSetParameter(state_.get(), BROTLI_PARAM_QUALITY, static_cast<uint32_t>(level)) ||
        !BrotliEncoderSetParameter(state_.get(), BROTLI_PARAM_LGWIN, static_cast<uint32_t>(lgwin)) ||
        (size_hint > 0 && !BrotliEncoderSetParameter(state_.get(), BROTLI_PARAM_SIZE_HINT,
                                                      static_cast<uint32_t>(std::min<std::uint64_t>(size_hint, 1u << 30)))))
      throw std::runtime_error("brotli: cannot create encoder");
  }

 private:
  void compress(std::string_view in, Op op, std::string& out) override {
    const auto operation = op == Op::Finish  ? BROTLI_OPERATION_FINISH
                           : op == Op::Flush ? BROTLI_OPERATION_FLUSH
                                             : BROTLI_OPERATION_PROCESS;
    auto next_in = reinterpret_cast<const uint8_t*>(in.data());
    std::size_t avail_in = in.size();
    // Brotli may need several calls to take all input or to complete a flush/finish; its output is copied
    // straight from the encoder's buffer instead of through one of ours.
    do {
      std::size_t avail_out = 0;
      uint8_t* next_out = nullptr;
      if (!BrotliEncoderCompressStream(state_.get(), operation, &avail_in, &next_in, &avail_out, &next_out,
                                       nullptr))
        throw std::runtime_error("brotli: compression failed");
      std::size_t n = 0;
      const uint8_t* p = BrotliEncoderTakeOutput(state_.get(), &n);
      out.append(reinterpret_cast<const char*>(p), n);
    } while (avail_in > 0 || BrotliEncoderHasMoreOutput(state_.get()) ||
             (op == Op::Finish && !BrotliEncoderIsFinished(state_.get())));
  }

  struct Destroy {
    void operator()(BrotliEncoderState* s) const { BrotliEncoderDestroyInstance(s); }
  };
  std::unique_ptr<BrotliEncoderState, Destroy> state_;
};

void check_level(int level, int min, int max, const char* coding) {
  if (level != -1 && (level < min || level > max))
    throw std::invalid_argument(std::string(coding) + " level must be " + std::to_string(min) + "-" +
                                std::to_string(max) + " (or -1 for the default), got " +
                                std::to_string(level));
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// coding_from_token maps an Accept-Encoding token to a coding rproxy can produce.
std::optional<ContentCoding> coding_from_token(std::string_view token) {
  if (iequals(token, "gzip") || iequals(token, "x-gzip")) return ContentCoding::Gzip;
  if (iequals(token, "br")) return ContentCoding::Brotli;
  if (iequals(token, "identity")) return ContentCoding::Identity;
  return std::nullopt;
}

// parse_qvalue reads an RFC 9110 qvalue ("0", "0.5", "1.000", ...) as thousandths.
std::optional<int> parse_qvalue(std::string_view s) {
  if (s.empty() || (s[0] != '0' && s[0] != '1')) return std::nullopt;
  int q = (s[0] - '0') * 1000;
  if (s.size() == 1) return q;
  if (s[1] != '.' || s.size() > 5) return std::nullopt;
  int scale = 100;
  for (char c : s.substr(2)) {
    if (c < '0' || c > '9') return std::nullopt;
    q += (c - '0') * scale;
    scale /= 10;
  }
  if (q > 1000) return std::nullopt;
  return q;
}

// glob_match is a case-insensitive wildcard match where '*' stands for any run of characters.
bool glob_match(std::string_view pattern, std::string_view text) {
  std::size_t p = 0, t = 0;
  std::size_t star = std::string_view::npos, star_t = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      star_t = t;
    } else if (p < pattern.size() && lower(pattern[p]) == lower(text[t])) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      // Let the last '*' swallow one more character and retry from there.
      p = star + 1;
      t = ++star_t;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

}  // namespace

std::string_view to_string(ContentCoding coding) {
  switch (coding) {
    case ContentCoding::Gzip:
      return "gzip";
    case ContentCoding::Brotli:
      return "br";
    case ContentCoding::Identity:
      break;
  }
  return "identity";
}

std::unique_ptr<BodyEncoder> BodyEncoder::make(ContentCoding coding, int level, std::uint64_t size_hint) {
  // The smallest window (in bits) that holds the whole body, within [lo, hi]; hi when the size is unknown.
  auto window_for = [size_hint](int lo, int hi) {
    if (size_hint == 0) return hi;
    int bits = lo;
    while (bits < hi && (std::uint64_t{1} << bits) < size_hint) ++bits;
    return bits;
  };
  switch (coding) {
    case ContentCoding::Gzip: {
      check_level(level, 1, 9, "gzip");
      int bits = window_for(9, 15);
      return std::make_unique<GzipEncoder>(level == -1 ? 6 : level, bits, std::max(1, 8 - (15 - bits)));
    }
    case ContentCoding::Brotli:
      check_level(level, BROTLI_MIN_QUALITY, BROTLI_MAX_QUALITY, "brotli");
      return std::make_unique<BrotliEncoder>(level == -1 ? 4 : level, window_for(BROTLI_MIN_WINDOW_BITS, 18),
                                             size_hint);
    case ContentCoding::Identity:
      break;
  }
  return std::make_unique<IdentityEncoder>();
}

ContentCoding choose_coding(std::optional<std::string_view> accept_encoding,
                            const std::vector<ContentCoding>& offered) {
  if (!accept_encoding) return ContentCoding::Identity;
  // Weights in thousandths, per coding as listed and for "*". If a coding is listed twice, the higher
  // weight counts.
  std::array<std::optional<int>, 3> listed;
  std::optional<int> star;
  auto keep_max = [](std::optional<int>& slot, int q) { slot = std::max(slot.value_or(0), q); };
  for (auto element : split_list(*accept_encoding)) {
    auto semicolon = element.find(';');
    auto token = trim(element.substr(0, semicolon));
    int q = 1000;
    bool valid = !token.empty();
    while (valid && semicolon != std::string_view::npos) {
      element.remove_prefix(semicolon + 1);
      semicolon = element.find(';');
      auto param = trim(element.substr(0, semicolon));
      if (param.size() >= 2 && lower(param[0]) == 'q' && param[1] == '=') {
        auto parsed = parse_qvalue(param.substr(2));
        valid = parsed.has_value();
        q = parsed.value_or(0);
      }
    }
    // A malformed weight could be meant as a refusal, so such an element grants nothing.
    if (!valid) continue;
    if (token == "*")
      keep_max(star, q);
    else if (auto c = coding_from_token(token))
      keep_max(listed[static_cast<std::size_t>(*c)], q);
  }

  auto weight = [&](ContentCoding c) {
    if (const auto& w = listed[static_cast<std::size_t>(c)]) return *w;
    // An unlisted identity counts as acceptable but least preferred: it is the fallback anyway.
    return star && c != ContentCoding::Identity ? *star : 0;
  };
  ContentCoding best = ContentCoding::Identity;
  int best_q = 0;
  auto consider = [&](ContentCoding c) {
    if (weight(c) > best_q) {
      best = c;
      best_q = weight(c);
    }
  };
  for (auto c : offered) consider(c);
  // Identity competes too (the client may prefer it), but after the offered codings so that a tie goes
  // to compression unless the server offered identity first.
  consider(ContentCoding::Identity);
  return best;
}

bool is_compressible_type(std::string_view content_type, const std::vector<std::string>& patterns) {
  auto media_type = trim(content_type.substr(0, content_type.find(';')));
  if (media_type.empty() || iequals(media_type, "text/event-stream")) return false;
  return std::any_of(patterns.begin(), patterns.end(),
                     [&](const std::string& pattern) { return glob_match(pattern, media_type); });
}

const std::vector<std::string>& default_compressible_types() {
  static const std::vector<std::string> types = {
      "text/*",
      "application/json",
      "application/*+json",
      "application/x-ndjson",
      "application/javascript",
      "application/x-javascript",
      "application/ecmascript",
      "application/xml",
      "application/*+xml",
      "application/wasm",
      "application/vnd.ms-fontobject",
      "application/x-font-ttf",
      "application/x-font-opentype",
      "font/ttf",
      "font/otf",
      "font/eot",
      "font/collection",
      "image/svg+xml",
      "image/bmp",
      "image/x-icon",
      "image/vnd.microsoft.icon",
  };
  return types;
}

}  // namespace rproxy
