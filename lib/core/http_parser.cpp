#include "rproxy/http_parser.hpp"

#include <algorithm>
#include <array>

namespace rproxy {

namespace {

constexpr std::array<bool, 256> make_tchar() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}
constexpr auto kTchar = make_tchar();

bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}
bool is_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Parses "1*19DIGIT" without overflow; anything else (sign, spaces, lists, hex) is invalid.
bool parse_content_length(std::string_view s, std::uint64_t& out) {
  if (!is_digits(s) || s.size() > 19) return false;
  out = 0;
  for (char c : s) out = out * 10 + static_cast<std::uint64_t>(c - '0');
  return true;
}

// HeadScan walks the lines of a head. It reports each complete line to the caller and stops at the
// empty line. It enforces CRLF line ends: a bare LF or a bare CR anywhere is an error, because
// recipients that disagree on line ends disagree on where fields (and bodies) start.
struct HeadScan {
  enum class Step { Line, End, Incomplete, BadLineEnd };
  std::string_view data;
  std::size_t pos = 0;
  std::size_t bad_at = 0;  // BadLineEnd: offset of the byte revealing it (a bare LF, or what follows a CR)

  Step next(std::string_view& line) {
    auto lf = data.find('\n', pos);
    auto cr = data.find('\r', pos);
    if (cr != std::string_view::npos && (lf == std::string_view::npos || cr < lf)) {
      if (cr + 1 >= data.size()) return Step::Incomplete;
      if (data[cr + 1] != '\n') {
        bad_at = cr + 1;
        return Step::BadLineEnd;
      }
      line = data.substr(pos, cr - pos);
      pos = cr + 2;
      return line.empty() ? Step::End : Step::Line;
    }
    if (lf != std::string_view::npos) {
      bad_at = lf;
      return Step::BadLineEnd;
    }
    return Step::Incomplete;
  }
};

template <typename Result>
Result& fail(Result& r, int status, std::string msg) {
  r.status = ParseStatus::Error;
  r.error_status = status;
  r.error = std::move(msg);
  return r;
}

// Validates one field line and appends it. Returns an error message or "" on success.
std::string parse_field_line(std::string_view line, Headers& headers) {
  if (line.front() == ' ' || line.front() == '\t') return "obsolete line folding is not allowed";
  auto colon = line.find(':');
  if (colon == std::string_view::npos) return "header line without a colon";
  auto name = line.substr(0, colon);
  if (name.empty()) return "empty header name";
  if (!is_token(name)) {
    char last = name.back();
    if (last == ' ' || last == '\t') return "whitespace between header name and colon";
    return "invalid character in header name";
  }
  auto value = trim_ows(line.substr(colon + 1));
  if (!is_valid_field_value(value)) return "invalid character in value of header " + std::string(name);
  headers.add(std::string(name), std::string(value));
  return {};
}

