// Cassette model <-> canonical JSON, atomic file I/O, content-addressed bodies and HAR 1.2 conversion.
//
// Document rules beyond cassette.hpp:
//  - Keys are written in this order: rproxy_cassette, interactions; per interaction id, request{method,
//    target, headers, body}, response{status, reason, headers, body, chunks}, duration_ms; per body
//    text|base64|file, size, decoded. "chunks", "duration_ms" and "decoded" are left out when absent/empty.
//  - Text strings (method, target, header names and values, reason) are JSON strings when they are valid
//    UTF-8, else {"base64": "..."} so that obs-text bytes survive (JSON text must be UTF-8).
//  - Reading: id, request, response, method, target and status are required; headers, body, reason,
//    chunks and duration_ms may be left out (empty / absent). Unknown keys are errors.
//    Inline bodies over kInlineLimit and "text" with control characters are accepted (hand-edited
//    files); such text is written back as base64. File names must be 64 lowercase hex digits (they become
//    paths).
//
// HAR export/import: what does not survive cassette -> HAR -> cassette
//  - ids are renumbered 1..N in entry order;
//  - duration_ms of exactly 0 comes back absent (HAR "time" 0 reads as "not timed");
//  - text fields that are not valid UTF-8 are exported as Latin-1 (HAR has no byte form for them);
//  - "decoded" is recomputed from the Content-Encoding header on import.
//  chunks and non-origin-form targets are carried in the "_rproxy_chunks" / "_rproxy_target" extensions.
#include "store/cassette.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <limits>
#include <random>
#include <set>
#include <stdexcept>
#include <system_error>

namespace rproxy::store {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ojson = nlohmann::ordered_json;

// Decoded views are for reading and matching; anything bigger is not worth keeping next to the bytes.
constexpr std::size_t kDecodedLimit = 1024 * 1024;
constexpr std::size_t kReadPiece = 64 * 1024;

// ---------------------------------------------------------------------------------------------------------
// Byte classification and base64

bool is_utf8(std::string_view s) {
  static constexpr std::uint32_t kMinForLength[] = {0, 0, 0x80, 0x800, 0x10000};
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (s.size() - i < len) return false;
    for (std::size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are not UTF-8 (RFC 3629).
    if (cp < kMinForLength[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

// is_text decides between {"text"} and {"base64"}: text must read back byte for byte and stay readable in a
// review, so only tab, CR and LF are allowed among the C0 controls.
bool is_text(std::string_view s) {
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 && c != '\t' && c != '\r' && c != '\n') return false;
  }
  return is_utf8(s);
}

constexpr char kBase64Alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    std::uint32_t v = (static_cast<unsigned char>(in[i]) << 16) |
                      (static_cast<unsigned char>(in[i + 1]) << 8) | static_cast<unsigned char>(in[i + 2]);
    out += kBase64Alphabet[(v >> 18) & 63];
    out += kBase64Alphabet[(v >> 12) & 63];
    out += kBase64Alphabet[(v >> 6) & 63];
    out += kBase64Alphabet[v & 63];
  }
  if (std::size_t rest = in.size() - i; rest > 0) {
    std::uint32_t v = static_cast<unsigned char>(in[i]) << 16;
    if (rest == 2) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    out += kBase64Alphabet[(v >> 18) & 63];
    out += kBase64Alphabet[(v >> 12) & 63];
    out += rest == 2 ? kBase64Alphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Padded base64; ASCII whitespace is skipped because HAR files from other tools may wrap lines.
std::optional<std::string> base64_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size() / 4 * 3);
  std::uint32_t acc = 0;
  int bits = 0;
  std::size_t count = 0;
  std::size_t padding = 0;
  for (char c : in) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    ++count;
    if (c == '=') {
      ++padding;
      continue;
    }
    int v = base64_value(c);
    if (v < 0 || padding > 0) return std::nullopt;
    acc = ((acc << 6) | static_cast<std::uint32_t>(v)) & 0xFFFFFF;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  if (count % 4 != 0 || padding > 2) return std::nullopt;
  return out;
}

bool is_sha256_hex(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// ---------------------------------------------------------------------------------------------------------
// Files

std::string errno_message(int err) {
  return std::error_code(err, std::generic_category()).message();
}

void write_all(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error("cannot write " + path + ": " + errno_message(n < 0 ? errno : EIO));
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

void ensure_dir(const std::string& dir) {
  if (dir.empty()) return;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw std::runtime_error("cannot create directory " + dir + ": " + ec.message());
}

// A rename is only durable once the directory entry is on disk too; failure here loses durability, not data.
void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

std::string parent_dir(const std::string& path) {
  return fs::path(path).parent_path().string();
}

bool regular_file_of_size(const std::string& path, std::uint64_t size) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
         static_cast<std::uint64_t>(st.st_size) == size;
}

// TempFile is a uniquely named file in a directory that disappears unless published; the name is random
// (not mkstemp) so the file gets the umask's permissions like every other recording file.
class TempFile {
 public:
  explicit TempFile(std::string dir) : dir_(std::move(dir)) {
    ensure_dir(dir_);
    std::random_device rd;
    for (int attempt = 0; attempt < 16 && fd_ < 0; ++attempt) {
      char name[32];
      std::snprintf(name, sizeof name, ".tmp-%08x%08x", rd(), rd());
      std::string path = dir_ + "/" + name;
      fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd_ >= 0) {
        path_ = std::move(path);
      } else if (errno != EEXIST) {
        throw std::runtime_error("cannot create a temporary file in " + dir_ + ": " + errno_message(errno));
      }
    }
    if (fd_ < 0) throw std::runtime_error("cannot create a temporary file in " + dir_);
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  void write(std::string_view piece) { write_all(fd_, piece, path_); }

  // publish makes the bytes durable under final_path. Content addressing means an existing file of the same
  // size already holds the same bytes, so ours is dropped instead of replacing it.
  void publish(const std::string& final_path, std::uint64_t size) {
    if (::fsync(fd_) != 0) throw std::runtime_error("cannot write " + path_ + ": " + errno_message(errno));
    int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) throw std::runtime_error("cannot write " + path_ + ": " + errno_message(errno));
    if (regular_file_of_size(final_path, size)) return;  // the destructor drops the temporary file
    if (::rename(path_.c_str(), final_path.c_str()) != 0) {
      throw std::runtime_error("cannot rename " + path_ + " to " + final_path + ": " + errno_message(errno));
    }
    path_.clear();
    fsync_dir(dir_);
  }

 private:
  std::string dir_;
  std::string path_;
  int fd_ = -1;
};

// Sha256 is an incremental OpenSSL digest.
class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) {
    if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1) {
      throw std::runtime_error("SHA-256 is not available");
    }
  }
  void update(std::string_view bytes) {
    if (EVP_DigestUpdate(ctx_.get(), bytes.data(), bytes.size()) != 1)
      throw std::runtime_error("SHA-256 failed");
  }
  std::string hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(ctx_.get(), md, &len) != 1) throw std::runtime_error("SHA-256 failed");
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < len; ++i) {
      out += kHex[md[i] >> 4];
      out += kHex[md[i] & 15];
    }
    return out;
  }

 private:
  struct Free {
    void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> ctx_;
};

