#include "stages/cidr.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace rproxy::stages {
namespace {

// The ::ffff:0:0/96 prefix of IPv4-mapped IPv6 addresses (RFC 4291 §2.5.5.2).
constexpr std::array<unsigned char, 12> kMappedPrefix{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool is_mapped(const std::array<unsigned char, 16>& b) {
  return std::equal(kMappedPrefix.begin(), kMappedPrefix.end(), b.begin());
}

std::string quoted(std::string_view text) {
  return "\"" + std::string(text) + "\"";
}

}  // namespace

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  if (auto zone = text.find('%'); zone != std::string_view::npos) text = text.substr(0, zone);
  // inet_pton wants a NUL-terminated string; anything longer than an IPv6 text form is not an address.
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  char buf[INET6_ADDRSTRLEN];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  IpAddress out;
  if (inet_pton(AF_INET, buf, out.bytes.data()) == 1) return out;
  if (inet_pton(AF_INET6, buf, out.bytes.data()) != 1) return std::nullopt;
  if (is_mapped(out.bytes)) {
    std::memmove(out.bytes.data(), out.bytes.data() + 12, 4);
    std::fill(out.bytes.begin() + 4, out.bytes.end(), 0);
    return out;
  }
  out.v6 = true;
  return out;
}

std::optional<CidrRange> CidrRange::parse(std::string_view text, std::string& error) {
  auto slash = text.find('/');
  auto addr_text = text.substr(0, slash);
  if (addr_text.find('%') != std::string_view::npos) {
    error = quoted(text) + " has a zone (%...); write the address without it";
    return std::nullopt;
  }
  auto addr = IpAddress::parse(addr_text);
  if (!addr) {
    error = quoted(text) +
            " is not an IP address or CIDR range (e.g. "
            "10.0.0.0/8, 192.168.1.7, ::1, fd00::/8)";
    return std::nullopt;
  }
  // A mapped address parses as IPv4, but a prefix written for it counts the 96 bits of ::ffff:0:0 too.
  bool written_v6 = addr_text.find(':') != std::string_view::npos;
  unsigned max = written_v6 ? 128 : 32;
  unsigned prefix = max;
  if (slash != std::string_view::npos) {
    auto digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      error = quoted(text) + ": prefix length after / must be a number from 0 to " + std::to_string(max);
      return std::nullopt;
    }
    prefix = static_cast<unsigned>(std::stoul(std::string(digits)));
    if (prefix > max) {
      error = quoted(text) + ": prefix length " + std::to_string(prefix) + " is too long for " +
              (written_v6 ? "IPv6" : "IPv4") + " (0 to " + std::to_string(max) + ")";
      return std::nullopt;
    }
  }
  CidrRange r;
  r.base = *addr;
  if (written_v6 && !addr->v6) {
    if (prefix < 96) {
      // Wider than ::ffff:0:0/96: an IPv6 range after all, which no (IPv4-mapped) client falls in except
      // through its mapped form. Keep it as written so contains() compares it as IPv6.
      r.base.v6 = true;
      std::fill(r.base.bytes.begin(), r.base.bytes.end(), 0);
      std::copy(kMappedPrefix.begin(), kMappedPrefix.end(), r.base.bytes.begin());
      std::copy(addr->bytes.begin(), addr->bytes.begin() + 4, r.base.bytes.begin() + 12);
    } else {
      prefix -= 96;
    }
  }
  r.prefix = prefix;
  // Clear host bits so contains() compares whole bytes and to_string() prints the network.
  unsigned total = r.base.v6 ? 16 : 4;
  for (unsigned i = 0; i < total; ++i) {
    unsigned bit = i * 8;
    if (bit >= prefix)
      r.base.bytes[i] = 0;
    else if (prefix - bit < 8)
      r.base.bytes[i] &= static_cast<unsigned char>(0xff << (8 - (prefix - bit)));
  }
  return r;
}

bool CidrRange::contains(const IpAddress& ip) const {
  IpAddress candidate = ip;
  if (base.v6 && !ip.v6) {
    // A range wider than /96 written in IPv6 (e.g. ::/0) also holds IPv4 clients in their mapped form.
    candidate.v6 = true;
    std::fill(candidate.bytes.begin(), candidate.bytes.end(), 0);
    std::copy(kMappedPrefix.begin(), kMappedPrefix.end(), candidate.bytes.begin());
    std::copy(ip.bytes.begin(), ip.bytes.begin() + 4, candidate.bytes.begin() + 12);
  } else if (base.v6 != ip.v6) {
    return false;
  }
  unsigned full = prefix / 8;
  if (!std::equal(base.bytes.begin(), base.bytes.begin() + full, candidate.bytes.begin())) return false;
  unsigned rest = prefix % 8;
  if (rest == 0) return true;
  auto mask = static_cast<unsigned char>(0xff << (8 - rest));
  return (candidate.bytes[full] & mask) == base.bytes[full];
}

bool CidrRange::contains(const std::string& ip) const {
  auto parsed = IpAddress::parse(ip);
  return parsed && contains(*parsed);
}

std::string CidrRange::to_string() const {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(base.v6 ? AF_INET6 : AF_INET, base.bytes.data(), buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(prefix);
}

}  // namespace rproxy::stages
