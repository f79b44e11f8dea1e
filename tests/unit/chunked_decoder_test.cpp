// Oracle tests for rproxy::ChunkedDecoder (RFC 9112 section 7.1, checklist rows 13-15), written from the
// header alone. Every case is run with the whole input at once, one byte at a time, and split in two at every
// byte boundary; all runs must agree on the outcome, the decoded body and where the message ended.

#include <doctest/doctest.h>

#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "rproxy/http_parser.hpp"
#include "support/test_bytes.hpp"

using namespace std::literals;
using rproxy::ChunkedDecoder;
using Result = rproxy::ChunkedDecoder::Result;

using rproxy::test::printable;

namespace {

std::string name(Result r) {
  switch (r) {
    case Result::NeedMore: return "NeedMore";
    case Result::Data: return "Data";
    case Result::Done: return "Done";
    case Result::Error: return "Error";
  }
  return "?";
}

struct Outcome {
  Result last = Result::NeedMore;  // NeedMore means input ran out
  std::string body;
  std::size_t end = 0;  // offset in the input right after the message when Done
  std::string error;
  bool protocol_violation = false;  // decoder broke its own contract (no progress, out outside in, ...)
};

// Feed input in pieces given by cut points (ascending offsets), like a socket reader would: keep a pending
// buffer, call decode until NeedMore, drop consumed bytes, append the next piece.
Outcome run(std::string_view input, const std::vector<std::size_t>& cuts) {
  Outcome o;
  ChunkedDecoder d;
  std::string pending;
  std::size_t base = 0;  // input offset of pending[0]
  std::size_t fed = 0;
  std::size_t next_cut = 0;
  auto feed = [&] {
    std::size_t to = next_cut < cuts.size() ? cuts[next_cut++] : input.size();
    if (to < fed) to = fed;
    pending.append(input.substr(fed, to - fed));
    fed = to;
  };
  feed();
  int stalls = 0;
  for (int guard = 0; guard < 1000000; ++guard) {
    std::size_t consumed = 0;
    std::string_view out;
    Result r = d.decode(pending, consumed, out);
    if (consumed > pending.size()) {
      o.protocol_violation = true;
      o.error = "consumed > input size";
      return o;
    }
    if (r == Result::Data) {
      if (!out.empty() && (out.data() < pending.data() || out.data() + out.size() > pending.data() + pending.size())) {
        o.protocol_violation = true;
        o.error = "Data view outside the input";
        return o;
      }
      o.body.append(out);
      if (consumed == 0 && out.empty()) {
        if (++stalls > 100) {
          o.protocol_violation = true;
          o.error = "Data without progress";
          return o;
        }
      } else {
        stalls = 0;
      }
    }
    pending.erase(0, consumed);
    base += consumed;
    switch (r) {
      case Result::Data: continue;
      case Result::Done:
        o.last = Result::Done;
        o.end = base;
        CHECK(d.done());
        return o;
      case Result::Error:
        o.last = Result::Error;
        o.error = d.error();
        return o;
      case Result::NeedMore:
        if (fed == input.size()) {
          o.last = Result::NeedMore;
          return o;
        }
        feed();
        continue;
    }
  }
  o.protocol_violation = true;
  o.error = "decoder loops";
  return o;
}

// expect: Done with body and end offset, NeedMore (ran out), or Error.
void check_chunked(std::string_view input, Result expect, std::string_view body = {},
                   std::size_t end = std::string::npos) {
  INFO("chunked input: \"" << printable(input) << "\"");
  if (expect == Result::Done && end == std::string::npos) end = input.size();

  std::vector<std::pair<std::string, std::vector<std::size_t>>> plans;
  plans.push_back({"whole", {}});
  std::vector<std::size_t> bytes;
  for (std::size_t i = 1; i < input.size(); ++i) bytes.push_back(i);
  plans.push_back({"one byte at a time", bytes});
  for (std::size_t k = 1; k < input.size(); ++k) plans.push_back({"split at " + std::to_string(k), {k}});

  for (const auto& [plan, cuts] : plans) {
    INFO("feeding: " << plan);
    Outcome o = run(input, cuts);
    REQUIRE_MESSAGE(!o.protocol_violation, o.error);
    CHECK_MESSAGE(name(o.last) == name(expect), "got " << name(o.last) << " (" << o.error << ")");
    if (expect == Result::Done && o.last == Result::Done) {
      CHECK(o.body == body);
      CHECK(o.end == end);
    }
    if (expect == Result::NeedMore && o.last == Result::NeedMore) CHECK(o.body == body);
    if (o.last == Result::Error) CHECK_MESSAGE(!o.error.empty(), "Error without error()");
  }
}

}  // namespace

TEST_CASE("chunked: simple body decodes to Data then Done") {
  ChunkedDecoder d;
  std::string_view in = "5\r\nhello\r\n0\r\n\r\n";
  std::string body;
  Result r;
  std::size_t total = 0;
  int calls = 0;
  do {
    std::size_t consumed = 0;
    std::string_view out;
    r = d.decode(in.substr(total), consumed, out);
    if (r == Result::Data) body.append(out);
    total += consumed;
    REQUIRE(++calls < 100);
  } while (r == Result::Data);
  CHECK(std::string(name(r)) == "Done");
  CHECK(body == "hello");
  CHECK(total == in.size());
  CHECK(d.done());
  check_chunked(in, Result::Done, "hello");
}