// ---------------------------------------------------------------------------------------------------------
// Content-Encoding views

// ByteSource hands out encoded bytes piece by piece (an empty piece ends them) and can start over, so a
// failed zlib/gzip attempt can be retried as raw deflate without holding a large body in memory.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual std::string_view next() = 0;
  virtual void rewind() = 0;
};

class MemorySource : public ByteSource {
 public:
  explicit MemorySource(std::string_view bytes) : bytes_(bytes) {}
  std::string_view next() override {
    auto piece = bytes_.substr(pos_, kReadPiece);  // bounded so it always fits zlib's uInt
    pos_ += piece.size();
    return piece;
  }
  void rewind() override { pos_ = 0; }

 private:
  std::string_view bytes_;
  std::size_t pos_ = 0;
};

class FileSource : public ByteSource {
 public:
  explicit FileSource(const std::string& path)
      : fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)), buf_(kReadPiece) {}
  ~FileSource() override {
    if (fd_ >= 0) ::close(fd_);
  }
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;
  std::string_view next() override {
    if (fd_ < 0) return {};
    for (;;) {
      ssize_t n = ::read(fd_, buf_.data(), buf_.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return {};  // a read error looks like truncation, which makes the decode fail
      return {buf_.data(), static_cast<std::size_t>(n)};
    }
  }
  void rewind() override {
    if (fd_ >= 0) ::lseek(fd_, 0, SEEK_SET);
  }

 private:
  int fd_;
  std::vector<char> buf_;
};

enum class InflateStatus { Ok, TooLarge, Invalid };
struct Inflated {
  InflateStatus status = InflateStatus::Invalid;
  std::string out;
};

// inflate_all decodes a zlib/gzip (window_bits 15+32) or raw deflate (-15) stream. Further gzip members are
// decoded too; bytes after the last complete member are ignored the way browsers ignore them. A raw stream
// must use up all input, since random bytes too often look like the start of a raw deflate stream. With
// keep false the output is only counted (validity checks of bodies of any size).
Inflated inflate_all(ByteSource& src, int window_bits, std::size_t limit, bool keep = true) {
  z_stream zs{};
  if (inflateInit2(&zs, window_bits) != Z_OK) return {};
  struct End {
    z_stream* zs;
    ~End() { inflateEnd(zs); }
  } end{&zs};
  const bool raw = window_bits < 0;
  std::string out;
  std::size_t produced = 0;
  std::size_t complete = 0;  // output up to the end of the last complete stream
  bool any_complete = false;
  bool ended = false;
  auto finished = [&]() -> Inflated {
    if (!any_complete) return {};
    if (keep) out.resize(complete);
    return {InflateStatus::Ok, std::move(out)};
  };
  char buf[32 * 1024];
  for (std::string_view in = src.next(); !in.empty(); in = src.next()) {
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs.avail_in = static_cast<uInt>(in.size());
    for (;;) {
      if (ended) {
        if (zs.avail_in == 0) break;
        if (raw) return {};
        if (inflateReset(&zs) != Z_OK) return finished();
        ended = false;
      }
      zs.next_out = reinterpret_cast<Bytef*>(buf);
      zs.avail_out = sizeof buf;
      int rc = inflate(&zs, Z_NO_FLUSH);
      std::size_t n = sizeof buf - zs.avail_out;
      produced += n;
      if (produced > limit) return {InflateStatus::TooLarge, {}};
      if (keep) out.append(buf, n);
      if (rc == Z_STREAM_END) {
        ended = any_complete = true;
        complete = produced;
        continue;
      }
      if (rc == Z_OK) {
        if (zs.avail_in == 0 && zs.avail_out != 0) break;  // all input used, nothing pending
        continue;
      }
      if (rc == Z_BUF_ERROR) break;  // needs more input
      return finished();             // corrupt data: keep what complete members gave
    }
  }
  return finished();
}

