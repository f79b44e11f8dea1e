// Cassette: rproxy's recording format (version 1). A cassette is an ordered list of interactions (one
// request and the response the upstream gave), stored as canonical, review-friendly JSON: stable key order,
// two-space indent, headers in wire order with duplicates kept, no wall-clock values unless timing was
// asked for. Recording the same traffic twice gives byte-identical files.
//
// Forms: a file ("recording.json", large bodies in "recording.json.bodies/") or a directory ("DIR/" holding
// "cassette.json" and "bodies/"). Bodies are stored as
//   {"text": "..."}                         valid UTF-8 without NUL, at most kInlineLimit bytes
//   {"base64": "..."}                       other bytes, at most kInlineLimit bytes
//   {"file": "<sha256>", "size": N}         larger bodies, content-addressed under the bodies directory
// plus, for a Content-Encoding the store can decode (gzip, deflate), "decoded": {"text": ...} — a view
// for reading and matching; the stored bytes stay exactly what the upstream sent.
//
//   {"rproxy_cassette": 1,
//    "interactions": [
//      {"id": 1,
//       "request":  {"method": "GET", "target": "/a?x=1", "headers": [["Host", "api"], ...], "body": {...}},
//       "response": {"status": 200, "reason": "OK", "headers": [...], "body": {...},
//                    "chunks": [[0, 120], [35, 80]]},   // streamed responses: [ms since head, bytes]
//       "duration_ms": 12}]}                           // only when timing is recorded
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rproxy/http.hpp"

namespace rproxy {
// Headers equality (order, duplicates and spelling all count): the defaulted comparisons below need it and
// http.hpp declares none. Belongs in http.hpp as a defaulted member once that header may change.
inline bool operator==(const Headers& a, const Headers& b) { return a.fields() == b.fields(); }
}  // namespace rproxy

namespace rproxy::store {

inline constexpr int kCassetteVersion = 1;
inline constexpr std::size_t kInlineLimit = 64 * 1024;

// Body is a message body as stored: its bytes inline, or a reference to a content-addressed file.
struct Body {
  std::string data;        // the bytes when inline (kept when size <= kInlineLimit)
  std::string file;        // sha256 hex of the bytes when stored in the bodies directory; "" = inline
  std::uint64_t size = 0;  // always set
  std::optional<std::string> decoded;  // decoded text view (Content-Encoding gzip/deflate), if any
  bool operator==(const Body&) const = default;
};

struct Chunk {
  std::uint64_t at_ms = 0;  // since the response head
  std::uint64_t size = 0;
  bool operator==(const Chunk&) const = default;
};

struct Interaction {
  std::uint64_t id = 0;  // 1, 2, ... in recording order
  std::string method;
  std::string target;    // origin-form, query included
  Headers request_headers;
  Body request_body;
  int status = 0;
  std::string reason;
  Headers response_headers;
  Body response_body;
  std::vector<Chunk> chunks;             // empty unless the response was streamed (chunked or SSE)
  std::optional<double> duration_ms;     // only with timing
  bool operator==(const Interaction&) const = default;
};

struct Cassette {
  std::vector<Interaction> interactions;
  bool operator==(const Cassette&) const = default;
};

// CassettePath resolves the user's path into the JSON file and the bodies directory.
struct CassettePath {
  std::string json_file;
  std::string bodies_dir;
  bool directory_form = false;
};
// resolve_cassette_path: an existing directory, or a path ending in "/", is the directory form;
// anything else is the file form.
CassettePath resolve_cassette_path(const std::string& path);

// to_json / cassette_from_json convert the model to and from the document (bodies stay references).
nlohmann::ordered_json cassette_to_json(const Cassette& c);
// Throws std::runtime_error naming the JSON path of the first problem ("interactions[3].response.status: ...").
Cassette cassette_from_json(const nlohmann::json& doc);

// render_cassette is the canonical text of the document (what is written to disk).
std::string render_cassette(const Cassette& c);

// RenderedCassette is the canonical text of a growing recording, kept rendered: appending renders only the
// new interaction, so saving a recording of N exchanges costs the write, not N renderings.
// text() == render_cassette(a cassette of the same interactions).
class RenderedCassette {
 public:
  void append(const Interaction& it);
  std::string text() const;
  std::size_t count() const { return count_; }

 private:
  std::string items_;  // the rendered interactions, joined by ",\n"
  std::size_t count_ = 0;
};

// load_cassette reads a cassette (ConfigError-style messages in std::runtime_error: file, JSON path).
Cassette load_cassette(const CassettePath& path);
// save_cassette writes the JSON atomically (temp file + rename); bodies must already be in bodies_dir.
void save_cassette(const CassettePath& path, const Cassette& c);
// save_cassette_text writes already rendered text the same way (temp file, fsync, rename).
void save_cassette_text(const CassettePath& path, const std::string& text);
// check_body_files throws, naming `where` (a JSON path), when a body of `it` is not in bodies_dir.
void check_body_files(const CassettePath& path, const Interaction& it, const std::string& where);

// make_body builds a Body from bytes: inline text or base64 under the limit, else written to bodies_dir
// as <sha256> (if not already there) and referenced. content_encoding fills `decoded` when it can.
Body make_body(std::string bytes, const std::string& bodies_dir, const std::string& content_encoding = "");
// BodyWriter builds a Body from bytes that arrive piece by piece, in bounded memory: up to kInlineLimit
// bytes are kept; beyond that everything goes to a temporary file in bodies_dir (created if needed) while
// a SHA-256 runs, and finish() renames it to <sha256> (or drops it when that file already exists).
// Destroying an unfinished writer removes its temporary file.
class BodyWriter {
 public:
  explicit BodyWriter(std::string bodies_dir);
  ~BodyWriter();
  BodyWriter(const BodyWriter&) = delete;
  BodyWriter& operator=(const BodyWriter&) = delete;
  void write(std::string_view piece);  // throws std::runtime_error on I/O failure
  Body finish(const std::string& content_encoding = "");
  std::uint64_t size() const { return size_; }

 private:
  struct State;
  std::unique_ptr<State> state_;
  std::uint64_t size_ = 0;
};

// read_body_bytes returns the bytes of a body (reading the file for file bodies).
std::string read_body_bytes(const Body& b, const std::string& bodies_dir);
// body_file_path is where a file body lives.
std::string body_file_path(const Body& b, const std::string& bodies_dir);

// HAR 1.2 (http://www.softwareishard.com/blog/har-12-spec/): export keeps headers, status, bodies
// (response content as text or base64; request postData as text, or base64 with the 1.3 "encoding");
// import reads entries in order. Bodies over kInlineLimit go to bodies_dir as usual.
nlohmann::ordered_json cassette_to_har(const Cassette& c, const std::string& bodies_dir);
Cassette cassette_from_har(const nlohmann::json& har, const std::string& bodies_dir);

// Hex SHA-256 of bytes (OpenSSL), used for content addressing.
std::string sha256_hex(std::string_view bytes);

}  // namespace rproxy::store
