// Parsers and printers for the small value types of a scenario: URLs, listen addresses, durations, sizes and
// enums. Each parser returns a one-line message without a path; the JSON reader prefixes the path, the CLI
// prefixes the flag. Every printer's output parses back to the same value.

#include <arpa/inet.h>
#include <netinet/in.h>

#include <array>
#include <cstdint>
#include <limits>
#include <numeric>
#include <optional>
#include <string>
#include <string_view>

#include "rproxy/http.hpp"
#include "rproxy/scenario.hpp"

namespace rproxy {
namespace {

// Quotes text the way JSON would, so messages show exactly what was written, control characters included.
std::string quote(std::string_view text) {
  return nlohmann::json(std::string(text)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!is_digit(c)) return false;
  return true;
}

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// Parses a decimal port; at most five digits so the arithmetic cannot overflow.
std::optional<std::uint16_t> parse_port(std::string_view s, bool allow_zero) {
  if (!all_digits(s) || s.size() > 5) return std::nullopt;
  unsigned value = 0;
  for (char c : s) value = value * 10 + static_cast<unsigned>(c - '0');
  if (value > 65535 || (value == 0 && !allow_zero)) return std::nullopt;
  return static_cast<std::uint16_t>(value);
}

// A host is an IPv4 literal or a DNS-style name. Underscores are allowed because container and compose
// service names use them; the resolver has the last word anyway.
bool valid_host_name(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  bool numeric = true;
  for (char c : host)
    if (!is_digit(c) && c != '.') numeric = false;
  if (numeric) {
    // "999.1.1.1" or "1.2.3" would otherwise pass as a name and fail obscurely at connect time.
    in_addr addr{};
    return inet_pton(AF_INET, std::string(host).c_str(), &addr) == 1;
  }
  std::size_t label = 0;
  for (char c : host) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-' || c == '_';
    if (!ok || ++label > 63) return false;
  }
  return label > 0;
}

bool valid_ipv6(std::string_view host) {
  // Zone ids ("fe80::1%eth0") are rejected: they are only meaningful on one machine.
  in6_addr addr{};
  return !host.empty() && host.find('%') == std::string_view::npos &&
         inet_pton(AF_INET6, std::string(host).c_str(), &addr) == 1;
}

// Splits "host:port" / "[v6]:port" / "host". Returns an error message; sets has_port when a ':' was present.
std::optional<std::string> split_host_port(std::string_view authority, std::string& host, bool& bracketed,
                                           std::string_view& port, bool& has_port) {
  bracketed = false;
  has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return "has an unclosed '['";
    host = std::string(authority.substr(1, close - 1));
    bracketed = true;
    auto rest = authority.substr(close + 1);
    if (rest.empty()) return std::nullopt;
    if (rest.front() != ':') return "has unexpected text after ']'";
    port = rest.substr(1);
    has_port = true;
    return std::nullopt;
  }
  auto colon = authority.find(':');
  if (colon != std::string_view::npos && authority.find(':', colon + 1) != std::string_view::npos)
    return "has an IPv6 address without brackets; write it as [addr]:port";
  if (colon == std::string_view::npos) {
    host = std::string(authority);
    return std::nullopt;
  }
  host = std::string(authority.substr(0, colon));
  port = authority.substr(colon + 1);
  has_port = true;
  return std::nullopt;
}

// Validates a split host; message or nullopt.
std::optional<std::string> check_host(const std::string& host, bool bracketed) {
  if (bracketed) {
    if (!valid_ipv6(host)) return "has an invalid IPv6 address " + quote(host);
    return std::nullopt;
  }
  if (!valid_host_name(host)) return "has an invalid host " + quote(host);
  return std::nullopt;
}

