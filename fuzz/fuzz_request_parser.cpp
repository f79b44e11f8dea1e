// Fuzz target: parse_request_head and request_framing, the first code to see a client's bytes.
// Besides "no crash, no UB", it checks the parser's contract: verdicts do not depend on how the input is
// split, a Complete head is one the proxy can act on (one Host on HTTP/1.1, unambiguous framing), and the
// head rproxy re-serialises for the upstream parses back to the same head.
#include <string>
#include <string_view>

#include "fuzz_targets.hpp"
#include "head_checks.hpp"
#include "rproxy/http_parser.hpp"

namespace rproxy::fuzz {

namespace {

// Statuses parse_request_head may answer with (405 is CONNECT and TRACE).
constexpr std::initializer_list<int> kRequestErrors = {400, 405, 414, 431, 501, 505};

void check_complete(const RequestParseResult& r) {
  const RequestHead& h = r.head;
  fuzz_require(is_token(h.method), "method is not a token");
  fuzz_require(!h.target.empty(), "empty target accepted");
  fuzz_require(h.version_minor == 0 || h.version_minor == 1, "version other than 1.0 or 1.1 accepted");
  fuzz_require(h.headers.count("Host") <= 1, "duplicate Host accepted");
  fuzz_require(h.version_minor == 0 || h.headers.count("Host") == 1, "HTTP/1.1 without Host accepted");
  const bool te = h.headers.has("Transfer-Encoding");
  fuzz_require(!(te && h.headers.has("Content-Length")), "Content-Length with Transfer-Encoding accepted");
  fuzz_require(h.headers.count("Content-Length") <= 1, "duplicate Content-Length accepted");
  fuzz_require(h.headers.count("Transfer-Encoding") <= 1, "duplicate Transfer-Encoding accepted");
  fuzz_require(!(te && h.version_minor == 0), "Transfer-Encoding on HTTP/1.0 accepted");

  BodyFraming f = request_framing(h);
  fuzz_require(f.kind != BodyFraming::Kind::UntilClose, "a request body cannot be delimited by close");
  fuzz_require((f.kind == BodyFraming::Kind::Chunked) == te, "chunked framing without Transfer-Encoding");
  fuzz_require(f.kind != BodyFraming::Kind::Length || f.length > 0, "Length framing of zero bytes");
  fuzz_require(f.kind == BodyFraming::Kind::Length || f.length == 0, "a length on non-Length framing");

  // The proxy never splices client bytes upstream; it re-serialises the head. That must mean the same.
  const std::string wire = serialize(h);
  RequestParseResult again = parse_request_head(wire);
  fuzz_require(again.status == ParseStatus::Complete, "re-serialised request head does not parse");
  fuzz_require(again.consumed == wire.size(), "re-serialised request head parses to another length");
  fuzz_require(again.head.method == h.method && again.head.target == h.target &&
                   again.head.version_minor == h.version_minor &&
                   again.head.headers.fields() == h.headers.fields(),
               "re-serialised request head parses to another head");
}

void check_with(std::string_view data, const ParseLimits& limits) {
  auto parse = [&](std::string_view d) { return parse_request_head(d, limits); };
  RequestParseResult r = parse(data);
  check_result_shape(r, data, kRequestErrors);
  check_prefixes(data, r, parse);
  if (r.status == ParseStatus::Complete) check_complete(r);
}

}  // namespace

int fuzz_request_parser(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  check_with(in, ParseLimits{});
  check_with(in, small_limits(in));
  return 0;
}

}  // namespace rproxy::fuzz

#ifdef RPROXY_LIBFUZZER
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return rproxy::fuzz::fuzz_request_parser(data, size);
}
#endif
