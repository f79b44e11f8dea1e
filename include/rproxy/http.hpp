// HTTP/1.1 message heads as rproxy sees them: header order, duplicates and spelling are kept exactly as
// received, so record/replay and the echo upstream can reproduce them byte for byte.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rproxy {

// Header is one field line, name as spelled on the wire.
struct Header {
  std::string name;
  std::string value;
  bool operator==(const Header&) const = default;
};

// ASCII case-insensitive comparison, the only comparison HTTP field names and most tokens need.
bool iequals(std::string_view a, std::string_view b);

// Headers keeps field lines in wire order. Lookups are case-insensitive.
class Headers {
 public:
  Headers() = default;
  Headers(std::initializer_list<Header> init) : fields_(init) {}

  void add(std::string name, std::string value) { fields_.push_back({std::move(name), std::move(value)}); }
  void reserve(std::size_t n) { fields_.reserve(n); }
  // set replaces every field called name with one field (appended where the first one was, or at the end).
  void set(std::string_view name, std::string value);
  // remove drops every field called name and returns how many there were.
  std::size_t remove(std::string_view name);
  std::size_t count(std::string_view name) const;
  bool has(std::string_view name) const { return count(name) > 0; }
  // get returns the first value of name.
  std::optional<std::string_view> get(std::string_view name) const;
  // joined returns all values of name joined by ", " (RFC 9110 §5.3 list combination).
  std::string joined(std::string_view name) const;
  // has_token tells whether the comma-separated list in name contains token (case-insensitive).
  bool has_token(std::string_view name, std::string_view token) const;

  const std::vector<Header>& fields() const { return fields_; }
  std::vector<Header>& fields() { return fields_; }
  std::size_t size() const { return fields_.size(); }
  bool empty() const { return fields_.empty(); }
  auto begin() const { return fields_.begin(); }
  auto end() const { return fields_.end(); }

 private:
  std::vector<Header> fields_;
};

// RequestHead is a parsed request line plus header section.
struct RequestHead {
  std::string method;
  std::string target;  // raw, byte for byte as received (never decoded)
  int version_minor = 1;  // HTTP/1.<minor>; only 0 and 1 are accepted
  Headers headers;

  // path is the target up to '?', query what follows it (without '?'); both raw.
  std::string_view path() const;
  std::string_view query() const;
};

// ResponseHead is a parsed status line plus header section.
struct ResponseHead {
  int version_minor = 1;
  int status = 200;
  std::string reason;
  Headers headers;
};

// BodyFraming says how a message body is delimited on the wire (RFC 9112 §6.3).
struct BodyFraming {
  enum class Kind { None, Length, Chunked, UntilClose } kind = Kind::None;
  std::uint64_t length = 0;
};

// Split a comma-separated header list into trimmed, non-empty elements.
std::vector<std::string_view> split_list(std::string_view value);

// Standard reason phrase for a status code ("" when unknown).
std::string_view reason_phrase(int status);

// Serialize heads to wire format.
std::string serialize(const RequestHead& head);
std::string serialize(const ResponseHead& head);

}  // namespace rproxy