// Bracketing is needed exactly when the host is an IPv6 literal, the only kind of host containing ':'.
std::string join_host_port(const std::string& host, std::uint16_t port) {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

struct Unit {
  std::string_view name;
  std::uint64_t factor;
};

// Largest first: format_duration picks the first unit that divides exactly.
constexpr std::array<Unit, 4> kDurationUnits{{{"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}}};

constexpr std::array<Unit, 9> kSizeUnits{{{"B", 1},
                                          {"KB", 1000},
                                          {"MB", 1000 * 1000},
                                          {"GB", 1000ull * 1000 * 1000},
                                          {"TB", 1000ull * 1000 * 1000 * 1000},
                                          {"KiB", 1ull << 10},
                                          {"MiB", 1ull << 20},
                                          {"GiB", 1ull << 30},
                                          {"TiB", 1ull << 40}}};

// A year is far beyond any sensible timeout or delay, and keeps deadline arithmetic (now + d in
// nanoseconds) far from overflow.
constexpr std::uint64_t kMaxDurationMs = 365ull * 24 * 3600 * 1000;

// NumberWithUnit is "<digits>[.<digits>]<unit>" split apart; the caller scales it.
struct NumberWithUnit {
  std::string_view whole;
  std::string_view fraction;
  std::string_view unit;
};

std::optional<NumberWithUnit> split_number(std::string_view text) {
  NumberWithUnit n;
  std::size_t i = 0;
  while (i < text.size() && is_digit(text[i])) ++i;
  n.whole = text.substr(0, i);
  if (n.whole.empty()) return std::nullopt;
  if (i < text.size() && text[i] == '.') {
    std::size_t start = ++i;
    while (i < text.size() && is_digit(text[i])) ++i;
    n.fraction = text.substr(start, i - start);
    if (n.fraction.empty()) return std::nullopt;
  }
  n.unit = text.substr(i);
  return n;
}

// Scales whole.fraction by factor; nullopt when the result is not whole or does not fit in 64 bits.
// `fractional` tells which of the two went wrong. Exact integer arithmetic: "1.1s" must be 1100ms, not
// whatever a double makes of it.
std::optional<std::uint64_t> scale(const NumberWithUnit& n, std::uint64_t factor, bool& fractional) {
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  fractional = false;
  std::uint64_t whole = 0;
  for (char c : n.whole) {
    auto digit = static_cast<std::uint64_t>(c - '0');
    if (whole > (kMax - digit) / 10) return std::nullopt;
    whole = whole * 10 + digit;
  }
  if (whole > kMax / factor) return std::nullopt;
  std::uint64_t total = whole * factor;

  std::string_view fraction = n.fraction;
  while (!fraction.empty() && fraction.back() == '0') fraction.remove_suffix(1);
  if (fraction.empty()) return total;
  // 12 digits keep 10^k in range; no unit is finer than that, so longer fractions are never whole.
  if (fraction.size() > 12) {
    fractional = true;
    return std::nullopt;
  }
  std::uint64_t frac = 0;
  std::uint64_t denom = 1;
  for (char c : fraction) {
    frac = frac * 10 + static_cast<std::uint64_t>(c - '0');
    denom *= 10;
  }
  // frac * factor / denom is whole iff frac is a multiple of denom / gcd(factor, denom), because what is
  // left of factor and denom after dividing by their gcd is coprime.
  std::uint64_t g = std::gcd(factor, denom);
  if (frac % (denom / g) != 0) {
    fractional = true;
    return std::nullopt;
  }
  std::uint64_t part = frac / (denom / g);
  std::uint64_t unit = factor / g;
  if (part > kMax / unit || part * unit > kMax - total) return std::nullopt;
  return total + part * unit;
}

}  // namespace

std::string Url::authority() const {
  return join_host_port(host, port);
}

std::optional<std::string> parse_url(const std::string& text, Url& out) {
  const std::string shown = quote(text);
  auto sep = text.find("://");
  std::string scheme = sep == std::string::npos ? "" : to_lower(std::string_view(text).substr(0, sep));
  if (scheme != "http" && scheme != "https") return shown + " is not an http(s) URL";
  std::string_view rest = std::string_view(text).substr(sep + 3);

  auto end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  std::string_view tail = end == std::string_view::npos ? std::string_view{} : rest.substr(end);

  constexpr std::string_view kShape = "; upstream URLs are scheme://host[:port]";
  if (authority.find('@') != std::string_view::npos) return shown + " has user info" + std::string(kShape);
  std::string_view path = tail.substr(0, tail.find_first_of("?#"));
  if (!path.empty() && path != "/") return shown + " has a path" + std::string(kShape);
  if (tail.find('?') != std::string_view::npos) return shown + " has a query" + std::string(kShape);
  if (tail.find('#') != std::string_view::npos) return shown + " has a fragment" + std::string(kShape);

  std::string host;
  bool bracketed = false;
  bool has_port = false;
  std::string_view port_text;
  if (auto err = split_host_port(authority, host, bracketed, port_text, has_port)) return shown + " " + *err;
  if (host.empty()) return shown + " has no host";
  if (auto err = check_host(host, bracketed)) return shown + " " + *err;

  std::uint16_t port = scheme == "https" ? 443 : 80;
  if (has_port) {
    auto parsed = parse_port(port_text, /*allow_zero=*/false);
    if (!parsed) return shown + " has an invalid port " + quote(port_text) + " (must be 1-65535)";
    port = *parsed;
  }
  out = Url{scheme, to_lower(host), port, text};
  return std::nullopt;
}

std::string ListenAddress::to_string() const {
  return (tls ? "https://" : "") + join_host_port(host, port);
}

std::optional<std::string> parse_listen_address(const std::string& full_text, ListenAddress& out) {
  const std::string shown = quote(full_text);
  // "https://ADDR" is a TLS listener, "http://ADDR" the same as ADDR: people paste URLs.
  bool tls = false;
  std::string text = full_text;
  if (text.rfind("https://", 0) == 0) {
    tls = true;
    text = text.substr(8);
  } else if (text.rfind("http://", 0) == 0) {
    text = text.substr(7);
  }
  if (!text.empty() && text.back() == '/') text.pop_back();
  if (text.empty()) return "expected a listen address like \"127.0.0.1:8080\", got " + shown;
  // A bare port is the common case on the command line ("--listen 9000").
  if (all_digits(text)) {
    auto port = parse_port(text, /*allow_zero=*/true);
    if (!port) return shown + " has an invalid port (must be 0-65535)";
    out = ListenAddress{"127.0.0.1", *port, tls};
    return std::nullopt;
  }
  std::string host;
  bool bracketed = false;
  bool has_port = false;
  std::string_view port_text;
  if (auto err = split_host_port(text, host, bracketed, port_text, has_port)) return shown + " " + *err;
  if (!has_port) return shown + " has no port; expected host:port like \"127.0.0.1:8080\"";
  auto port = parse_port(port_text, /*allow_zero=*/true);
  if (!port) return shown + " has an invalid port " + quote(port_text) + " (must be 0-65535)";
  if (host.empty()) {
    // ":8080" means loopback: listening on every interface must be asked for explicitly (0.0.0.0).
    if (bracketed) return shown + " has no host";
    host = "127.0.0.1";
  } else if (auto err = check_host(host, bracketed)) {
    return shown + " " + *err;
  }
  out = ListenAddress{to_lower(host), *port, tls};
  return std::nullopt;
}

bool is_loopback_host(const std::string& host) {
  if (iequals(host, "localhost")) return true;
  in_addr v4{};
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (::inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    if (IN6_IS_ADDR_V4MAPPED(&v6)) return v6.s6_addr[12] == 127;
  }
  return false;
}

std::optional<std::string> parse_duration(const std::string& text, Millis& out) {
  const std::string expected = "expected a duration like \"250ms\", got " + quote(text);
  if (text == "0") {
    out = Millis{0};
    return std::nullopt;
  }
  auto number = split_number(text);
  if (!number) return expected;
  const Unit* unit = nullptr;
  for (const auto& u : kDurationUnits)
    if (u.name == number->unit) unit = &u;
  if (unit == nullptr) return expected;
  bool fractional = false;
  auto ms = scale(*number, unit->factor, fractional);
  if (fractional) return quote(text) + " is not a whole number of milliseconds";
  if (!ms || *ms > kMaxDurationMs) return quote(text) + " is too long (at most 8760h)";
  out = Millis{static_cast<Millis::rep>(*ms)};
  return std::nullopt;
}

std::string format_duration(Millis d) {
  auto count = d.count();
  if (count == 0) return "0s";
  // Negative durations never validate, but printing them must not lose the sign.
  std::string sign = count < 0 ? "-" : "";
  auto magnitude = count < 0 ? 0 - static_cast<std::uint64_t>(count) : static_cast<std::uint64_t>(count);
  for (const auto& u : kDurationUnits)
    if (magnitude % u.factor == 0) return sign + std::to_string(magnitude / u.factor) + std::string(u.name);
  return sign + std::to_string(magnitude) + "ms";  // unreachable: the ms factor divides everything
}

std::optional<std::string> parse_size(const std::string& text, std::uint64_t& out) {
  const std::string expected = "expected a size like \"10MiB\", got " + quote(text);
  auto number = split_number(text);
  if (!number) return expected;
  std::uint64_t factor = 0;
  if (number->unit.empty()) {
    // A plain number is bytes; a fraction of a byte makes no sense.
    if (!number->fraction.empty()) return expected;
    factor = 1;
  }
  for (const auto& u : kSizeUnits)
    if (u.name == number->unit) factor = u.factor;
  if (factor == 0) return expected;
  bool fractional = false;
  auto bytes = scale(*number, factor, fractional);
  if (fractional) return quote(text) + " is not a whole number of bytes";
  if (!bytes) return quote(text) + " is too large";
  out = *bytes;
  return std::nullopt;
}

std::string to_string(Balance b) {
  switch (b) {
    case Balance::RoundRobin:
      return "round_robin";
    case Balance::LeastConn:
      return "least_conn";
    case Balance::Random:
      return "random";
    case Balance::Weighted:
      return "weighted";
  }
  return "round_robin";  // unreachable with a valid enumerator; keeps -Wreturn-type quiet
}

std::optional<Balance> parse_balance(std::string_view text) {
  for (auto b : {Balance::RoundRobin, Balance::LeastConn, Balance::Random, Balance::Weighted})
    if (text == to_string(b)) return b;
  return std::nullopt;
}

std::string to_string(UnderscoreHeaders u) {
  switch (u) {
    case UnderscoreHeaders::Drop:
      return "drop";
    case UnderscoreHeaders::Reject:
      return "reject";
    case UnderscoreHeaders::Allow:
      return "allow";
  }
  return "drop";
}

std::optional<UnderscoreHeaders> parse_underscore_headers(std::string_view text) {
  for (auto u : {UnderscoreHeaders::Drop, UnderscoreHeaders::Reject, UnderscoreHeaders::Allow})
    if (text == to_string(u)) return u;
  return std::nullopt;
}

std::string to_string(HostHeader h) {
  return h == HostHeader::Upstream ? "upstream" : "preserve";
}

std::optional<HostHeader> parse_host_header(std::string_view text) {
  if (text == "preserve") return HostHeader::Preserve;
  if (text == "upstream") return HostHeader::Upstream;
  return std::nullopt;
}

}  // namespace rproxy
