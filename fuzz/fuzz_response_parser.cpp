// Fuzz target: parse_response_head and response_framing, which read whatever an upstream sends. An upstream
// is less hostile than a client but no more trustworthy: a bad head must be a 502, never a crash, and the
// framing verdict decides which bytes reach the client.
#include <string>
#include <string_view>

#include "fuzz_targets.hpp"
#include "head_checks.hpp"
#include "rproxy/http_parser.hpp"

namespace rproxy::fuzz {

namespace {

void check_framing(const ResponseHead& h, std::string_view method) {
  std::string error;
  BodyFraming f = response_framing(h, method, &error);
  // Responses that cannot have a body (RFC 9112 §6.3 rules 1 and 2) never read one, whatever they claim.
  if (method == "HEAD" || h.status < 200 || h.status == 204 || h.status == 304) {
    fuzz_require(f.kind == BodyFraming::Kind::None && error.empty(), "bodiless response given a framing");
    return;
  }
  if (!error.empty()) {
    fuzz_require(f.kind == BodyFraming::Kind::None && f.length == 0, "framing returned with an error");
    return;
  }
  fuzz_require(f.kind != BodyFraming::Kind::None, "a 2xx-5xx response answered without a framing verdict");
  fuzz_require(f.kind != BodyFraming::Kind::Chunked || !h.headers.has("Content-Length"),
               "chunked framing with Content-Length");
  fuzz_require(f.kind != BodyFraming::Kind::UntilClose ||
                   (!h.headers.has("Content-Length") && !h.headers.has("Transfer-Encoding")),
               "read-until-close despite framing headers");
  // Without a null error pointer the verdict must not change (callers that only want the framing).
  BodyFraming quiet = response_framing(h, method, nullptr);
  fuzz_require(quiet.kind == f.kind && quiet.length == f.length, "framing depends on the error pointer");
}

void check_complete(const ResponseParseResult& r) {
  const ResponseHead& h = r.head;
  fuzz_require(h.status >= 100 && h.status <= 999, "status code outside 100-999");
  fuzz_require(h.version_minor == 0 || h.version_minor == 1, "version other than 1.0 or 1.1 accepted");
  for (std::string_view method : {"GET", "HEAD", "POST"}) check_framing(h, method);

  // Responses are re-serialised for the client: the result must parse back to the same head.
  const std::string wire = serialize(h);
  ResponseParseResult again = parse_response_head(wire);
  fuzz_require(again.status == ParseStatus::Complete, "re-serialised response head does not parse");
  fuzz_require(again.consumed == wire.size(), "re-serialised response head parses to another length");
  fuzz_require(again.head.status == h.status && again.head.reason == h.reason &&
                   again.head.version_minor == h.version_minor &&
                   again.head.headers.fields() == h.headers.fields(),
               "re-serialised response head parses to another head");
}

void check_with(std::string_view data, const ParseLimits& limits) {
  auto parse = [&](std::string_view d) { return parse_response_head(d, limits); };
  ResponseParseResult r = parse(data);
  check_result_shape(r, data, {502});
  check_prefixes(data, r, parse);
  if (r.status == ParseStatus::Complete) check_complete(r);
}

}  // namespace

int fuzz_response_parser(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  check_with(in, ParseLimits{});
  check_with(in, small_limits(in));
  return 0;
}

}  // namespace rproxy::fuzz

#ifdef RPROXY_LIBFUZZER
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return rproxy::fuzz::fuzz_response_parser(data, size);
}
#endif