TEST_CASE("chunked: valid bodies split at every byte boundary") {
  struct V {
    std::string in;
    std::string body;
  };
  const std::vector<V> cases = {
      {"0\r\n\r\n", ""},
      {"1\r\na\r\n0\r\n\r\n", "a"},
      {"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", "abcde"},
      {"a\r\n0123456789\r\n0\r\n\r\n", "0123456789"},
      {"A\r\n0123456789\r\n0\r\n\r\n", "0123456789"},
      {"00A\r\n0123456789\r\n000\r\n\r\n", "0123456789"},
      {"10\r\n0123456789abcdef\r\n0\r\n\r\n", "0123456789abcdef"},
      {"5\r\nhe\r\nl\r\n0\r\n\r\n", "he\r\nl"},  // CRLF inside data is data
      {"4\r\n\0\x01\xff\n\r\n0\r\n\r\n"s, "\0\x01\xff\n"s},
      {"000000000000000f\r\n0123456789abcde\r\n0\r\n\r\n", "0123456789abcde"},  // 16 digits is the maximum
  };
  for (const auto& c : cases) check_chunked(c.in, Result::Done, c.body);
}

TEST_CASE("chunked: bytes after the last chunk are not consumed") {
  const std::string msg = "5\r\nhello\r\n0\r\n\r\n";
  check_chunked(msg + "GET / HTTP/1.1\r\nHost: a\r\n\r\n", Result::Done, "hello", msg.size());
  const std::string msg2 = "0\r\nX-T: 1\r\n\r\n";
  check_chunked(msg2 + "5\r\nagain", Result::Done, "", msg2.size());
}

TEST_CASE("chunked: chunk extensions are accepted") {
  const std::vector<std::string> cases = {
      "5;name=val\r\nhello\r\n0\r\n\r\n",
      "5;name\r\nhello\r\n0\r\n\r\n",
      "5;a=b;c=d\r\nhello\r\n0\r\n\r\n",
      "5;a;b;c\r\nhello\r\n0\r\n\r\n",
      "5;name=\"quoted val\"\r\nhello\r\n0\r\n\r\n",
      "5;name=\"q\\\"x\"\r\nhello\r\n0\r\n\r\n",
      "5;name=val\r\nhello\r\n0;last=1\r\n\r\n",
      "5;!#$%&'*+-.^_`|~=!#$%&'*+-.^_`|~\r\nhello\r\n0\r\n\r\n",
  };
  for (const auto& c : cases) check_chunked(c, Result::Done, "hello");
}

TEST_CASE("chunked: trailers are accepted and discarded") {
  check_chunked("5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", Result::Done, "hello");
  check_chunked("0\r\nX-T: 1\r\nX-U:2\r\nX-V: a b\t c\r\n\r\n", Result::Done, "");
  check_chunked("0\r\nX-Empty:\r\n\r\n", Result::Done, "");
  // A trailer that looks like a chunk or a request is still only a trailer.
  check_chunked("0\r\nContent-Length: 5\r\n\r\n", Result::Done, "");
}

TEST_CASE("chunked: incomplete bodies need more") {
  check_chunked("", Result::NeedMore, "");
  check_chunked("5", Result::NeedMore, "");
  check_chunked("5\r", Result::NeedMore, "");
  check_chunked("5\r\nhel", Result::NeedMore, "hel");
  check_chunked("5\r\nhello", Result::NeedMore, "hello");
  check_chunked("5\r\nhello\r\n", Result::NeedMore, "hello");
  check_chunked("5\r\nhello\r\n0\r\n", Result::NeedMore, "hello");
  check_chunked("5\r\nhello\r\n0\r\n\r", Result::NeedMore, "hello");
  check_chunked("0\r\nX-T: 1\r\n", Result::NeedMore, "");
  check_chunked("5;name=va", Result::NeedMore, "");
}

TEST_CASE("chunked: large sizes are accepted as sizes") {
  check_chunked("ffffffff\r\n", Result::NeedMore, "");
  check_chunked("ffffffff\r\nabc", Result::NeedMore, "abc");
  check_chunked("FFFFFFFFFFFFFFFF\r\nxyz", Result::NeedMore, "xyz");
  check_chunked("7fffffffffffffff\r\n", Result::NeedMore, "");
}