// decodable tells whether the store can build a view for a Content-Encoding: exactly one gzip or deflate
// coding ("identity" aside); stacked or other codings get no view.
bool decodable(std::string_view content_encoding) {
  int codings = 0;
  bool known = true;
  for (auto coding : split_list(content_encoding)) {
    if (iequals(coding, "identity")) continue;
    ++codings;
    known = known && (iequals(coding, "gzip") || iequals(coding, "x-gzip") || iequals(coding, "deflate"));
  }
  return codings == 1 && known;
}

Inflated inflate_any(ByteSource& src, std::size_t limit, bool keep = true) {
  // Servers label zlib streams and raw deflate streams alike as "deflate" (and the odd gzip as deflate).
  Inflated r = inflate_all(src, 15 + 32, limit, keep);
  if (r.status != InflateStatus::Invalid) return r;
  src.rewind();
  return inflate_all(src, -15, limit, keep);
}

std::optional<std::string> decoded_view(ByteSource& src, std::string_view content_encoding) {
  if (!decodable(content_encoding)) return std::nullopt;
  Inflated r = inflate_any(src, kDecodedLimit);
  if (r.status != InflateStatus::Ok || !is_text(r.out)) return std::nullopt;
  return std::move(r.out);
}

// ---------------------------------------------------------------------------------------------------------
// Cassette document: writing

ojson text_or_bytes(const std::string& s) {
  if (is_utf8(s)) return s;
  ojson o = ojson::object();
  o["base64"] = base64_encode(s);
  return o;
}

ojson headers_to_json(const Headers& headers) {
  ojson out = ojson::array();
  for (const auto& h : headers) out.push_back(ojson::array({text_or_bytes(h.name), text_or_bytes(h.value)}));
  return out;
}

ojson body_to_json(const Body& b) {
  ojson o = ojson::object();
  if (!b.file.empty()) {
    o["file"] = b.file;
    o["size"] = b.size;
  } else if (is_text(b.data)) {
    o["text"] = b.data;
  } else {
    o["base64"] = base64_encode(b.data);
  }
  if (b.decoded) {
    ojson d = ojson::object();
    d["text"] = *b.decoded;
    o["decoded"] = std::move(d);
  }
  return o;
}

// ---------------------------------------------------------------------------------------------------------
// Reading JSON with paths in errors

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  throw std::runtime_error(path + ": " + problem);
}

std::string member(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string element(const std::string& path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

std::string found(const json& v) {
  return std::string(" (found ") + v.type_name() + ")";
}

const json& expect_object(const json& v, const std::string& path) {
  if (!v.is_object()) fail(path, "expected an object" + found(v));
  return v;
}

const json& expect_array(const json& v, const std::string& path) {
  if (!v.is_array()) fail(path, "expected an array" + found(v));
  return v;
}

void check_keys(const json& obj, const std::string& path, std::initializer_list<std::string_view> allowed) {
  for (const auto& [key, value] : obj.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
    std::string expected;
    for (auto a : allowed) expected += (expected.empty() ? "" : ", ") + std::string(a);
    fail(member(path, key), "unknown key (expected " + expected + ")");
  }
}

const json* optional_member(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

const json& required_member(const json& obj, const std::string& path, const char* key) {
  const json* v = optional_member(obj, key);
  if (!v) fail(member(path, key), "missing");
  return *v;
}

std::string expect_string(const json& v, const std::string& path) {
  if (!v.is_string()) fail(path, "expected a string" + found(v));
  return v.get<std::string>();
}

// A string, or {"base64": ...} for bytes that are not UTF-8.
std::string expect_text_or_bytes(const json& v, const std::string& path) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.size() == 1 && v.contains("base64") && v["base64"].is_string()) {
    auto bytes = base64_decode(v["base64"].get<std::string>());
    if (!bytes) fail(member(path, "base64"), "invalid base64");
    return *bytes;
  }
  fail(path, "expected a string or {\"base64\": ...}" + found(v));
}

std::optional<std::uint64_t> as_uint(const json& v) {
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_integer() && v.get<std::int64_t>() >= 0)
    return static_cast<std::uint64_t>(v.get<std::int64_t>());
  return std::nullopt;
}

std::uint64_t expect_uint(const json& v, const std::string& path) {
  auto n = as_uint(v);
  if (!n) fail(path, "expected a non-negative integer" + found(v));
  return *n;
}

int expect_status(const json& v, const std::string& path) {
  auto n = as_uint(v);
  if (!n || *n < 100 || *n > 599) fail(path, "expected an integer from 100 to 599");
  return static_cast<int>(*n);
}

Headers headers_from_json(const json& v, const std::string& path) {
  Headers out;
  expect_array(v, path);
  for (std::size_t i = 0; i < v.size(); ++i) {
    const json& h = v[i];
    auto p = element(path, i);
    if (!h.is_array() || h.size() != 2) fail(p, "expected [name, value]");
    out.add(expect_text_or_bytes(h[0], element(p, 0)), expect_text_or_bytes(h[1], element(p, 1)));
  }
  return out;
}