// Scans the head common to requests and responses: start line, then fields. The start line callback
// returns "" or an error message.
template <typename Result, typename StartLine>
void scan_head(std::string_view data, const ParseLimits& limits, int error_status, Result& r, StartLine&& start) {
  HeadScan scan{data};
  // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line.
  // At most two: unlimited empty lines would let a peer stream bytes that no head limit counts.
  for (int i = 0; i < 2 && scan.pos + 1 < data.size() && data[scan.pos] == '\r' && data[scan.pos + 1] == '\n'; ++i)
    scan.pos += 2;
  std::size_t skipped = scan.pos;
  std::string_view line;
  bool have_start = false;
  std::size_t fields = 0;
  // Refuses to wait for ever on an incomplete head of `size` bytes that is already over a limit.
  auto over_limit = [&](std::size_t size) {
    if (!have_start && size - skipped > limits.max_request_line + 1) {
      fail(r, error_status == 400 ? 414 : error_status, "request line too long");
      return true;
    }
    if (size - skipped > limits.max_head_bytes) {
      fail(r, error_status == 400 ? 431 : error_status, "header section too large");
      return true;
    }
    return false;
  };
  while (true) {
    auto step = scan.next(line);
    if (step == HeadScan::Step::Incomplete) break;
    if (step == HeadScan::Step::BadLineEnd) {
      // A reader given the input in pieces has already seen the bytes before the bad line end as an
      // incomplete head; if those were over a limit it answered 414/431, so the whole input must too.
      if (!over_limit(scan.bad_at)) fail(r, error_status, "bare CR or LF line ending in message head");
      return;
    }
    if (!have_start) {
      if (step == HeadScan::Step::End) {
        fail(r, error_status, "empty start line");
        return;
      }
      if (line.size() > limits.max_request_line) {
        fail(r, error_status == 400 ? 414 : error_status, "request line too long");
        return;
      }
      if (auto err = start(line); !err.empty()) {
        fail(r, r.error_status ? r.error_status : error_status, err);
        return;
      }
      have_start = true;
      continue;
    }
    if (scan.pos - skipped > limits.max_head_bytes) {
      fail(r, error_status == 400 ? 431 : error_status, "header section too large");
      return;
    }
    if (step == HeadScan::Step::End) {
      r.status = ParseStatus::Complete;
      r.consumed = scan.pos;
      return;
    }
    if (line.size() > limits.max_field_line) {
      fail(r, error_status == 400 ? 431 : error_status, "header line too long");
      return;
    }
    if (++fields > limits.max_header_count) {
      fail(r, error_status == 400 ? 431 : error_status, "too many header fields");
      return;
    }
    // Most heads have fewer fields than this: one allocation instead of five doublings.
    if (fields == 1) r.head.headers.reserve(16);
    if (auto err = parse_field_line(line, r.head.headers); !err.empty()) {
      fail(r, error_status, err);
      return;
    }
  }
  over_limit(data.size());
}

// Percent-encoding is checked in the path only: routing and prefix stripping read the path, while the
// query is the application's business and is forwarded byte for byte, malformed escapes included.
bool valid_target_chars(std::string_view t, std::string& err) {
  bool in_query = false;
  for (std::size_t i = 0; i < t.size(); ++i) {
    auto c = static_cast<unsigned char>(t[i]);
    if (c <= 0x20 || c == 0x7f) {
      err = "invalid character in request target";
      return false;
    }
    if (c == '?') in_query = true;
    if (c == '%' && !in_query) {
      if (i + 2 >= t.size() || !is_hex(t[i + 1]) || !is_hex(t[i + 2])) {
        err = "malformed percent-encoding in request target";
        return false;
      }
    }
  }
  return true;
}

bool valid_host(std::string_view host) {
  if (host.empty()) return true;  // allowed when the target has no authority (RFC 9112 §3.2)
  std::string_view h = host;
  if (h.front() == '[') {
    auto close = h.find(']');
    if (close == std::string_view::npos) return false;
    for (char c : h.substr(1, close - 1))
      if (!is_hex(c) && c != ':' && c != '.') return false;
    h.remove_prefix(close + 1);
    if (h.empty()) return true;
    if (h.front() != ':') return false;
    return h.size() == 1 || is_digits(h.substr(1));
  }
  auto colon = h.find(':');
  auto name = h.substr(0, colon);
  if (name.empty()) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
              c == '_' || c == '~' || c == '%' || c == '!' || c == '$' || c == '&' || c == '\'' || c == '(' ||
              c == ')' || c == '*' || c == '+' || c == ';' || c == '=';
    if (!ok) return false;
  }
  if (colon == std::string_view::npos) return true;
  auto port = h.substr(colon + 1);
  return port.empty() || (is_digits(port) && port.size() <= 5);
}

