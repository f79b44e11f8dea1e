#include "stages/access.hpp"

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string_view>

#include "rproxy/http_parser.hpp"
#include "rproxy/scenario.hpp"
#include "stages/params.hpp"

namespace rproxy::stages {
namespace {

using nlohmann::json;

constexpr std::string_view kAuthorization = "Authorization";
// Users and tokens files are small; a bigger file is a wrong path (a log, a disk image), not a config.
constexpr std::size_t kMaxFileSize = 16 * 1024 * 1024;

Sha256Digest sha256(std::string_view data) {
  Sha256Digest out{};
  unsigned int size = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &size, EVP_sha256(), nullptr) != 1 ||
      size != out.size())
    throw std::runtime_error("EVP sha256 failed");
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// Reads a whole (small) file; on failure returns nullopt with error set to the reason.
std::optional<std::string> read_file(const std::string& file, std::string& error) {
  std::FILE* f = std::fopen(file.c_str(), "rb");
  if (f == nullptr) {
    error = std::strerror(errno);
    return std::nullopt;
  }
  std::string out;
  char buf[65536];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
    out.append(buf, n);
    if (out.size() > kMaxFileSize) {
      std::fclose(f);
      error = "larger than 16 MiB";
      return std::nullopt;
    }
  }
  // A directory opens fine and fails on the first read (EISDIR).
  bool failed = std::ferror(f) != 0;
  int err = errno;
  std::fclose(f);
  if (failed) {
    error = std::strerror(err);
    return std::nullopt;
  }
  return out;
}

// Calls fn(line_number, line) for each line that is not blank or a # comment, trimmed.
template <typename Fn>
void for_each_entry(std::string_view text, Fn fn) {
  std::size_t number = 0;
  while (!text.empty()) {
    auto end = text.find('\n');
    auto line = trim(text.substr(0, end));
    text = end == std::string_view::npos ? std::string_view{} : text.substr(end + 1);
    ++number;
    if (line.empty() || line.front() == '#') continue;
    fn(number, line);
  }
}

bool has_control(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return true;
  return false;
}

constexpr const char* kHashHelp =
    "supported: bcrypt $2y$/$2b$/$2a$ (htpasswd -nB USER), sha512-crypt $6$ "
    "(openssl passwd -6), "
    "sha256-crypt $5$ (openssl passwd -5), yescrypt $y$ (mkpasswd -m yescrypt)";

// Checks that a users-file hash is one libcrypt verifies and that is worth using. Returns "" when usable,
// else what the entry is, for the problem message; the entry itself is never quoted (it may be a password).
std::string unsupported_hash(std::string_view hash) {
  struct Kind {
    std::string_view prefix;
    std::string_view name;
    std::size_t digest_chars;  // length of the last $-separated field; 0 = total length 60 (bcrypt)
  };
  static constexpr Kind kKinds[] = {{"$2y$", "bcrypt", 0},       {"$2b$", "bcrypt", 0},
                                    {"$2a$", "bcrypt", 0},       {"$6$", "sha512-crypt", 86},
                                    {"$5$", "sha256-crypt", 43}, {"$y$", "yescrypt", 43}};
  for (const auto& k : kKinds) {
    if (hash.substr(0, k.prefix.size()) != k.prefix) continue;
    bool ok = k.digest_chars == 0 ? hash.size() == 60 : hash.size() - hash.rfind('$') - 1 == k.digest_chars;
    // crypt_checksalt says LEGACY for methods Debian does not hash new passwords with by default ($5$); those
    // still verify.
    int salt = crypt_checksalt(std::string(hash).c_str());
    ok = ok && (salt == CRYPT_SALT_OK || salt == CRYPT_SALT_METHOD_LEGACY);
    return ok ? "" : "a malformed " + std::string(k.name) + " hash (cut short or edited?)";
  }
  if (hash.substr(0, 6) == "$apr1$") return "an Apache MD5 hash ($apr1$, htpasswd's default without -B)";
  if (hash.substr(0, 5) == "{SHA}") return "an unsalted SHA-1 hash ({SHA})";
  if (hash.substr(0, 3) == "$1$") return "an MD5-crypt hash ($1$)";
  if (!hash.empty() && (hash.front() == '$' || hash.front() == '{')) return "a hash in an unsupported format";
  return "a plain-text password (or DES crypt)";
}