Body body_from_json(const json& v, const std::string& path) {
  expect_object(v, path);
  check_keys(v, path, {"text", "base64", "file", "size", "decoded"});
  int forms = v.contains("text") + v.contains("base64") + v.contains("file");
  if (forms != 1) fail(path, "expected exactly one of \"text\", \"base64\" or \"file\"");
  Body b;
  if (const json* t = optional_member(v, "text")) {
    b.data = expect_string(*t, member(path, "text"));
  } else if (const json* t64 = optional_member(v, "base64")) {
    auto bytes = base64_decode(expect_string(*t64, member(path, "base64")));
    if (!bytes) fail(member(path, "base64"), "invalid base64");
    b.data = std::move(*bytes);
  } else {
    b.file = expect_string(v["file"], member(path, "file"));
    // The name becomes a path under the bodies directory, so it must be exactly a digest.
    if (!is_sha256_hex(b.file))
      fail(member(path, "file"), "expected a lowercase hex SHA-256 (64 characters)");
    b.size = expect_uint(required_member(v, path, "size"), member(path, "size"));
  }
  if (b.file.empty()) {
    if (v.contains("size")) fail(member(path, "size"), "only allowed with \"file\"");
    b.size = b.data.size();
  }
  if (const json* d = optional_member(v, "decoded")) {
    auto dp = member(path, "decoded");
    expect_object(*d, dp);
    check_keys(*d, dp, {"text"});
    b.decoded = expect_string(required_member(*d, dp, "text"), member(dp, "text"));
  }
  return b;
}

std::vector<Chunk> chunks_from_json(const json& v, const std::string& path) {
  std::vector<Chunk> out;
  expect_array(v, path);
  for (std::size_t i = 0; i < v.size(); ++i) {
    const json& c = v[i];
    auto p = element(path, i);
    if (!c.is_array() || c.size() != 2) fail(p, "expected [ms since head, bytes]");
    out.push_back({expect_uint(c[0], element(p, 0)), expect_uint(c[1], element(p, 1))});
  }
  return out;
}

double expect_duration(const json& v, const std::string& path) {
  if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < 0) {
    fail(path, "expected a non-negative number of milliseconds");
  }
  return v.get<double>();
}

Interaction interaction_from_json(const json& v, const std::string& path) {
  expect_object(v, path);
  check_keys(v, path, {"id", "request", "response", "duration_ms"});
  Interaction it;
  auto id_path = member(path, "id");
  auto id = as_uint(required_member(v, path, "id"));
  if (!id || *id == 0) fail(id_path, "expected a positive integer");
  it.id = *id;

  auto rq = member(path, "request");
  const json& req = expect_object(required_member(v, path, "request"), rq);
  check_keys(req, rq, {"method", "target", "headers", "body"});
  it.method = expect_text_or_bytes(required_member(req, rq, "method"), member(rq, "method"));
  if (it.method.empty()) fail(member(rq, "method"), "must not be empty");
  it.target = expect_text_or_bytes(required_member(req, rq, "target"), member(rq, "target"));
  if (it.target.empty()) fail(member(rq, "target"), "must not be empty");
  if (const json* h = optional_member(req, "headers"))
    it.request_headers = headers_from_json(*h, member(rq, "headers"));
  if (const json* b = optional_member(req, "body")) it.request_body = body_from_json(*b, member(rq, "body"));

  auto rs = member(path, "response");
  const json& resp = expect_object(required_member(v, path, "response"), rs);
  check_keys(resp, rs, {"status", "reason", "headers", "body", "chunks"});
  it.status = expect_status(required_member(resp, rs, "status"), member(rs, "status"));
  if (const json* r = optional_member(resp, "reason"))
    it.reason = expect_text_or_bytes(*r, member(rs, "reason"));
  if (const json* h = optional_member(resp, "headers"))
    it.response_headers = headers_from_json(*h, member(rs, "headers"));
  if (const json* b = optional_member(resp, "body"))
    it.response_body = body_from_json(*b, member(rs, "body"));
  if (const json* c = optional_member(resp, "chunks")) it.chunks = chunks_from_json(*c, member(rs, "chunks"));

  if (const json* d = optional_member(v, "duration_ms"))
    it.duration_ms = expect_duration(*d, member(path, "duration_ms"));
  return it;
}

// Calls fn(body, json path of the body) for both bodies of every interaction.
template <typename Fn>
void for_each_body(const Cassette& c, Fn&& fn) {
  for (std::size_t i = 0; i < c.interactions.size(); ++i) {
    auto p = element("interactions", i);
    fn(c.interactions[i].request_body, p + ".request.body");
    fn(c.interactions[i].response_body, p + ".response.body");
  }
}

// ---------------------------------------------------------------------------------------------------------
// HAR helpers