// Checks the request line; sets r.error_status for non-400 verdicts.
std::string parse_request_line(std::string_view line, RequestParseResult& r) {
  auto sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return "malformed request line";
  auto sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return "malformed request line";
  auto method = line.substr(0, sp1);
  auto target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  auto version = line.substr(sp2 + 1);
  if (!is_token(method)) return "invalid method";
  if (target.empty()) return "empty request target";
  std::string err;
  if (!valid_target_chars(target, err)) return err;
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' || version[5] < '0' ||
      version[5] > '9' || version[7] < '0' || version[7] > '9')
    return "malformed HTTP version";
  if (version[5] != '1' || (version[7] != '0' && version[7] != '1')) {
    r.error_status = 505;
    return "HTTP version not supported";
  }
  if (method == "CONNECT" || method == "TRACE") {
    r.error_status = 405;
    return "method " + std::string(method) + " is not allowed";
  }
  if (target == "*") {
    if (method != "OPTIONS") return "asterisk-form target is only allowed with OPTIONS";
  } else if (target.front() != '/') {
    auto scheme_end = target.find("://");
    auto scheme = scheme_end == std::string_view::npos ? std::string_view{} : target.substr(0, scheme_end);
    if (!(iequals(scheme, "http") || iequals(scheme, "https")) || target.size() == scheme_end + 3)
      return "request target must be origin-form or absolute-form";
  }
  r.head.method = std::string(method);
  r.head.target = std::string(target);
  r.head.version_minor = version[7] - '0';
  return {};
}

// Returns the authority of an absolute-form target ("" for origin-form).
std::string_view target_authority(std::string_view target) {
  auto p = target.find("://");
  if (target.empty() || target.front() == '/' || p == std::string_view::npos) return {};
  auto rest = target.substr(p + 3);
  return rest.substr(0, rest.find_first_of("/?"));
}

// RFC 9112 §6.1 and §6.3 for requests: anything but a single, unambiguous framing is rejected.
void check_request_framing(RequestParseResult& r) {
  const auto& h = r.head.headers;
  auto te_count = h.count("Transfer-Encoding");
  auto cl_count = h.count("Content-Length");
  if (te_count > 0) {
    if (r.head.version_minor == 0) {
      fail(r, 400, "Transfer-Encoding in an HTTP/1.0 request");
      return;
    }
    if (cl_count > 0) {
      fail(r, 400, "both Content-Length and Transfer-Encoding");
      return;
    }
    if (te_count > 1) {
      fail(r, 400, "more than one Transfer-Encoding header");
      return;
    }
    auto te = *h.get("Transfer-Encoding");
    auto codings = split_list(te);
    // RFC 9110 lets recipients skip empty list elements, but a proxy that reads ",chunked" as chunked
    // disagrees with peers that do not: the smuggling checklist wants near-misses rejected.
    if (codings.size() != static_cast<std::size_t>(std::count(te.begin(), te.end(), ',')) + 1) {
      fail(r, 400, "empty element in Transfer-Encoding");
      return;
    }
    if (codings.empty()) {
      fail(r, 400, "empty Transfer-Encoding");
      return;
    }
    for (auto c : codings)
      if (!is_token(c)) {
        fail(r, 400, "invalid Transfer-Encoding");
        return;
      }
    if (!iequals(codings.back(), "chunked")) {
      fail(r, 400, "Transfer-Encoding does not end in chunked");
      return;
    }
    for (std::size_t i = 0; i + 1 < codings.size(); ++i) {
      if (iequals(codings[i], "chunked")) {
        fail(r, 400, "chunked applied more than once");
        return;
      }
    }
    if (codings.size() > 1) fail(r, 501, "transfer coding not implemented");
    return;
  }
  if (cl_count > 1) {
    fail(r, 400, "more than one Content-Length header");
    return;
  }
  if (cl_count == 1) {
    std::uint64_t n = 0;
    if (!parse_content_length(*h.get("Content-Length"), n)) fail(r, 400, "invalid Content-Length");
  }
}

// chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ), val = token / quoted-string
// (RFC 9112 §7.1.1). `ext` starts at the first ';'.
bool valid_chunk_ext(std::string_view ext) {
  std::size_t i = 0;
  auto skip_ws = [&] {
    while (i < ext.size() && (ext[i] == ' ' || ext[i] == '\t')) ++i;
  };
  auto token = [&] {
    auto start = i;
    while (i < ext.size() && kTchar[static_cast<unsigned char>(ext[i])]) ++i;
    return i > start;
  };
  while (true) {
    skip_ws();
    if (i == ext.size()) return true;
    if (ext[i] != ';') return false;
    ++i;
    skip_ws();
    if (!token()) return false;
    skip_ws();
    if (i < ext.size() && ext[i] == '=') {
      ++i;
      skip_ws();
      if (i < ext.size() && ext[i] == '"') {
        ++i;
        bool closed = false;
        while (i < ext.size()) {
          if (ext[i] == '\\') {
            i += 2;
            continue;
          }
          if (ext[i++] == '"') {
            closed = true;
            break;
          }
        }
        if (!closed) return false;
      } else if (!token()) {
        return false;
      }
    }
  }
}

}  // namespace

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!kTchar[static_cast<unsigned char>(c)]) return false;
  return true;
}

