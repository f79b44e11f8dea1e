// Strict HTTP/1.1 parsing (RFC 9110, RFC 9112) for the data plane. The parser works on a buffer that may
// hold a partial head; callers feed it what they have and call again when more bytes arrive, so input split
// at any byte boundary parses the same as input arriving at once. Anything ambiguous is rejected: a proxy
// that guesses at framing is a request-smuggling proxy.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "rproxy/http.hpp"

namespace rproxy {

// ParseLimits bounds what a peer can make rproxy hold in memory for one head.
struct ParseLimits {
  std::size_t max_request_line = 8192;   // longer → 414
  std::size_t max_head_bytes = 32768;    // whole head (request line + fields) longer → 431
  std::size_t max_header_count = 100;    // more field lines → 431
  std::size_t max_field_line = 8192;     // one field line longer → 431
};

// ParseStatus: Incomplete means "need more bytes"; Error carries the status to answer.
enum class ParseStatus { Incomplete, Complete, Error };

template <typename Head>
struct ParseResult {
  ParseStatus status = ParseStatus::Incomplete;
  std::size_t consumed = 0;  // bytes of the head, including the final CRLF, when Complete
  int error_status = 0;      // 400, 414, 431, 501, 505 for requests; 502 for responses
  std::string error;         // one line, names what is wrong
  Head head;
};

using RequestParseResult = ParseResult<RequestHead>;
using ResponseParseResult = ParseResult<ResponseHead>;

// parse_request_head parses a request head at the start of data. It also checks the request target form,
// the version, Host rules and framing headers, so a Complete result is safe to act on.
RequestParseResult parse_request_head(std::string_view data, const ParseLimits& limits = {});

// request_framing returns how the body of a validated request is framed. Only meaningful after
// parse_request_head returned Complete (which rejects every ambiguous combination).
BodyFraming request_framing(const RequestHead& head);

// parse_response_head parses an upstream's response head. Errors are always 502 material.
ResponseParseResult parse_response_head(std::string_view data, const ParseLimits& limits = {});

// response_framing returns how an upstream response body is framed, given the request method it answers.
// Conflicting or invalid framing yields an error string (the proxy answers 502 and drops the connection).
BodyFraming response_framing(const ResponseHead& head, std::string_view request_method, std::string* error);

// ChunkedDecoder decodes a chunked body incrementally (RFC 9112 §7.1). Strict: chunk sizes are 1–16 hex
// digits, line ends are CRLF, chunk extensions must be well formed; trailers are parsed and discarded.
class ChunkedDecoder {
 public:
  enum class Result { NeedMore, Data, Done, Error };

  // decode consumes bytes from in. On Data, out is a view into in holding body bytes; consumed says how
  // many bytes of in were used. Call repeatedly until NeedMore (refill) or Done.
  Result decode(std::string_view in, std::size_t& consumed, std::string_view& out);
  const std::string& error() const { return error_; }
  bool done() const { return state_ == State::Done; }

 private:
  enum class State { Size, Ext, SizeLf, Data, DataCr, DataLf, Trailer, TrailerLine, TrailerLineLf, TrailerLf, Done, Error };
  Result fail(std::string msg);

  State state_ = State::Size;
  std::uint64_t remaining_ = 0;
  int digits_ = 0;
  std::size_t line_len_ = 0;
  std::size_t trailer_bytes_ = 0;
  std::string ext_;  // current chunk extension or trailer line, validated when it ends
  std::string error_;
};

// Helpers shared with the validators.
bool is_token(std::string_view s);
bool is_valid_field_value(std::string_view s);

}  // namespace rproxy