// HAR strings must be UTF-8 and have no byte form for header values; Latin-1 is what obs-text meant.
std::string har_string(std::string_view s) {
  if (is_utf8(s)) return std::string(s);
  std::string out;
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x80) {
      out += ch;
    } else {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

ojson har_headers(const Headers& headers) {
  ojson out = ojson::array();
  for (const auto& h : headers) {
    ojson o = ojson::object();
    o["name"] = har_string(h.name);
    o["value"] = har_string(h.value);
    out.push_back(std::move(o));
  }
  return out;
}

ojson har_query(std::string_view target) {
  ojson out = ojson::array();
  auto q = target.find('?');
  if (q == std::string_view::npos) return out;
  auto query = target.substr(q + 1);
  query = query.substr(0, query.find('#'));
  while (!query.empty()) {
    auto amp = query.find('&');
    auto param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (param.empty()) continue;
    auto eq = param.find('=');
    ojson o = ojson::object();
    o["name"] = har_string(percent_decode(param.substr(0, eq)));
    o["value"] = har_string(eq == std::string_view::npos ? "" : percent_decode(param.substr(eq + 1)));
    out.push_back(std::move(o));
  }
  return out;
}

// Entries get distinct, ordered start times (1 ms apart from the epoch) so viewers keep recording order
// while the file stays free of wall-clock values.
std::string har_start_time(std::size_t index) {
  std::time_t secs = static_cast<std::time_t>(index / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(index % 1000));
  return buf;
}

std::string header_or_empty(const Headers& headers, std::string_view name) {
  auto v = headers.get(name);
  return v ? har_string(*v) : std::string();
}

// Puts a body into a HAR object as text, or as base64 with "encoding" when it is not text.
void har_put_body(ojson& o, const Body& b, const std::string& bodies_dir) {
  std::string bytes = read_body_bytes(b, bodies_dir);
  if (is_text(bytes)) {
    o["text"] = std::move(bytes);
  } else {
    o["text"] = base64_encode(bytes);
    o["encoding"] = "base64";
  }
}

std::string har_url_to_target(const std::string& url, const std::string& path) {
  std::string_view rest = url;
  if (auto scheme = rest.find("://"); scheme != std::string_view::npos) {
    rest.remove_prefix(scheme + 3);
    auto start = rest.find_first_of("/?#");
    rest = start == std::string_view::npos ? std::string_view() : rest.substr(start);
  } else if (rest.empty() || rest[0] != '/') {
    fail(path, "expected an absolute URL");
  }
  rest = rest.substr(0, rest.find('#'));
  if (rest.empty() || rest[0] != '/') return "/" + std::string(rest);
  return std::string(rest);
}

Headers har_headers_from_json(const json& v, const std::string& path) {
  Headers out;
  expect_array(v, path);
  for (std::size_t i = 0; i < v.size(); ++i) {
    auto p = element(path, i);
    const json& h = expect_object(v[i], p);
    std::string name = expect_string(required_member(h, p, "name"), member(p, "name"));
    std::string value = expect_string(required_member(h, p, "value"), member(p, "value"));
    out.add(std::move(name), std::move(value));
  }
  // HTTP/2 captures carry pseudo-header fields, which are not HTTP/1.1 fields; ":authority" is the Host.
  bool has_host = out.has("Host");
  for (auto& h : out.fields()) {
    if (!has_host && h.name == ":authority") {
      h.name = "Host";
      has_host = true;
    }
  }
  auto& f = out.fields();
  f.erase(
      std::remove_if(f.begin(), f.end(), [](const Header& h) { return !h.name.empty() && h.name[0] == ':'; }),
      f.end());
  return out;
}

// Reads {"text", "encoding"} of a HAR postData/content object; a missing text is an empty body.
std::string har_body_bytes(const json* o, const std::string& path) {
  if (!o) return {};
  expect_object(*o, path);
  const json* text = optional_member(*o, "text");
  if (!text) return {};
  std::string s = expect_string(*text, member(path, "text"));
  const json* enc = optional_member(*o, "encoding");
  if (!enc) return s;
  std::string e = expect_string(*enc, member(path, "encoding"));
  if (e != "base64") fail(member(path, "encoding"), "unsupported encoding \"" + e + "\" (expected base64)");
  auto bytes = base64_decode(s);
  if (!bytes) fail(member(path, "text"), "invalid base64");
  return std::move(*bytes);
}

// Per the HAR spec content.text is the decoded body; other tools' captures then still carry the upstream's
// Content-Encoding, which would make a replay send plain bytes labelled gzip. rproxy's own exports keep the
// bytes as sent, so only foreign entries whose text does not decode are fixed up.
void har_fix_decoded_content(Headers& headers, const std::string& bytes) {
  std::string ce = headers.joined("Content-Encoding");
  bool encoded = false;
  for (auto coding : split_list(ce)) encoded = encoded || !iequals(coding, "identity");
  if (!encoded) return;
  if (decodable(ce)) {
    MemorySource src(bytes);
    if (inflate_any(src, std::numeric_limits<std::size_t>::max(), false).status == InflateStatus::Ok) return;
  }
  headers.remove("Content-Encoding");
  if (headers.has("Content-Length")) headers.set("Content-Length", std::to_string(bytes.size()));
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------

CassettePath resolve_cassette_path(const std::string& path) {
  if (path.empty()) throw std::runtime_error("empty cassette path");
  std::error_code ec;
  CassettePath out;
  if (path.back() == '/' || fs::is_directory(path, ec)) {
    std::string dir = path;
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    std::string prefix = dir == "/" ? dir : dir + "/";
    out.json_file = prefix + "cassette.json";
    out.bodies_dir = prefix + "bodies";
    out.directory_form = true;
  } else {
    out.json_file = path;
    out.bodies_dir = path + ".bodies";
  }
  return out;
}

namespace {
ojson interaction_to_json(const Interaction& it) {
  ojson o = ojson::object();
  o["id"] = it.id;
  ojson req = ojson::object();
  req["method"] = text_or_bytes(it.method);
  req["target"] = text_or_bytes(it.target);
  req["headers"] = headers_to_json(it.request_headers);
  req["body"] = body_to_json(it.request_body);
  o["request"] = std::move(req);
  ojson resp = ojson::object();
  resp["status"] = it.status;
  resp["reason"] = text_or_bytes(it.reason);
  resp["headers"] = headers_to_json(it.response_headers);
  resp["body"] = body_to_json(it.response_body);
  if (!it.chunks.empty()) {
    ojson chunks = ojson::array();
    for (const auto& ch : it.chunks) chunks.push_back(ojson::array({ch.at_ms, ch.size}));
    resp["chunks"] = std::move(chunks);
  }
  o["response"] = std::move(resp);
  if (it.duration_ms) o["duration_ms"] = *it.duration_ms;
  return o;
}

// The canonical document is `{"rproxy_cassette": V, "interactions": [...]}` dumped with an indent of 2;
// an interaction's own dump, each line indented by 4, is exactly its text inside that document.
std::string render_element(const Interaction& it) {
  std::string one = interaction_to_json(it).dump(2);
  std::string out;
  out.reserve(one.size() + one.size() / 8 + 8);
  out += "    ";
  for (char ch : one) {
    out += ch;
    if (ch == '\n') out += "    ";
  }
  return out;
}
}  // namespace

nlohmann::ordered_json cassette_to_json(const Cassette& c) {
  ojson doc = ojson::object();
  doc["rproxy_cassette"] = kCassetteVersion;
  ojson interactions = ojson::array();
  for (const auto& it : c.interactions) interactions.push_back(interaction_to_json(it));
  doc["interactions"] = std::move(interactions);
  return doc;
}

void RenderedCassette::append(const Interaction& it) {
  if (count_ > 0) items_ += ",\n";
  items_ += render_element(it);
  ++count_;
}

std::string RenderedCassette::text() const {
  std::string head = "{\n  \"rproxy_cassette\": " + std::to_string(kCassetteVersion) + ",\n  \"interactions\": ";
  if (count_ == 0) return head + "[]\n}\n";
  std::string out;
  out.reserve(head.size() + items_.size() + 16);
  out += head;
  out += "[\n";
  out += items_;
  out += "\n  ]\n}\n";
  return out;
}

Cassette cassette_from_json(const nlohmann::json& doc) {
  expect_object(doc, "cassette");
  // The version comes first so a newer file is reported as such rather than as a pile of unknown keys.
  const json* version = optional_member(doc, "rproxy_cassette");
  if (!version) fail("rproxy_cassette", "missing (not an rproxy cassette?)");
  if (!version->is_number_integer() || version->get<std::int64_t>() != kCassetteVersion) {
    fail("rproxy_cassette", "unsupported version " + version->dump() + " (this rproxy reads version " +
                                std::to_string(kCassetteVersion) + ")");
  }
  check_keys(doc, "", {"rproxy_cassette", "interactions"});
  const json& list = expect_array(required_member(doc, "", "interactions"), "interactions");
  Cassette c;
  std::set<std::uint64_t> ids;
  for (std::size_t i = 0; i < list.size(); ++i) {
    auto p = element("interactions", i);
    c.interactions.push_back(interaction_from_json(list[i], p));
    if (!ids.insert(c.interactions.back().id).second) fail(member(p, "id"), "duplicate id");
  }
  return c;
}

std::string render_cassette(const Cassette& c) {
  return cassette_to_json(c).dump(2) + "\n";
}

Cassette load_cassette(const CassettePath& path) {
  const std::string& file = path.json_file;
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) throw std::runtime_error("no recording at " + file);
    throw std::runtime_error("cannot read " + file + ": " + errno_message(errno));
  }
  std::string text;
  std::vector<char> buf(kReadPiece);
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      throw std::runtime_error("cannot read " + file + ": " + errno_message(err));
    }
    if (n == 0) break;
    text.append(buf.data(), static_cast<std::size_t>(n));
  }
  ::close(fd);

  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::parse_error& e) {
    std::string what = e.what();
    if (auto close = what.find("] "); what.rfind("[json.exception", 0) == 0 && close != std::string::npos) {
      what = what.substr(close + 2);
    }
    throw std::runtime_error(file + ": invalid JSON at byte " + std::to_string(e.byte) + ": " + what);
  }
  Cassette c;
  try {
    c = cassette_from_json(doc);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(file + ": " + e.what());
  }
  // A missing body file would otherwise surface only when a replay reaches that interaction.
  for_each_body(c, [&](const Body& b, const std::string& p) {
    if (b.file.empty()) return;
    auto body_path = body_file_path(b, path.bodies_dir);
    if (!regular_file_of_size(body_path, b.size)) {
      fail(file + ": " + p + ".file",
           "body file " + body_path + " is missing or not " + std::to_string(b.size) + " bytes");
    }
  });
  return c;
}