bool is_valid_field_value(std::string_view s) {
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

RequestParseResult parse_request_head(std::string_view data, const ParseLimits& limits) {
  RequestParseResult r;
  scan_head(data, limits, 400, r, [&](std::string_view line) { return parse_request_line(line, r); });
  if (r.status != ParseStatus::Complete) return r;
  const auto& h = r.head.headers;
  auto hosts = h.count("Host");
  if (hosts > 1) return fail(r, 400, "more than one Host header");
  if (hosts == 0 && r.head.version_minor == 1) return fail(r, 400, "missing Host header");
  if (hosts == 1) {
    auto host = *h.get("Host");
    if (!valid_host(host)) return fail(r, 400, "invalid Host header");
    auto authority = target_authority(r.head.target);
    if (!authority.empty() && !iequals(authority, host)) return fail(r, 400, "Host does not match the request target");
  }
  check_request_framing(r);
  return r;
}

BodyFraming request_framing(const RequestHead& head) {
  if (head.headers.has("Transfer-Encoding")) return {BodyFraming::Kind::Chunked, 0};
  if (auto cl = head.headers.get("Content-Length")) {
    std::uint64_t n = 0;
    parse_content_length(*cl, n);
    if (n > 0) return {BodyFraming::Kind::Length, n};
  }
  return {BodyFraming::Kind::None, 0};
}

ResponseParseResult parse_response_head(std::string_view data, const ParseLimits& limits) {
  ResponseParseResult r;
  scan_head(data, limits, 502, r, [&](std::string_view line) -> std::string {
    // HTTP-version SP 3DIGIT SP reason-phrase; a missing reason (and even its SP) is tolerated.
    if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || (line[7] != '0' && line[7] != '1') || line[8] != ' ')
      return "malformed status line from upstream";
    auto code = line.substr(9, 3);
    if (!is_digits(code) || code[0] == '0') return "malformed status code from upstream";
    if (line.size() > 12 && line[12] != ' ') return "malformed status line from upstream";
    auto reason = line.size() > 13 ? line.substr(13) : std::string_view{};
    if (!is_valid_field_value(reason)) return "invalid reason phrase from upstream";
    r.head.version_minor = line[7] - '0';
    r.head.status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
    r.head.reason = std::string(reason);
    return {};
  });
  return r;
}

BodyFraming response_framing(const ResponseHead& head, std::string_view request_method, std::string* error) {
  if (request_method == "HEAD" || head.status < 200 || head.status == 204 || head.status == 304)
    return {BodyFraming::Kind::None, 0};
  const auto& h = head.headers;
  if (h.has("Transfer-Encoding")) {
    const std::string te = h.joined("Transfer-Encoding");
    auto codings = split_list(te);
    if (h.has("Content-Length")) {
      if (error) *error = "upstream sent both Content-Length and Transfer-Encoding";
      return {};
    }
    if (codings.empty() || !iequals(codings.back(), "chunked")) {
      if (error) *error = "upstream sent a Transfer-Encoding that does not end in chunked";
      return {};
    }
    if (codings.size() > 1) {
      if (error) *error = "upstream sent an unsupported transfer coding";
      return {};
    }
    return {BodyFraming::Kind::Chunked, 0};
  }
  if (h.has("Content-Length")) {
    std::optional<std::uint64_t> length;
    for (const auto& f : h) {
      if (!iequals(f.name, "Content-Length")) continue;
      for (auto v : split_list(f.value)) {
        std::uint64_t n = 0;
        if (!parse_content_length(v, n) || (length && *length != n)) {
          if (error) *error = "upstream sent an invalid or conflicting Content-Length";
          return {};
        }
        length = n;
      }
    }
    if (!length) {
      if (error) *error = "upstream sent an invalid Content-Length";
      return {};
    }
    return {BodyFraming::Kind::Length, *length};
  }
  return {BodyFraming::Kind::UntilClose, 0};
}