std::optional<std::string> realm_of(const json& v, const std::string& path, ParamReader& r) {
  auto realm = r.string(v, path);
  if (!realm) return std::nullopt;
  // The realm is sent inside a quoted-string; quotes, backslashes and controls would break the challenge.
  if (realm->find_first_of("\"\\") != std::string::npos || has_control(*realm)) {
    r.fail(path, "must not contain quotes, backslashes or control characters");
    return std::nullopt;
  }
  return realm;
}

std::optional<std::vector<CidrRange>> parse_ranges(const json& v, const std::string& path, ParamReader& r) {
  auto texts = r.strings(v, path);
  if (!texts) return std::nullopt;
  std::vector<CidrRange> out;
  bool ok = true;
  for (std::size_t i = 0; i < texts->size(); ++i) {
    std::string error;
    if (auto range = CidrRange::parse((*texts)[i], error))
      out.push_back(*range);
    else {
      r.fail(json_path_index(path, i), error);
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

void parse_users(const std::string& text, const std::string& file, const std::string& path,
                 AccessSettings::Basic& basic, ParamReader& r) {
  std::unordered_map<std::string, std::size_t> line_of;
  for_each_entry(text, [&](std::size_t number, std::string_view line) {
    auto where = file + " line " + std::to_string(number);
    auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      r.fail(path, where + ": expected USER:HASH (make one with htpasswd -nB USER)");
      return;
    }
    std::string user(line.substr(0, colon));
    auto hash = line.substr(colon + 1);
    if (has_control(user)) {
      r.fail(path, where + ": user name contains a control character");
      return;
    }
    where += " (user \"" + user + "\")";
    if (auto what = unsupported_hash(hash); !what.empty()) {
      r.fail(path, where + ": " + what + " is not supported; " + kHashHelp);
      return;
    }
    if (auto [it, fresh] = line_of.emplace(user, number); !fresh) {
      r.fail(path, where + ": user is also on line " + std::to_string(it->second));
      return;
    }
    basic.users.emplace(user, std::string(hash));
    if (basic.dummy_hash.empty()) basic.dummy_hash = std::string(hash);
  });
  if (basic.users.empty() && line_of.empty()) r.fail(path, file + " has no USER:HASH lines");
}

void parse_tokens(const std::string& text, const std::string& file, const std::string& path,
                  AccessSettings::Bearer& bearer, ParamReader& r) {
  std::map<Sha256Digest, std::size_t> line_of;
  bool any = false;
  for_each_entry(text, [&](std::size_t number, std::string_view line) {
    any = true;
    auto where = file + " line " + std::to_string(number);
    Sha256Digest digest{};
    if (line.size() >= 7 && iequals(line.substr(0, 7), "sha256:")) {
      auto hex = line.substr(7);
      bool ok = hex.size() == 64;
      for (std::size_t i = 0; ok && i < 32; ++i) {
        auto nibble = [](char c) -> int {
          if (c >= '0' && c <= '9') return c - '0';
          if (c >= 'a' && c <= 'f') return c - 'a' + 10;
          if (c >= 'A' && c <= 'F') return c - 'A' + 10;
          return -1;
        };
        int hi = nibble(hex[2 * i]);
        int lo = nibble(hex[2 * i + 1]);
        ok = hi >= 0 && lo >= 0;
        if (ok) digest[i] = static_cast<unsigned char>(hi << 4 | lo);
      }
      if (!ok) {
        r.fail(path, where + ": sha256: needs 64 hex digits (printf %s TOKEN | sha256sum)");
        return;
      }
    } else {
      digest = sha256(line);
    }
    if (auto [it, fresh] = line_of.emplace(digest, number); !fresh) {
      r.fail(path, where + ": same token as line " + std::to_string(it->second));
      return;
    }
    bearer.tokens.push_back(digest);
  });
  if (!any) r.fail(path, file + " has no tokens (one per line: sha256:HEX or the token itself)");
}

// read_named_file reads the file v[key] names (required); problems are reported at path.key. The name read
// is stored in file_out.
std::optional<std::string> read_named_file(const json& v, const char* key, const std::string& path,
                                           const std::string& when_missing, ParamReader& r,
                                           std::string& file_out) {
  auto file_path = json_path_key(path, key);
  if (!v.contains(key)) {
    r.fail(file_path, when_missing);
    return std::nullopt;
  }
  auto file = r.string(v[key], file_path);
  if (!file) return std::nullopt;
  file_out = *file;
  std::string error;
  auto text = read_file(*file, error);
  if (!text) r.fail(file_path, "cannot read " + *file + ": " + error);
  return text;
}

std::optional<AccessSettings::Basic> parse_basic(const json& v, const std::string& path, ParamReader& r) {
  if (!v.is_object()) {
    r.fail(path,
           "expected an object with \"users_file\" and optionally "
           "\"realm\", got " +
               json_describe(v));
    return std::nullopt;
  }
  r.known_keys(v, path, {"users_file", "realm"});
  AccessSettings::Basic basic;
  bool ok = true;
  if (v.contains("realm")) {
    auto realm = realm_of(v["realm"], json_path_key(path, "realm"), r);
    ok = realm.has_value();
    if (realm) basic.realm = *realm;
  }
  auto file_path = json_path_key(path, "users_file");
  auto text = read_named_file(v, "users_file", path,
                              "required: an htpasswd file of USER:HASH lines (htpasswd -nB USER)", r,
                              basic.users_file);
  if (!text) return std::nullopt;
  auto before = r.problems.size();
  parse_users(*text, basic.users_file, file_path, basic, r);
  if (!ok || r.problems.size() != before) return std::nullopt;
  return basic;
}

std::optional<AccessSettings::Bearer> parse_bearer(const json& v, const std::string& path, ParamReader& r) {
  if (!v.is_object()) {
    r.fail(path,
           "expected an object with \"tokens_file\" and optionally "
           "\"header\" and \"realm\", got " +
               json_describe(v));
    return std::nullopt;
  }
  r.known_keys(v, path, {"tokens_file", "header", "realm"});
  AccessSettings::Bearer bearer;
  bool ok = true;
  if (v.contains("realm")) {
    auto realm = realm_of(v["realm"], json_path_key(path, "realm"), r);
    ok = realm.has_value();
    if (realm) bearer.realm = *realm;
  }
  if (v.contains("header")) {
    auto header_path = json_path_key(path, "header");
    auto header = r.string(v["header"], header_path);
    if (header && !is_token(*header)) {
      r.fail(header_path, "not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)");
      header.reset();
    }
    ok = ok && header.has_value();
    if (header) bearer.header = iequals(*header, kAuthorization) ? std::string(kAuthorization) : *header;
  }
  auto file_path = json_path_key(path, "tokens_file");
  auto text = read_named_file(
      v, "tokens_file", path,
      "required: a file of tokens, one per line (sha256:HEX from printf %s TOKEN | sha256sum)", r,
      bearer.tokens_file);
  if (!text) return std::nullopt;
  auto before = r.problems.size();
  parse_tokens(*text, bearer.tokens_file, file_path, bearer, r);
  // Plain tokens were in this buffer; only their digests are kept.
  OPENSSL_cleanse(text->data(), text->size());
  if (!ok || r.problems.size() != before) return std::nullopt;
  return bearer;
}

// Strict base64 (RFC 4648 §4) into out; padding may be left out. false on any other character or a bad
// length. Decodes in place into the caller's buffer so the password exists in one wipeable copy.
bool base64_decode(std::string_view in, std::string& out) {
  std::size_t pad = 0;
  while (!in.empty() && in.back() == '=') {
    in.remove_suffix(1);
    ++pad;
  }
  if (in.size() % 4 == 1 || pad > 2 || (pad > 0 && (in.size() + pad) % 4 != 0)) return false;
  out.reserve(in.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = c >= 'A' && c <= 'Z'   ? c - 'A'
            : c >= 'a' && c <= 'z' ? c - 'a' + 26
            : c >= '0' && c <= '9' ? c - '0' + 52
            : c == '+'             ? 62
            : c == '/'             ? 63
                                   : -1;
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return true;
}

// Splits "Scheme credentials" (RFC 9110 §11.4); scheme compares case-insensitively.
bool split_scheme(std::string_view value, std::string_view scheme, std::string_view& credentials) {
  value = trim(value);
  if (value.size() <= scheme.size() || !iequals(value.substr(0, scheme.size()), scheme) ||
      (value[scheme.size()] != ' ' && value[scheme.size()] != '\t'))
    return false;
  credentials = trim(value.substr(scheme.size()));
  return true;
}

// Wipes a string that held a password before it is freed.
struct Wiped {
  std::string value;
  ~Wiped() { OPENSSL_cleanse(value.data(), value.size()); }
};

}  // namespace

std::unique_ptr<Stage> AccessStage::create(const json& params, const std::string& path,
                                           const StageContext& /*context*/,
                                           std::vector<std::string>& problems) {
  ParamReader r{problems};
  const auto before = problems.size();
  if (!params.is_object()) {
    r.fail(path,
           "expected an object with \"allow\", \"deny\", \"basic\" "
           "and/or \"bearer\", got " +
               json_describe(params));
    return nullptr;
  }
  r.known_keys(params, path, {"allow", "deny", "basic", "bearer", "forward_credentials"});
  AccessSettings s;
  if (params.contains("allow"))
    if (auto v = parse_ranges(params["allow"], json_path_key(path, "allow"), r)) s.allow = std::move(*v);
  if (params.contains("deny"))
    if (auto v = parse_ranges(params["deny"], json_path_key(path, "deny"), r)) s.deny = std::move(*v);
  if (params.contains("basic")) s.basic = parse_basic(params["basic"], json_path_key(path, "basic"), r);
  if (params.contains("bearer")) s.bearer = parse_bearer(params["bearer"], json_path_key(path, "bearer"), r);
  if (params.contains("forward_credentials"))
    if (auto v = r.boolean(params["forward_credentials"], json_path_key(path, "forward_credentials")))
      s.forward_credentials = *v;
  if (problems.size() != before) return nullptr;
  if (s.allow.empty() && s.deny.empty() && !s.basic && !s.bearer) {
    // An access stage that checks nothing would look like protection while letting everything through.
    r.fail(path,
           "nothing to check: give \"allow\", \"deny\", \"basic\" and/or "
           "\"bearer\"");
    return nullptr;
  }
  return std::make_unique<AccessStage>(std::move(s));
}

bool AccessStage::verify_password(const std::string& user, const std::string& password) {
  Wiped joined;
  joined.value.reserve(user.size() + 1 + password.size());
  joined.value.append(user).append(":").append(password);
  auto digest = sha256(joined.value);
  {
    std::lock_guard lock(cache_mutex_);
    auto it = cache_.find(user);
    if (it != cache_.end() && CRYPTO_memcmp(it->second.data(), digest.data(), digest.size()) == 0)
      return true;
  }
  // An unknown user is checked against a real entry's hash anyway, so the answer takes as long as for a known
  // user with a wrong password and response times do not tell which user names exist.
  auto it = settings_.basic->users.find(user);
  const std::string& hash = it != settings_.basic->users.end() ? it->second : settings_.basic->dummy_hash;
  // crypt_data is 32 KiB: too big for an event-loop thread's stack frame. Zeroed, as crypt_rn requires.
  auto data = std::make_unique<crypt_data>();
  const char* out = crypt_rn(password.c_str(), hash.c_str(), data.get(), sizeof *data);
  bool ok = out != nullptr && std::strlen(out) == hash.size() &&
            CRYPTO_memcmp(out, hash.data(), hash.size()) == 0 && it != settings_.basic->users.end();
  OPENSSL_cleanse(data.get(), sizeof *data);
  if (!ok) return false;  // failures are not cached: a guess costs a crypt every time
  std::lock_guard lock(cache_mutex_);
  if (cache_.size() >= kCacheCap && cache_.find(user) == cache_.end()) cache_.clear();
  cache_[user] = digest;
  return true;
}

AccessStage::Check AccessStage::check_basic(const Exchange& exchange, std::string& user, std::string& why) {
  auto value = exchange.request.headers.get(kAuthorization);
  std::string_view credentials;
  if (!value || !split_scheme(*value, "Basic", credentials)) return Check::Absent;
  Wiped pair;
  bool decoded = base64_decode(credentials, pair.value);
  auto colon = pair.value.find(':');
  if (!decoded || colon == std::string::npos || pair.value.find('\0') != std::string::npos) {
    why = "malformed Basic credentials (expected base64 of USER:PASSWORD)";
    return Check::Failed;
  }
  std::string name = pair.value.substr(0, colon);
  Wiped password{pair.value.substr(colon + 1)};
  if (!verify_password(name, password.value)) {
    why = "wrong user name or password";
    return Check::Failed;
  }
  user = std::move(name);
  return Check::Ok;
}

AccessStage::Check AccessStage::check_bearer(const Exchange& exchange, std::string& why) const {
  const auto& bearer = *settings_.bearer;
  auto value = exchange.request.headers.get(bearer.header);
  if (!value) return Check::Absent;
  if (bearer.header != kAuthorization && exchange.request.headers.count(bearer.header) > 1) {
    why = "more than one " + bearer.header + " header";
    return Check::Failed;
  }
  std::string_view token = trim(*value);
  if (bearer.header == kAuthorization && !split_scheme(*value, "Bearer", token)) return Check::Absent;
  if (token.empty()) return Check::Absent;
  auto digest = sha256(token);
  // Every entry is compared, whatever matches, so timing does not depend on which token (if any) it is.
  bool match = false;
  for (const auto& t : bearer.tokens) match |= CRYPTO_memcmp(t.data(), digest.data(), digest.size()) == 0;
  if (!match) {
    why = "invalid token";
    return Check::Failed;
  }
  return Check::Ok;
}

LocalResponse AccessStage::unauthorized(bool credentials_given, bool bearer_token_given,
                                        const std::string& why) const {
  LocalResponse r;
  r.status = 401;
  r.headers.add("Content-Type", "text/plain; charset=utf-8");
  r.headers.add("X-Rproxy-Error", credentials_given ? "auth_failed" : "auth_required");
  if (settings_.basic)
    r.headers.add("WWW-Authenticate", "Basic realm=\"" + settings_.basic->realm + "\", charset=\"UTF-8\"");
  if (settings_.bearer) {
    // RFC 6750 §3.1: no error code when the request carried no token, invalid_token when it was wrong.
    std::string challenge = "Bearer realm=\"" + settings_.bearer->realm + "\"";
    if (bearer_token_given) challenge += ", error=\"invalid_token\"";
    r.headers.add("WWW-Authenticate", challenge);
  }
  r.body = "401 Unauthorized: " + why + "\n";
  return r;
}

Decision AccessStage::on_request(Exchange& exchange) {
  auto ip = IpAddress::parse(exchange.client_ip);
  auto in = [&](const std::vector<CidrRange>& ranges) {
    if (!ip) return false;
    for (const auto& range : ranges)
      if (range.contains(*ip)) return true;
    return false;
  };
  if (in(settings_.deny) || (!settings_.allow.empty() && !in(settings_.allow))) {
    denied_ip_.fetch_add(1, std::memory_order_relaxed);
    LocalResponse r;
    r.status = 403;
    r.headers.add("Content-Type", "text/plain; charset=utf-8");
    r.headers.add("X-Rproxy-Error", "access_denied");
    r.body = "403 Forbidden: " + exchange.client_ip + " is not allowed\n";
    return Decision::respond(std::move(r));
  }
  if (!settings_.basic && !settings_.bearer) {
    allowed_.fetch_add(1, std::memory_order_relaxed);
    return Decision::proceed();
  }

  auto& headers = exchange.request.headers;
  bool uses_authorization = settings_.basic || settings_.bearer->header == kAuthorization;
  std::string user;
  std::string why;
  Check bearer = Check::Absent;
  Check basic = Check::Absent;
  if (uses_authorization && headers.count(kAuthorization) > 1) {
    // Which one would the upstream read? Refuse rather than guess.
    why = "more than one Authorization header";
    basic = Check::Failed;
  } else {
    // Bearer first: it costs a hash, basic may cost a crypt.
    if (settings_.bearer) bearer = check_bearer(exchange, why);
    if (bearer != Check::Ok && settings_.basic) {
      std::string basic_why;
      basic = check_basic(exchange, user, basic_why);
      if (basic == Check::Failed) why = basic_why;
    }
    if (bearer == Check::Absent && basic == Check::Absent && uses_authorization &&
        headers.has(kAuthorization)) {
      why = std::string("Authorization scheme not accepted (use ") +
            (settings_.basic && settings_.bearer && settings_.bearer->header == kAuthorization
                 ? "Basic or Bearer"
             : settings_.basic ? "Basic"
                               : "Bearer") +
            ")";
      basic = Check::Failed;
    }
  }

  if (bearer != Check::Ok && basic != Check::Ok) {
    unauthorized_.fetch_add(1, std::memory_order_relaxed);
    bool given = bearer == Check::Failed || basic == Check::Failed;
    if (!given) why = "credentials required";
    return Decision::respond(unauthorized(given, bearer == Check::Failed, why));
  }

  allowed_.fetch_add(1, std::memory_order_relaxed);
  if (basic == Check::Ok) {
    exchange.tags["user"] = user;
    exchange.tags["auth"] = "basic";
    std::lock_guard lock(by_user_mutex_);
    ++by_user_[user];
  } else {
    exchange.tags["auth"] = "bearer";
    bearer_ok_.fetch_add(1, std::memory_order_relaxed);
  }
  if (!settings_.forward_credentials) {
    if (uses_authorization) headers.remove(kAuthorization);
    if (settings_.bearer && settings_.bearer->header != kAuthorization)
      headers.remove(settings_.bearer->header);
  }
  return Decision::proceed();
}

json AccessStage::report() const {
  json by_user = json::object();
  {
    std::lock_guard lock(by_user_mutex_);
    for (const auto& [user, n] : by_user_) by_user[user] = n;
  }
  return {{"allowed", allowed_.load()},
          {"denied_ip", denied_ip_.load()},
          {"unauthorized", unauthorized_.load()},
          {"bearer", bearer_ok_.load()},
          {"by_user", std::move(by_user)}};
}

std::string AccessStage::summary() const {
  std::string out = "access: " + std::to_string(allowed_.load()) + " allowed, " +
                    std::to_string(denied_ip_.load()) + " denied by IP, " +
                    std::to_string(unauthorized_.load()) + " unauthorized";
  if (settings_.bearer) out += ", " + std::to_string(bearer_ok_.load()) + " by token";
  std::lock_guard lock(by_user_mutex_);
  if (!by_user_.empty()) {
    std::string users;
    for (const auto& [user, n] : by_user_)
      users += (users.empty() ? "" : ", ") + user + " " + std::to_string(n);
    out += " (" + users + ")";
  }
  return out;
}

}  // namespace rproxy::stages