void check_body_files(const CassettePath& path, const Interaction& it, const std::string& where) {
  for (const auto* b : {&it.request_body, &it.response_body}) {
    if (!b->file.empty() && !regular_file_of_size(body_file_path(*b, path.bodies_dir), b->size)) {
      fail(path.json_file + ": " + where + (b == &it.request_body ? ".request.body" : ".response.body") + ".file",
           "body file is not in " + path.bodies_dir);
    }
  }
}

void save_cassette(const CassettePath& path, const Cassette& c) {
  for (std::size_t i = 0; i < c.interactions.size(); ++i)
    check_body_files(path, c.interactions[i], element("interactions", i));
  save_cassette_text(path, render_cassette(c));
}

void save_cassette_text(const CassettePath& path, const std::string& text) {
  std::string dir = parent_dir(path.json_file);
  ensure_dir(dir);
  if (path.directory_form) ensure_dir(path.bodies_dir);

  std::string tmp = path.json_file + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) throw std::runtime_error("cannot write " + tmp + ": " + errno_message(errno));
  try {
    write_all(fd, text, tmp);
    if (::fsync(fd) != 0) throw std::runtime_error("cannot write " + tmp + ": " + errno_message(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0 || ::rename(tmp.c_str(), path.json_file.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw std::runtime_error("cannot write " + path.json_file + ": " + errno_message(err));
  }
  fsync_dir(dir);
}

Body make_body(std::string bytes, const std::string& bodies_dir, const std::string& content_encoding) {
  Body b;
  b.size = bytes.size();
  MemorySource src(bytes);
  b.decoded = decoded_view(src, content_encoding);
  if (bytes.size() <= kInlineLimit) {
    b.data = std::move(bytes);
    return b;
  }
  b.file = sha256_hex(bytes);
  auto file_path = body_file_path(b, bodies_dir);
  if (!regular_file_of_size(file_path, b.size)) {
    TempFile tmp(bodies_dir);
    tmp.write(bytes);
    tmp.publish(file_path, b.size);
  }
  return b;
}

struct BodyWriter::State {
  std::string dir;
  std::string buffer;             // the bytes while they fit kInlineLimit
  std::optional<TempFile> spill;  // everything once they do not
  std::optional<Sha256> sha;
  bool finished = false;
};

BodyWriter::BodyWriter(std::string bodies_dir) : state_(std::make_unique<State>()) {
  state_->dir = std::move(bodies_dir);
}

BodyWriter::~BodyWriter() = default;  // an unpublished TempFile removes itself

void BodyWriter::write(std::string_view piece) {
  State& s = *state_;
  if (s.finished) throw std::logic_error("BodyWriter::write after finish");
  if (!s.spill) {
    if (s.buffer.size() + piece.size() <= kInlineLimit) {
      // Grow by hand: doubling past kInlineLimit would break the memory bound.
      if (s.buffer.capacity() < s.buffer.size() + piece.size()) {
        s.buffer.reserve(
            std::min(kInlineLimit, std::max(s.buffer.size() + piece.size(), 2 * s.buffer.capacity())));
      }
      s.buffer.append(piece);
      size_ += piece.size();
      return;
    }
    s.spill.emplace(s.dir);
    s.sha.emplace();
    s.spill->write(s.buffer);
    s.sha->update(s.buffer);
    std::string().swap(s.buffer);
  }
  s.spill->write(piece);
  s.sha->update(piece);
  size_ += piece.size();
}

Body BodyWriter::finish(const std::string& content_encoding) {
  State& s = *state_;
  if (s.finished) throw std::logic_error("BodyWriter::finish called twice");
  s.finished = true;
  Body b;
  b.size = size_;
  if (!s.spill) {
    MemorySource src(s.buffer);
    b.decoded = decoded_view(src, content_encoding);
    b.data = std::move(s.buffer);
    return b;
  }
  b.file = s.sha->hex();
  auto file_path = body_file_path(b, s.dir);
  s.spill->publish(file_path, size_);
  s.spill.reset();
  if (decodable(content_encoding)) {
    FileSource src(file_path);
    b.decoded = decoded_view(src, content_encoding);
  }
  return b;
}

std::string read_body_bytes(const Body& b, const std::string& bodies_dir) {
  if (b.file.empty()) return b.data;
  auto file_path = body_file_path(b, bodies_dir);
  int fd = ::open(file_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot read body file " + file_path + ": " + errno_message(errno));
  std::string out;
  out.resize(b.size);
  std::size_t got = 0;
  while (got < out.size()) {
    ssize_t n = ::read(fd, out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  char extra = 0;
  bool longer = got == out.size() && ::read(fd, &extra, 1) > 0;
  ::close(fd);
  if (got != out.size() || longer) {
    throw std::runtime_error("body file " + file_path + " is not " + std::to_string(b.size) + " bytes");
  }
  return out;
}

std::string body_file_path(const Body& b, const std::string& bodies_dir) {
  if (b.file.empty()) return "";
  return bodies_dir + "/" + b.file;
}

nlohmann::ordered_json cassette_to_har(const Cassette& c, const std::string& bodies_dir) {
  ojson entries = ojson::array();
  for (std::size_t i = 0; i < c.interactions.size(); ++i) {
    const Interaction& it = c.interactions[i];
    ojson e = ojson::object();
    e["startedDateTime"] = har_start_time(i);
    if (it.duration_ms) {
      e["time"] = *it.duration_ms;
    } else {
      e["time"] = 0;
    }

    std::string url;
    bool origin_form = !it.target.empty() && it.target[0] == '/';
    if (origin_form || it.target.find("://") == std::string::npos) {
      auto host = it.request_headers.get("Host");
      url = "http://" + (host ? std::string(*host) : std::string("rproxy.invalid")) +
            (origin_form ? it.target : "/");
    } else {
      url = it.target;  // absolute-form already is a URL
    }
    ojson req = ojson::object();
    req["method"] = har_string(it.method);
    req["url"] = har_string(url);
    req["httpVersion"] = "HTTP/1.1";
    req["cookies"] = ojson::array();
    req["headers"] = har_headers(it.request_headers);
    req["queryString"] = har_query(it.target);
    if (it.request_body.size > 0) {
      ojson post = ojson::object();
      post["mimeType"] = header_or_empty(it.request_headers, "Content-Type");
      har_put_body(post, it.request_body, bodies_dir);
      req["postData"] = std::move(post);
    }
    req["headersSize"] = -1;
    req["bodySize"] = it.request_body.size;
    e["request"] = std::move(req);

    ojson resp = ojson::object();
    resp["status"] = it.status;
    resp["statusText"] = har_string(it.reason);
    resp["httpVersion"] = "HTTP/1.1";
    resp["cookies"] = ojson::array();
    resp["headers"] = har_headers(it.response_headers);
    ojson content = ojson::object();
    content["size"] = it.response_body.size;
    content["mimeType"] = header_or_empty(it.response_headers, "Content-Type");
    har_put_body(content, it.response_body, bodies_dir);
    resp["content"] = std::move(content);
    resp["redirectURL"] = header_or_empty(it.response_headers, "Location");
    resp["headersSize"] = -1;
    resp["bodySize"] = it.response_body.size;
    e["response"] = std::move(resp);

    e["cache"] = ojson::object();
    ojson timings = ojson::object();
    timings["send"] = 0;
    timings["wait"] = e["time"];
    timings["receive"] = 0;
    e["timings"] = std::move(timings);
    e["_rproxy_id"] = it.id;
    if (!origin_form) e["_rproxy_target"] = har_string(it.target);
    if (!it.chunks.empty()) {
      ojson chunks = ojson::array();
      for (const auto& ch : it.chunks) chunks.push_back(ojson::array({ch.at_ms, ch.size}));
      e["_rproxy_chunks"] = std::move(chunks);
    }
    entries.push_back(std::move(e));
  }
  ojson creator = ojson::object();
  creator["name"] = "rproxy";
  creator["version"] = "1";
  ojson log = ojson::object();
  log["version"] = "1.2";
  log["creator"] = std::move(creator);
  log["entries"] = std::move(entries);
  ojson har = ojson::object();
  har["log"] = std::move(log);
  return har;
}

Cassette cassette_from_har(const nlohmann::json& har, const std::string& bodies_dir) {
  expect_object(har, "HAR");
  const json& log = expect_object(required_member(har, "", "log"), "log");
  const json& entries = expect_array(required_member(log, "log", "entries"), "log.entries");
  Cassette c;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    auto p = element("log.entries", i);
    const json& e = expect_object(entries[i], p);
    Interaction it;
    it.id = i + 1;

    auto rq = member(p, "request");
    const json& req = expect_object(required_member(e, p, "request"), rq);
    it.method = expect_string(required_member(req, rq, "method"), member(rq, "method"));
    if (it.method.empty()) fail(member(rq, "method"), "must not be empty");
    auto url_path = member(rq, "url");
    it.target = har_url_to_target(expect_string(required_member(req, rq, "url"), url_path), url_path);
    if (const json* t = optional_member(e, "_rproxy_target"))
      it.target = expect_string(*t, member(p, "_rproxy_target"));
    if (const json* h = optional_member(req, "headers"))
      it.request_headers = har_headers_from_json(*h, member(rq, "headers"));
    std::string request_bytes = har_body_bytes(optional_member(req, "postData"), member(rq, "postData"));
    it.request_body =
        make_body(std::move(request_bytes), bodies_dir, it.request_headers.joined("Content-Encoding"));

    auto rs = member(p, "response");
    const json& resp = expect_object(required_member(e, p, "response"), rs);
    it.status = expect_status(required_member(resp, rs, "status"), member(rs, "status"));
    if (const json* st = optional_member(resp, "statusText"))
      it.reason = expect_string(*st, member(rs, "statusText"));
    if (const json* h = optional_member(resp, "headers")) {
      it.response_headers = har_headers_from_json(*h, member(rs, "headers"));
    }
    std::string response_bytes = har_body_bytes(optional_member(resp, "content"), member(rs, "content"));
    if (!e.contains("_rproxy_id")) har_fix_decoded_content(it.response_headers, response_bytes);
    it.response_body =
        make_body(std::move(response_bytes), bodies_dir, it.response_headers.joined("Content-Encoding"));

    if (const json* ch = optional_member(e, "_rproxy_chunks"))
      it.chunks = chunks_from_json(*ch, member(p, "_rproxy_chunks"));
    if (const json* t = optional_member(e, "time")) {
      // Browsers write -1 for "unknown"; 0 is what an untimed rproxy export writes.
      if (!t->is_number()) fail(member(p, "time"), "expected a number" + found(*t));
      double ms = t->get<double>();
      if (std::isfinite(ms) && ms > 0) it.duration_ms = ms;
    }
    c.interactions.push_back(std::move(it));
  }
  return c;
}

std::string sha256_hex(std::string_view bytes) {
  Sha256 sha;
  sha.update(bytes);
  return sha.hex();
}

}  // namespace rproxy::store
