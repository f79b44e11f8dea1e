// Fuzz target: ChunkedDecoder, which frames request bodies (client side) and response bodies (upstream
// side). A socket delivers bytes in arbitrary pieces, so the one property that matters most is that the
// outcome (body, verdict, where the message ends) does not depend on the piece boundaries.
//
// Input: byte 0 chooses the piece sizes of the split run; the rest is the chunked body.
#include <string>
#include <string_view>

#include "fuzz_targets.hpp"
#include "rproxy/http_parser.hpp"

namespace rproxy::fuzz {

namespace {

using Result = ChunkedDecoder::Result;

struct Outcome {
  Result last = Result::NeedMore;  // NeedMore: the input ran out before the message ended
  std::string body;
  std::size_t end = 0;  // input offset just after the message, when Done
};

// PieceSizes yields the sizes a simulated socket hands over: a small LCG seeded from the control byte,
// so the fuzzer can steer the boundaries by mutating one byte. Seed 0 means one byte at a time.
struct PieceSizes {
  std::uint32_t state;
  std::size_t max;
  explicit PieceSizes(std::uint8_t seed)
      : state(seed * 2654435761u + 1), max(seed == 0 ? 1 : 1 + seed % 37) {}
  std::size_t next() {
    state = state * 1664525u + 1013904223u;
    return 1 + (state >> 16) % max;
  }
};

// run feeds input the way a connection does: keep what decode did not consume, append the next piece, call
// decode until it stops returning Data. next_piece returns how many more bytes arrive.
template <typename NextPiece>
Outcome run(std::string_view input, NextPiece&& next_piece) {
  Outcome o;
  ChunkedDecoder d;
  std::string pending;
  std::size_t base = 0;  // input offset of pending[0]
  std::size_t fed = 0;
  auto feed = [&] {
    std::size_t n = std::min(next_piece(), input.size() - fed);
    pending.append(input.substr(fed, n));
    fed += n;
  };
  feed();
  // Every call either consumes a byte, or asks for more, or ends: anything else is a loop.
  for (std::size_t guard = 0; guard <= 2 * input.size() + 4; ++guard) {
    std::size_t consumed = 0;
    std::string_view out;
    Result r = d.decode(pending, consumed, out);
    fuzz_require(consumed <= pending.size(), "decode consumed more than it was given");
    if (r == Result::Data) {
      fuzz_require(!out.empty() && consumed > 0, "Data without progress");
      fuzz_require(out.data() >= pending.data() && out.data() + out.size() <= pending.data() + consumed,
                   "Data view outside the consumed input");
      o.body.append(out);
    } else {
      fuzz_require(out.empty(), "body bytes returned without Data");
    }
    pending.erase(0, consumed);
    base += consumed;
    switch (r) {
      case Result::Data:
        continue;
      case Result::Done: {
        o.last = Result::Done;
        o.end = base;
        fuzz_require(d.done(), "Done but done() is false");
        // Bytes after the message (a pipelined request) belong to the next reader.
        std::size_t after = 0;
        std::string_view ignored;
        fuzz_require(d.decode(pending, after, ignored) == Result::Done && after == 0,
                     "decode ate bytes after the end of the message");
        return o;
      }
      case Result::Error: {
        o.last = Result::Error;
        fuzz_require(!d.error().empty(), "Error without error()");
        std::size_t after = 0;
        std::string_view ignored;
        fuzz_require(d.decode("0\r\n\r\n", after, ignored) == Result::Error,
                     "decoder recovered from an Error");
        return o;
      }
      case Result::NeedMore:
        if (fed == input.size()) return o;
        feed();
        continue;
    }
  }
  fuzz_require(false, "decode loops without progress");
  return o;
}

// The body is compared even on Error: a proxy streams body bytes as they are decoded, so what reached the
// other side before the error must not depend on the split either.
bool same_outcome(const Outcome& a, const Outcome& b) {
  return a.last == b.last && a.end == b.end && a.body == b.body;
}

}  // namespace

int fuzz_chunked_decoder(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t control = data[0];
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);

  Outcome whole = run(in, [&] { return in.size(); });
  fuzz_require(whole.body.size() <= in.size(), "decoded more bytes than the input holds");
  if (whole.last == Result::Done) {
    fuzz_require(whole.end <= in.size() && whole.body.size() < whole.end, "message end outside the input");
    fuzz_require(in.substr(0, whole.end).ends_with("\r\n\r\n"), "a chunked message ends with CRLF CRLF");
  }

  PieceSizes pieces(control);
  Outcome split = run(in, [&] { return pieces.next(); });
  fuzz_require(same_outcome(whole, split), "outcome depends on how the input was split");
  if (control != 0) {
    Outcome bytewise = run(in, [] { return std::size_t{1}; });
    fuzz_require(same_outcome(whole, bytewise), "outcome differs when fed one byte at a time");
  }
  return 0;
}

}  // namespace rproxy::fuzz

#ifdef RPROXY_LIBFUZZER
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return rproxy::fuzz::fuzz_chunked_decoder(data, size);
}
#endif