ChunkedDecoder::Result ChunkedDecoder::fail(std::string msg) {
  state_ = State::Error;
  error_ = std::move(msg);
  return Result::Error;
}

ChunkedDecoder::Result ChunkedDecoder::decode(std::string_view in, std::size_t& consumed, std::string_view& out) {
  constexpr std::size_t kMaxLine = 4096;
  constexpr std::size_t kMaxTrailers = 32768;
  consumed = 0;
  out = {};
  while (consumed < in.size()) {
    char c = in[consumed];
    switch (state_) {
      case State::Size:
        if (is_hex(c)) {
          if (++digits_ > 16) return fail("chunk size too large");
          remaining_ = (remaining_ << 4) | static_cast<std::uint64_t>(hex_value(c));
        } else if (digits_ == 0) {
          return fail("invalid chunk size");
        } else if (c == ';') {
          state_ = State::Ext;
          line_len_ = 0;
          ext_.assign(1, ';');  // not = ";": g++ 12 -O3 false -Wrestrict (PR 105329)
        } else if (c == '\r') {
          state_ = State::SizeLf;
        } else {
          return fail("invalid chunk size");
        }
        break;
      case State::Ext:
        if (c == '\r') {
          if (!valid_chunk_ext(ext_)) return fail("malformed chunk extension");
          ext_.clear();
          state_ = State::SizeLf;
        } else if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) {
          return fail("invalid chunk extension");
        } else if (++line_len_ > kMaxLine) {
          return fail("chunk extension too long");
        } else {
          ext_ += c;
        }
        break;
      case State::SizeLf:
        if (c != '\n') return fail("chunk size line not terminated by CRLF");
        state_ = remaining_ == 0 ? State::Trailer : State::Data;
        break;
      case State::Data: {
        auto n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, in.size() - consumed));
        out = in.substr(consumed, n);
        consumed += n;
        remaining_ -= n;
        if (remaining_ == 0) state_ = State::DataCr;
        return Result::Data;
      }
      case State::DataCr:
        if (c != '\r') return fail("chunk data longer than its size");
        state_ = State::DataLf;
        break;
      case State::DataLf:
        if (c != '\n') return fail("chunk data not terminated by CRLF");
        state_ = State::Size;
        digits_ = 0;
        remaining_ = 0;
        break;
      case State::Trailer:
        if (c == '\r') {
          state_ = State::TrailerLf;
        } else if (c == '\n' || c == ' ' || c == '\t') {
          return fail("malformed trailer");
        } else {
          state_ = State::TrailerLine;
          ext_.assign(1, c);
        }
        if (++trailer_bytes_ > kMaxTrailers) return fail("trailers too large");
        break;
      case State::TrailerLine:
        if (c == '\r') {
          Headers ignored;
          if (!parse_field_line(ext_, ignored).empty()) return fail("malformed trailer field");
          state_ = State::TrailerLineLf;
        } else if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) {
          return fail("invalid character in trailer");
        } else {
          ext_ += c;
        }
        if (++trailer_bytes_ > kMaxTrailers) return fail("trailers too large");
        break;
      case State::TrailerLineLf:
        if (c != '\n') return fail("trailer line not terminated by CRLF");
        state_ = State::Trailer;
        break;
      case State::TrailerLf:
        if (c != '\n') return fail("chunked body not terminated by CRLF");
        state_ = State::Done;
        ++consumed;
        return Result::Done;
      case State::Done:
        return Result::Done;
      case State::Error:
        return Result::Error;
    }
    ++consumed;
  }
  if (state_ == State::Done) return Result::Done;
  if (state_ == State::Error) return Result::Error;
  return Result::NeedMore;
}

}  // namespace rproxy
