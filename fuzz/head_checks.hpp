// Invariants shared by the request and response head fuzz targets. They restate the contract in
// include/rproxy/http_parser.hpp; nothing here depends on how the parser is written.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <string_view>

#include "fuzz_targets.hpp"
#include "rproxy/http_parser.hpp"

namespace rproxy::fuzz {

// small_limits derives tight limits from the input, so the fuzzer reaches every limit boundary (and the
// 414/431 verdicts given while a head is still incomplete) with inputs far smaller than the defaults.
// The head limit stays above the request line limit, as in the defaults and in every caller: otherwise a
// long request line is both 414 and 431 material, and which one a reader sees first depends on the split.
inline ParseLimits small_limits(std::string_view data) {
  unsigned k =
      data.empty() ? 0 : static_cast<unsigned char>(data[0]) ^ static_cast<unsigned char>(data.back());
  ParseLimits l;
  l.max_request_line = 4 + k % 61;
  l.max_field_line = 4 + k * 7 % 67;
  l.max_head_bytes = l.max_request_line + 1 + k * 13 % 241;
  l.max_header_count = k % 6;
  return l;
}

// check_result_shape: an Error names its status (one of allowed) and carries a one-line message; a Complete
// head ends with the empty line, inside the input.
template <typename Result>
void check_result_shape(const Result& r, std::string_view data, std::initializer_list<int> allowed) {
  if (r.status == ParseStatus::Error) {
    bool known = false;
    for (int s : allowed) known = known || r.error_status == s;
    fuzz_require(known, "error status outside the documented set");
    fuzz_require(!r.error.empty(), "Error without a message");
    fuzz_require(r.error.find('\n') == std::string::npos, "error message spans lines");
  }
  if (r.status == ParseStatus::Complete) {
    fuzz_require(r.consumed >= 4 && r.consumed <= data.size(), "consumed outside the input");
    fuzz_require(data.substr(0, r.consumed).ends_with("\r\n\r\n"), "a complete head must end with CRLF CRLF");
  }
}

// same_verdict: what a connection would do with the result (wait, act on a head of this length, or answer
// this status). Error messages may differ; the answer may not.
template <typename Result>
bool same_verdict(const Result& a, const Result& b) {
  if (a.status != b.status) return false;
  if (a.status == ParseStatus::Error) return a.error_status == b.error_status;
  if (a.status == ParseStatus::Complete)
    return a.consumed == b.consumed && a.head.headers.fields() == b.head.headers.fields();
  return true;
}

// check_prefixes is the "split at any byte boundary" rule of the header, checked at a few prefix lengths
// instead of all of them (that would be quadratic): a reader that has received only a prefix either waits
// (Incomplete) or already reaches the verdict the whole input gets. Just before the end of a complete head
// it must still be waiting, and exactly at the end it must see the same head.
template <typename Result, typename Parse>
void check_prefixes(std::string_view data, const Result& whole, Parse&& parse) {
  const std::size_t n = data.size();
  std::size_t lengths[] = {n / 2, n > 0 ? n - 1 : 0, n > 0 ? static_cast<unsigned char>(data[0]) % n : 0,
                           whole.consumed > 0 ? whole.consumed - 1 : 0, whole.consumed};
  for (std::size_t len : lengths) {
    if (len >= n) continue;
    Result part = parse(data.substr(0, len));
    if (part.status == ParseStatus::Incomplete) {
      fuzz_require(whole.status != ParseStatus::Complete || len < whole.consumed,
                   "a prefix holding the whole head is Incomplete");
      continue;
    }
    fuzz_require(same_verdict(part, whole), "a prefix reached a different verdict than the whole input");
  }
}

}  // namespace rproxy::fuzz
