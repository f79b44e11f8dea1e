// IP addresses and CIDR ranges for allow/deny rules ("10.0.0.0/8", "::1", "fe80::/10").
//
// An IPv4-mapped IPv6 address (::ffff:1.2.3.4, what a dual-stack listener reports for an IPv4 peer) is
// treated as the IPv4 address it carries, on both sides: a rule "127.0.0.1" matches a client ::ffff:127.0.0.1
// and a rule "::ffff:10.0.0.0/104" is the IPv4 range 10.0.0.0/8. Otherwise a range only contains addresses of
// its own family.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace rproxy::stages {

// IpAddress is a parsed address in network byte order: 4 bytes used for IPv4, 16 for IPv6.
struct IpAddress {
  bool v6 = false;
  std::array<unsigned char, 16> bytes{};

  // parse accepts dotted IPv4 and textual IPv6 (no brackets); a "%zone" suffix is ignored, since link-local
  // peers are reported with one. IPv4-mapped IPv6 comes back as IPv4. nullopt when not an address.
  static std::optional<IpAddress> parse(std::string_view text);
  bool operator==(const IpAddress&) const = default;
};

// CidrRange is an address prefix. Host bits after the prefix are cleared on parse ("10.1.2.3/8"
// is 10.0.0.0/8), so a range copied from an interface's address still means what it says.
struct CidrRange {
  IpAddress base;
  unsigned prefix = 0;  // 0..32 for IPv4, 0..128 for IPv6

  // parse reads "ADDR" (a single address: /32 or /128) or "ADDR/N". On failure returns nullopt and sets error
  // to a message that names the input.
  static std::optional<CidrRange> parse(std::string_view text, std::string& error);

  bool contains(const IpAddress& ip) const;
  // contains parses ip first; text that is not an address is contained in no range.
  bool contains(const std::string& ip) const;
  // to_string renders the normalized range ("10.0.0.0/8", "::1/128").
  std::string to_string() const;
  bool operator==(const CidrRange&) const = default;
};

}  // namespace rproxy::stages