TEST_CASE("chunked: bad chunk sizes are rejected (row 13)") {
  const std::vector<std::string> cases = {
      "Z\r\nhello\r\n0\r\n\r\n",
      "g\r\nhello\r\n0\r\n\r\n",
      "0x5\r\nhello\r\n0\r\n\r\n",
      "0x0\r\n\r\n",
      "0X5\r\nhello\r\n0\r\n\r\n",
      "-0\r\n\r\n",
      "-5\r\nhello\r\n0\r\n\r\n",
      "+1\r\na\r\n0\r\n\r\n",
      " 1\r\na\r\n0\r\n\r\n",
      "\t1\r\na\r\n0\r\n\r\n",
      "1 \r\na\r\n0\r\n\r\n",  // trailing SP without an extension: BWS only allowed before ';'
      "\r\nhello\r\n0\r\n\r\n",  // empty size
      ";a=b\r\nhello\r\n0\r\n\r\n",
      "1these-bytes-are-data\r\n0\r\n\r\n",
      "5x\r\nhello\r\n0\r\n\r\n",
      "5_0\r\nhello\r\n0\r\n\r\n",
      "00000000000000001\r\na\r\n0\r\n\r\n",  // 17 hex digits
      "10000000000000000\r\na\r\n0\r\n\r\n",  // 17 hex digits = 2^64
      "fffffffffffffffff\r\n",                // 17 hex digits
      "ffffffffffffffffffffffffffffffff\r\n",
      "\xef\xbc\x95\r\nhello\r\n0\r\n\r\n",  // fullwidth digit 5
      "5\x00\r\nhello\r\n0\r\n\r\n"s,
  };
  for (const auto& c : cases) check_chunked(c, Result::Error);
}

TEST_CASE("chunked: bad line terminators are rejected (row 14)") {
  const std::vector<std::string> cases = {
      "2\r\r;a\r\nab\r\n0\r\n\r\n",
      "1\r0\n",
      "1\r0\na\r\n0\r\n\r\n",
      "1\rX\r\n0\r\n\r\n",
      "1\na\r\n0\r\n\r\n",          // bare LF after size
      "1\r\na\n0\r\n\r\n",          // bare LF after data
      "1\r\na\r0\r\n\r\n",          // bare CR after data
      "1\r\na\r\n0\n\r\n",          // bare LF after last-chunk size
      "1\r\na\r\n0\r\n\n",          // bare LF as the final line
      "1\r\na\r\n0\r\n\r\r\n",      // CR CR LF at the end
      "1\r\na\r\n0\r\nX-T: 1\n\r\n",  // bare LF after a trailer
      "1\r\na\r\n0\r\nX-T: 1\r\r\n\r\n",
      "0\r\nX: X\nTransfer-Encoding: chunked\r\n\r\n",
      "5;\r\nhello\r\n0\r\n\r\n",     // bare ';' extension
      "5;=v\r\nhello\r\n0\r\n\r\n",   // empty extension name
      "5;a=\r\nhello\r\n0\r\n\r\n",   // empty extension value
      "5;a b\r\nhello\r\n0\r\n\r\n",
      "5;a=b c\r\nhello\r\n0\r\n\r\n",
      "5;a=\"unterminated\r\nhello\r\n0\r\n\r\n",
      "5;a\x01\r\nhello\r\n0\r\n\r\n",
      "5;a=\x7f\r\nhello\r\n0\r\n\r\n",
      "5;a=b\rc\r\nhello\r\n0\r\n\r\n",
      "5;a=b\nhello\r\n0\r\n\r\n",
      "5;a\x00=b\r\nhello\r\n0\r\n\r\n"s,
  };
  for (const auto& c : cases) check_chunked(c, Result::Error);
}

TEST_CASE("chunked: data longer than the size is rejected (row 15)") {
  const std::vector<std::string> cases = {
      "4\r\nSEE-THIS\r\n0\r\n\r\n",
      "5\r\nhelloX\r\n0\r\n\r\n",
      "5\r\nhelloX0\r\n\r\n",      // missing CRLF after data
      "5\r\nhello0\r\n\r\n",
  };
  for (const auto& c : cases) check_chunked(c, Result::Error);
}

TEST_CASE("chunked: malformed trailers are rejected") {
  const std::vector<std::string> cases = {
      "0\r\nabc\r\n\r\n",                  // "abc" is not a trailer field line
      "0\r\n: x\r\n\r\n",                  // empty trailer name
      "0\r\nX T: 1\r\n\r\n",               // bad trailer name
      "0\r\nX-T : 1\r\n\r\n",              // whitespace before colon
      "0\r\n X-T: 1\r\n\r\n",              // obs-fold-like trailer
      "0\r\nX-T: 1\r\n 2\r\n\r\n",         // obs-fold
      "0\r\nX-T: a\x00" "b\r\n\r\n"s,      // NUL in a trailer value
      "0\r\nX-T: a\x01" "b\r\n\r\n",       // CTL in a trailer value
  };
  for (const auto& c : cases) check_chunked(c, Result::Error);
}

TEST_CASE("chunked: the decoder stays failed after an error") {
  ChunkedDecoder d;
  std::size_t consumed = 0;
  std::string_view out;
  Result r = d.decode("Z\r\n", consumed, out);
  REQUIRE(std::string(name(r)) == "Error");
  CHECK(!d.error().empty());
  CHECK_FALSE(d.done());
  consumed = 0;
  r = d.decode("0\r\n\r\n", consumed, out);
  CHECK(std::string(name(r)) == "Error");
}
