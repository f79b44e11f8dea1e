// Unit tests for lib/store/cassette: canonical JSON, validation messages, atomic save/load, content-addressed
// bodies (make_body, BodyWriter), decoded views and HAR 1.2 conversion.
#include "store/cassette.hpp"

#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <string>

using namespace rproxy;
using namespace rproxy::store;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// TempDir is a fresh directory under /tmp, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/rproxy-cassette-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_file(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  out << data;
}

std::size_t count_files(const std::string& dir) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
  return n;
}

// Compresses with zlib: window_bits 31 = gzip, 15 = zlib, -15 = raw deflate.
std::string compress(const std::string& data, int window_bits) {
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&zs, static_cast<uLong>(data.size())), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

// Deterministic bytes: letters (poorly compressible text) or any byte value.
std::string pseudo_random(std::size_t n, bool text, unsigned seed = 1) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (auto& c : out) c = text ? static_cast<char>('a' + rng() % 26) : static_cast<char>(rng() & 0xFF);
  return out;
}

Interaction sample(std::uint64_t id) {
  Interaction it;
  it.id = id;
  it.method = "GET";
  it.target = "/a?x=1";
  it.request_headers = {{"Host", "api"}, {"Accept", "*/*"}};
  it.status = 200;
  it.reason = "OK";
  it.response_headers = {{"Content-Type", "text/plain"}};
  it.response_body.data = "hi";
  it.response_body.size = 2;
  return it;
}

Body inline_body(std::string data) {
  Body b;
  b.size = data.size();
  b.data = std::move(data);
  return b;
}

std::string from_json_error(const json& doc) {
  try {
    cassette_from_json(doc);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "(no error)";
}

json valid_doc() {
  return json::parse(render_cassette(Cassette{{sample(1), sample(2), sample(3)}}));
}

}  // namespace

TEST_CASE("cassette: render is canonical, ordered and ends with a newline") {
  Cassette c{{sample(1)}};
  const char* expected = R"({
  "rproxy_cassette": 1,
  "interactions": [
    {
      "id": 1,
      "request": {
        "method": "GET",
        "target": "/a?x=1",
        "headers": [
          [
            "Host",
            "api"
          ],
          [
            "Accept",
            "*/*"
          ]
        ],
        "body": {
          "text": ""
        }
      },
      "response": {
        "status": 200,
        "reason": "OK",
        "headers": [
          [
            "Content-Type",
            "text/plain"
          ]
        ],
        "body": {
          "text": "hi"
        }
      }
    }
  ]
}
)";
  CHECK(render_cassette(c) == expected);
  CHECK(render_cassette(c) == render_cassette(c));
}

TEST_CASE("cassette: a RenderedCassette grown one interaction at a time renders the canonical text") {
  RenderedCassette r;
  Cassette c;
  CHECK(r.text() == render_cassette(c));
  Interaction streamed = sample(2);
  streamed.chunks = {{0, 120}, {35, 80}};
  streamed.duration_ms = 12.5;
  streamed.response_body.decoded = "plain\nwith a newline";
  for (const auto& it : {sample(1), streamed, sample(3)}) {
    r.append(it);
    c.interactions.push_back(it);
    CHECK(r.count() == c.interactions.size());
    CHECK(r.text() == render_cassette(c));
  }
}

TEST_CASE("cassette: optional keys appear in their fixed places") {
  Interaction it = sample(7);
  it.chunks = {{0, 120}, {35, 80}};
  it.duration_ms = 12.5;
  it.response_body.decoded = "plain";
  auto doc = cassette_to_json(Cassette{{it}});
  const auto& o = doc["interactions"][0];
  std::vector<std::string> keys;
  for (const auto& [k, v] : o.items()) keys.push_back(k);
  CHECK(keys == std::vector<std::string>{"id", "request", "response", "duration_ms"});
  keys.clear();
  for (const auto& [k, v] : o["response"].items()) keys.push_back(k);
  CHECK(keys == std::vector<std::string>{"status", "reason", "headers", "body", "chunks"});
  CHECK(o["response"]["chunks"].dump() == "[[0,120],[35,80]]");
  CHECK(o["response"]["body"].dump() == R"({"text":"hi","decoded":{"text":"plain"}})");
  CHECK(o["duration_ms"].get<double>() == 12.5);
}

TEST_CASE("cassette: bodies are text, base64 or file references") {
  CHECK(cassette_to_json(Cassette{{sample(1)}})["interactions"][0]["request"]["body"].dump() ==
        R"({"text":""})");

  auto body_json = [](const Body& b) {
    Interaction it = sample(1);
    it.response_body = b;
    return cassette_to_json(Cassette{{it}})["interactions"][0]["response"]["body"].dump();
  };
  CHECK(body_json(inline_body("tab\there\r\nok \xc3\xa9")) == "{\"text\":\"tab\\there\\r\\nok \xc3\xa9\"}");
  CHECK(body_json(inline_body(std::string("a\0b", 3))) == R"({"base64":"YQBi"})");
  CHECK(body_json(inline_body("bell\x07")) == R"({"base64":"YmVsbAc="})");
  CHECK(body_json(inline_body("\xff\xfe")) == R"({"base64":"//4="})");
  CHECK(body_json(inline_body("\xc0\xaf")) == R"({"base64":"wK8="})");      // overlong '/'
  CHECK(body_json(inline_body("\xed\xa0\x80")) == R"({"base64":"7aCA"})");  // surrogate
  CHECK(body_json(inline_body("\x7f")) == "{\"text\":\"\x7f\"}");           // DEL is not C0
  Body file;
  file.file = std::string(64, 'a');
  file.size = 100000;
  CHECK(body_json(file) == R"({"file":")" + std::string(64, 'a') + R"(","size":100000})");
}

TEST_CASE("cassette: JSON round trip keeps every field") {
  TempDir dir;
  Interaction a = sample(1);
  a.method = "POST";
  a.request_headers.add("X-Dup", "1");
  a.request_headers.add("x-dup", "2");
  a.request_headers.add("X-Obs", "caf\xe9");  // obs-text, not UTF-8
  a.request_body = make_body(std::string("\x00\x01\x02", 3), dir.path());
  a.reason = "Fine\xff";
  a.response_body = make_body(compress("hello gzip", 31), dir.path(), "gzip");
  a.chunks = {{0, 5}, {10, 6}};
  a.duration_ms = 3.25;
  Interaction b = sample(2);
  b.response_body = make_body(pseudo_random(kInlineLimit + 1, false), dir.path());
  Interaction c = sample(3);
  c.target = "/q?s=\xe2\x82\xac";
  c.status = 599;
  c.reason = "";
  c.response_headers = {};
  c.duration_ms = 0.0;
  Cassette orig{{a, b, c}};

  CHECK(cassette_from_json(cassette_to_json(orig)) == orig);
  CHECK(cassette_from_json(json::parse(render_cassette(orig))) == orig);
  auto doc = cassette_to_json(orig);
  CHECK(doc["interactions"][0]["request"]["headers"][4].dump() == R"(["X-Obs",{"base64":"Y2Fm6Q=="}])");
  CHECK(doc["interactions"][0]["response"]["reason"].dump() == R"({"base64":"RmluZf8="})");
  CHECK(doc["interactions"][0]["response"]["body"]["decoded"]["text"] == "hello gzip");
}

TEST_CASE("cassette: cassette_from_json names the JSON path of the problem") {
  auto doc = valid_doc();
  CHECK(from_json_error(doc) == "(no error)");

  auto d = doc;
  d["interactions"][2]["response"]["status"] = 42;
  CHECK(from_json_error(d) == "interactions[2].response.status: expected an integer from 100 to 599");
  d["interactions"][2]["response"]["status"] = "200";
  CHECK(from_json_error(d) == "interactions[2].response.status: expected an integer from 100 to 599");

  d = doc;
  d["rproxy_cassette"] = 2;
  CHECK(from_json_error(d) == "rproxy_cassette: unsupported version 2 (this rproxy reads version 1)");
  d.erase("rproxy_cassette");
  CHECK(from_json_error(d) == "rproxy_cassette: missing (not an rproxy cassette?)");
  CHECK(from_json_error(json::array()) == "cassette: expected an object (found array)");

  d = doc;
  d["extra"] = true;
  CHECK(from_json_error(d) == "extra: unknown key (expected rproxy_cassette, interactions)");
  d = doc;
  d["interactions"][1]["request"]["query"] = "x";
  CHECK(from_json_error(d) ==
        "interactions[1].request.query: unknown key (expected method, target, headers, body)");
  d = doc;
  d["interactions"][0]["request"].erase("method");
  CHECK(from_json_error(d) == "interactions[0].request.method: missing");
  d = doc;
  d["interactions"][0]["request"]["headers"][1] = json::array({"Accept"});
  CHECK(from_json_error(d) == "interactions[0].request.headers[1]: expected [name, value]");
  d = doc;
  d["interactions"][0]["request"]["headers"][1][1] = 5;
  CHECK(from_json_error(d) ==
        "interactions[0].request.headers[1][1]: expected a string or {\"base64\": ...} (found number)");
  d = doc;
  d["interactions"][0]["response"]["body"] = {{"base64", "***"}};
  CHECK(from_json_error(d) == "interactions[0].response.body.base64: invalid base64");
  d["interactions"][0]["response"]["body"] = {{"text", "a"}, {"base64", "YQ=="}};
  CHECK(from_json_error(d) ==
        "interactions[0].response.body: expected exactly one of \"text\", \"base64\" or \"file\"");
  d["interactions"][0]["response"]["body"] = {{"file", "../../etc/passwd"}, {"size", 1}};
  CHECK(from_json_error(d) ==
        "interactions[0].response.body.file: expected a lowercase hex SHA-256 (64 characters)");
  d["interactions"][0]["response"]["body"] = {{"file", std::string(64, 'b')}};
  CHECK(from_json_error(d) == "interactions[0].response.body.size: missing");
  d["interactions"][0]["response"]["body"] = {{"text", "a"}, {"size", 1}};
  CHECK(from_json_error(d) == "interactions[0].response.body.size: only allowed with \"file\"");
  d = doc;
  d["interactions"][1]["id"] = 1;
  CHECK(from_json_error(d) == "interactions[1].id: duplicate id");
  d["interactions"][1]["id"] = 0;
  CHECK(from_json_error(d) == "interactions[1].id: expected a positive integer");
  d = doc;
  d["interactions"][0]["duration_ms"] = -1;
  CHECK(from_json_error(d) == "interactions[0].duration_ms: expected a non-negative number of milliseconds");
  d = doc;
  d["interactions"][0]["response"]["chunks"] = json::array({json::array({0, -5})});
  CHECK(from_json_error(d) ==
        "interactions[0].response.chunks[0][1]: expected a non-negative integer (found number)");
}

TEST_CASE("cassette: optional members may be left out when reading") {
  auto doc = json::parse(R"({"rproxy_cassette": 1, "interactions": [
      {"id": 4, "request": {"method": "GET", "target": "/"}, "response": {"status": 204}}]})");
  auto c = cassette_from_json(doc);
  REQUIRE(c.interactions.size() == 1);
  CHECK(c.interactions[0].id == 4);
  CHECK(c.interactions[0].request_headers.empty());
  CHECK(c.interactions[0].response_body == Body{});
  CHECK(c.interactions[0].reason.empty());
  CHECK(!c.interactions[0].duration_ms);
}

TEST_CASE("cassette: resolve_cassette_path picks the file or directory form") {
  TempDir dir;
  auto file = resolve_cassette_path(dir / "rec.json");
  CHECK(file.json_file == dir / "rec.json");
  CHECK(file.bodies_dir == dir / "rec.json.bodies");
  CHECK(!file.directory_form);

  auto slash = resolve_cassette_path(dir / "rec/");
  CHECK(slash.json_file == dir / "rec/cassette.json");
  CHECK(slash.bodies_dir == dir / "rec/bodies");
  CHECK(slash.directory_form);

  auto existing = resolve_cassette_path(dir.path());
  CHECK(existing.json_file == dir / "cassette.json");
  CHECK(existing.bodies_dir == dir / "bodies");
  CHECK(existing.directory_form);
  CHECK_THROWS_AS(resolve_cassette_path(""), std::runtime_error);
}

TEST_CASE("cassette: save and load in file and directory form") {
  TempDir dir;
  for (const std::string& user_path : {dir / "deep/nested/rec.json", dir / "recdir/"}) {
    CAPTURE(user_path);
    auto path = resolve_cassette_path(user_path);
    Interaction big = sample(2);
    big.response_body = make_body(pseudo_random(200000, true), path.bodies_dir);
    Cassette c{{sample(1), big}};
    save_cassette(path, c);
    CHECK(read_file(path.json_file) == render_cassette(c));
    CHECK(!fs::exists(path.json_file + ".tmp"));
    CHECK(fs::is_regular_file(body_file_path(big.response_body, path.bodies_dir)));
    CHECK(load_cassette(path) == c);
    CHECK(load_cassette(resolve_cassette_path(user_path)) == c);  // the directory exists now

    c.interactions.pop_back();  // saving again replaces the file atomically
    save_cassette(path, c);
    CHECK(load_cassette(path) == c);
  }
  CHECK(fs::is_directory(dir / "recdir/bodies"));
}

TEST_CASE("cassette: save refuses file bodies that are not in the bodies directory") {
  TempDir dir;
  Interaction it = sample(1);
  it.response_body.data.clear();
  it.response_body.file = std::string(64, 'c');
  it.response_body.size = 70000;
  auto path = resolve_cassette_path(dir / "rec.json");
  CHECK_THROWS_WITH_AS(
      save_cassette(path, Cassette{{it}}),
      (path.json_file + ": interactions[0].response.body.file: body file is not in " + path.bodies_dir)
          .c_str(),
      std::runtime_error);
  CHECK(!fs::exists(path.json_file));
}

TEST_CASE("cassette: load errors name the file and the problem") {
  TempDir dir;
  auto missing = resolve_cassette_path(dir / "none.json");
  CHECK_THROWS_WITH_AS(load_cassette(missing), ("no recording at " + dir / "none.json").c_str(),
                       std::runtime_error);

  auto bad = resolve_cassette_path(dir / "bad.json");
  write_file(bad.json_file, "{\"rproxy_cassette\": 1,\n \"interactions\": [}");
  try {
    load_cassette(bad);
    FAIL("expected an error");
  } catch (const std::runtime_error& e) {
    std::string msg = e.what();
    CHECK(msg.rfind(bad.json_file + ": invalid JSON at byte 42: ", 0) == 0);
    CHECK(msg.find("[json.exception") == std::string::npos);
  }

  write_file(bad.json_file, R"({"rproxy_cassette": 3, "interactions": []})");
  CHECK_THROWS_WITH_AS(
      load_cassette(bad),
      (bad.json_file + ": rproxy_cassette: unsupported version 3 (this rproxy reads version 1)").c_str(),
      std::runtime_error);

  Interaction it = sample(1);
  it.response_body = make_body(pseudo_random(kInlineLimit + 10, false), bad.bodies_dir);
  save_cassette(bad, Cassette{{it}});
  fs::remove(body_file_path(it.response_body, bad.bodies_dir));
  CHECK_THROWS_WITH_AS(load_cassette(bad),
                       (bad.json_file + ": interactions[0].response.body.file: body file " +
                        body_file_path(it.response_body, bad.bodies_dir) + " is missing or not " +
                        std::to_string(kInlineLimit + 10) + " bytes")
                           .c_str(),
                       std::runtime_error);
}

TEST_CASE("cassette: sha256_hex matches the standard vectors") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("cassette: make_body inlines up to the limit and stores larger bodies once by digest") {
  TempDir dir;
  auto bodies = dir / "bodies";
  auto at_limit = pseudo_random(kInlineLimit, false);
  Body small = make_body(at_limit, bodies);
  CHECK(small.data == at_limit);
  CHECK(small.file.empty());
  CHECK(small.size == kInlineLimit);
  CHECK(!fs::exists(bodies));  // nothing to store yet

  auto over = pseudo_random(kInlineLimit + 1, false);
  Body big = make_body(over, bodies);
  CHECK(big.data.empty());
  CHECK(big.file == sha256_hex(over));
  CHECK(big.size == kInlineLimit + 1);
  CHECK(body_file_path(big, bodies) == bodies + "/" + big.file);
  CHECK(read_file(body_file_path(big, bodies)) == over);
  CHECK(read_body_bytes(big, bodies) == over);
  CHECK(read_body_bytes(small, bodies) == at_limit);
  CHECK(body_file_path(small, bodies).empty());

  CHECK(make_body(over, bodies) == big);
  CHECK(count_files(bodies) == 1);
}

TEST_CASE("cassette: read_body_bytes reports missing and truncated body files") {
  TempDir dir;
  Body big = make_body(pseudo_random(kInlineLimit * 2, false), dir.path());
  write_file(body_file_path(big, dir.path()), "short");
  CHECK_THROWS_AS(read_body_bytes(big, dir.path()), std::runtime_error);
  fs::remove(body_file_path(big, dir.path()));
  CHECK_THROWS_AS(read_body_bytes(big, dir.path()), std::runtime_error);
}

TEST_CASE("cassette: BodyWriter streams a 5 MiB body into one content-addressed file") {
  TempDir dir;
  auto bodies = dir / "a/bodies";  // created on demand
  const std::string data = pseudo_random(5 * 1024 * 1024, false);
  const std::size_t piece = 64 * 1024;
  auto write_all = [&](BodyWriter& w) {
    for (std::size_t off = 0; off < data.size(); off += piece)
      w.write(std::string_view(data).substr(off, piece));
  };

  BodyWriter first(bodies);
  write_all(first);
  CHECK(first.size() == data.size());
  Body b1 = first.finish();
  CHECK(b1.file == sha256_hex(data));
  CHECK(b1.size == data.size());
  CHECK(b1.data.empty());
  CHECK(fs::file_size(body_file_path(b1, bodies)) == data.size());
  CHECK(read_body_bytes(b1, bodies) == data);

  BodyWriter second(bodies);
  write_all(second);
  Body b2 = second.finish();
  CHECK(b2 == b1);
  CHECK(count_files(bodies) == 1);  // one copy, no temporary files left
  CHECK(make_body(data, bodies) == b1);
  CHECK_THROWS_AS(second.write("x"), std::logic_error);
}

TEST_CASE("cassette: BodyWriter keeps small bodies inline and cleans up when abandoned") {
  TempDir dir;
  auto bodies = dir / "bodies";
  {
    BodyWriter w(bodies);
    w.write("hello ");
    w.write("");
    w.write("world");
    Body b = w.finish();
    CHECK(b == make_body("hello world", bodies));
    CHECK(b.data == "hello world");
  }
  {
    BodyWriter w(bodies);
    w.write(std::string(kInlineLimit, 'x'));
    CHECK(w.finish().file.empty());  // exactly the limit stays inline
  }
  CHECK(!fs::exists(bodies));
  {
    BodyWriter w(bodies);
    w.write(std::string(kInlineLimit, 'x'));
    w.write("y");  // spills to a temporary file
    CHECK(count_files(bodies) == 1);
  }
  CHECK(count_files(bodies) == 0);
}

TEST_CASE("cassette: decoded view for gzip, zlib and raw deflate") {
  TempDir dir;
  const std::string text = "{\"hello\": \"w\xc3\xb6rld\"}\n";
  CHECK(make_body(compress(text, 31), dir.path(), "gzip").decoded == text);
  CHECK(make_body(compress(text, 31), dir.path(), "x-gzip").decoded == text);
  CHECK(make_body(compress(text, 15), dir.path(), "deflate").decoded == text);
  CHECK(make_body(compress(text, -15), dir.path(), "deflate").decoded == text);
  CHECK(make_body(compress(text, 31), dir.path(), "GZIP, identity").decoded == text);
  CHECK(make_body(compress(text, 31) + compress("more", 31), dir.path(), "gzip").decoded == text + "more");
  CHECK(make_body(compress(text, 31) + "junk", dir.path(), "gzip").decoded == text);

  Body plain = make_body(text, dir.path(), "");
  CHECK(!plain.decoded);
  CHECK(!make_body(compress(text, 31), dir.path(), "br").decoded);
  CHECK(!make_body(compress(text, 31), dir.path(), "gzip, gzip").decoded);
  CHECK(!make_body(text, dir.path(), "gzip").decoded);                                  // not compressed
  CHECK(!make_body(compress(text, 31).substr(0, 10), dir.path(), "gzip").decoded);      // truncated
  CHECK(!make_body(compress(std::string("a\0b", 3), 31), dir.path(), "gzip").decoded);  // not text
  CHECK(
      !make_body(compress(std::string(1024 * 1024 + 1, 'a'), 31), dir.path(), "gzip").decoded);  // too large
  CHECK(make_body(compress(std::string(1024 * 1024, 'a'), 31), dir.path(), "gzip").decoded->size() ==
        1024 * 1024);
  // The stored bytes are always what the upstream sent.
  CHECK(make_body(compress(text, 31), dir.path(), "gzip").data == compress(text, 31));
}

TEST_CASE("cassette: decoded view of a body stored in a file") {
  TempDir dir;
  const std::string text = pseudo_random(300000, true);
  const std::string gz = compress(text, 31);
  REQUIRE(gz.size() > kInlineLimit);
  Body made = make_body(gz, dir.path(), "gzip");
  CHECK(!made.file.empty());
  CHECK(made.decoded == text);
  BodyWriter w(dir.path());
  for (std::size_t off = 0; off < gz.size(); off += 1000) w.write(std::string_view(gz).substr(off, 1000));
  CHECK(w.finish("gzip") == made);
}

TEST_CASE("cassette: HAR export has the HAR 1.2 shape") {
  TempDir dir;
  Interaction it = sample(5);
  it.method = "POST";
  it.target = "/search?q=a%20b&flag&x=1";
  it.request_headers.add("Content-Type", "application/json");
  it.request_body = make_body("{\"a\":1}", dir.path());
  it.response_headers.add("Location", "/next");
  it.response_body = make_body(std::string("\x89PNG\0", 5), dir.path());
  it.duration_ms = 12.5;
  Interaction untimed = sample(6);
  untimed.request_headers = {};
  auto har = cassette_to_har(Cassette{{it, untimed}}, dir.path());

  CHECK(har["log"]["version"] == "1.2");
  CHECK(har["log"]["creator"].dump() == R"({"name":"rproxy","version":"1"})");
  const auto& e = har["log"]["entries"][0];
  CHECK(e["startedDateTime"] == "1970-01-01T00:00:00.000Z");
  CHECK(har["log"]["entries"][1]["startedDateTime"] == "1970-01-01T00:00:00.001Z");
  CHECK(e["time"].get<double>() == 12.5);
  CHECK(e["_rproxy_id"] == 5);
  CHECK(e["request"]["url"] == "http://api/search?q=a%20b&flag&x=1");
  CHECK(har["log"]["entries"][1]["request"]["url"] == "http://rproxy.invalid/a?x=1");
  CHECK(e["request"]["httpVersion"] == "HTTP/1.1");
  CHECK(e["request"]["headers"][0].dump() == R"({"name":"Host","value":"api"})");
  CHECK(e["request"]["queryString"].dump() ==
        R"([{"name":"q","value":"a b"},{"name":"flag","value":""},{"name":"x","value":"1"}])");
  CHECK(e["request"]["cookies"].dump() == "[]");
  CHECK(e["request"]["postData"].dump() == R"({"mimeType":"application/json","text":"{\"a\":1}"})");
  CHECK(e["request"]["headersSize"] == -1);
  CHECK(e["request"]["bodySize"] == 7);
  CHECK(!har["log"]["entries"][1]["request"].contains("postData"));
  CHECK(e["response"]["status"] == 200);
  CHECK(e["response"]["statusText"] == "OK");
  CHECK(e["response"]["content"].dump() ==
        R"({"size":5,"mimeType":"text/plain","text":"iVBORwA=","encoding":"base64"})");
  CHECK(e["response"]["redirectURL"] == "/next");
  CHECK(e["response"]["bodySize"] == 5);
  CHECK(e["cache"].dump() == "{}");
  CHECK(e["timings"].dump() == R"({"send":0,"wait":12.5,"receive":0})");
  CHECK(har["log"]["entries"][1]["time"] == 0);
}

TEST_CASE("cassette: HAR round trip keeps text, binary and large bodies") {
  TempDir dir;
  auto bodies = dir / "bodies";
  Interaction text = sample(1);
  text.method = "PUT";
  text.request_headers.add("Content-Type", "text/plain; charset=utf-8");
  text.request_body = make_body("caf\xc3\xa9\n", bodies);
  text.response_headers.add("Set-Cookie", "a=1");
  text.response_headers.add("set-cookie", "b=2");
  text.duration_ms = 4.5;
  Interaction binary = sample(2);
  binary.request_body = make_body(std::string("\0\1\2", 3), bodies);
  binary.response_headers = {{"Content-Encoding", "gzip"}};
  binary.response_body = make_body(compress("zipped text", 31), bodies, "gzip");
  binary.chunks = {{0, 10}, {5, 21}};
  Interaction large = sample(3);
  large.target = "/";
  large.request_headers = {};
  large.request_body = make_body(pseudo_random(kInlineLimit * 3, false), bodies);
  large.response_body = make_body(pseudo_random(kInlineLimit * 2, true), bodies);
  large.status = 404;
  large.reason = "Not Found";
  Interaction star = sample(4);
  star.method = "OPTIONS";
  star.target = "*";
  Cassette orig{{text, binary, large, star}};

  auto har = cassette_to_har(orig, bodies);
  CHECK(cassette_from_har(har, bodies) == orig);
  // Through text, into another bodies directory.
  auto other = dir / "other";
  auto back = cassette_from_har(json::parse(har.dump(2)), other);
  CHECK(back == orig);
  CHECK(read_body_bytes(back.interactions[2].request_body, other) ==
        read_body_bytes(large.request_body, bodies));
}

TEST_CASE("cassette: HAR import renumbers ids and tolerates missing optional fields") {
  TempDir dir;
  auto har = json::parse(R"({"log": {"version": "1.2", "entries": [
    {"request": {"method": "GET", "url": "https://example.com"},
     "response": {"status": 200}},
    {"request": {"method": "POST", "url": "http://h:8080/p/q?x=1&y=%20#frag",
                 "headers": [{"name": ":authority", "value": "h:8080"}, {"name": ":path", "value": "/p/q"},
                             {"name": "accept", "value": "*/*"}],
                 "postData": {"mimeType": "text/plain", "text": "aGk=", "encoding": "base64"}},
     "response": {"status": 201, "statusText": "Created", "headers": [],
                  "content": {"size": 2, "mimeType": "text/plain", "text": "ok"}},
     "time": -1}]}})");
  auto c = cassette_from_har(har, dir.path());
  REQUIRE(c.interactions.size() == 2);
  const auto& a = c.interactions[0];
  CHECK(a.id == 1);
  CHECK(a.target == "/");
  CHECK(a.request_headers.empty());
  CHECK(a.request_body == Body{});
  CHECK(a.response_body == Body{});
  CHECK(!a.duration_ms);
  const auto& b = c.interactions[1];
  CHECK(b.id == 2);
  CHECK(b.target == "/p/q?x=1&y=%20");
  CHECK(b.request_headers == Headers{{"Host", "h:8080"}, {"accept", "*/*"}});
  CHECK(b.request_body.data == "hi");
  CHECK(b.status == 201);
  CHECK(b.reason == "Created");
  CHECK(b.response_body.data == "ok");
  CHECK(!b.duration_ms);
}

TEST_CASE("cassette: HAR import of decoded content from other tools drops the stale Content-Encoding") {
  TempDir dir;
  auto har = json::parse(R"({"log": {"entries": [
    {"request": {"method": "GET", "url": "http://h/"},
     "response": {"status": 200, "headers": [{"name": "Content-Encoding", "value": "br"},
                                             {"name": "Content-Length", "value": "10"}],
                  "content": {"text": "plain text"}}}]}})");
  auto c = cassette_from_har(har, dir.path());
  CHECK(c.interactions[0].response_headers == Headers{{"Content-Length", "10"}});

  // Still-compressed content (base64) keeps its header.
  const std::string gz = compress("abc", 31);
  Interaction it = sample(1);
  it.response_headers = {{"Content-Encoding", "gzip"}};
  it.response_body = make_body(gz, dir.path(), "gzip");
  auto exported = json(cassette_to_har(Cassette{{it}}, dir.path()));
  exported["log"]["entries"][0].erase("_rproxy_id");
  auto back = cassette_from_har(exported, dir.path());
  CHECK(back.interactions[0].response_headers == it.response_headers);
  CHECK(back.interactions[0].response_body.decoded == "abc");
}

TEST_CASE("cassette: HAR import errors name the JSON path") {
  TempDir dir;
  auto error = [&](const std::string& text) -> std::string {
    try {
      cassette_from_har(json::parse(text), dir.path());
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "(no error)";
  };
  CHECK(error(R"({})") == "log: missing");
  CHECK(error(R"({"log": {}})") == "log.entries: missing");
  const std::string ok = R"({"request": {"method": "GET", "url": "http://h/"}, "response": {"status": 200}})";
  CHECK(error(R"({"log": {"entries": [)" + ok + "," + ok + "," + ok +
              R"(, {"request": {"method": "GET", "url": "nope"}, "response": {"status": 200}}]}})") ==
        "log.entries[3].request.url: expected an absolute URL");
  CHECK(
      error(
          R"({"log": {"entries": [{"request": {"method": "GET", "url": "http://h/"}, "response": {"status": 0}}]}})") ==
      "log.entries[0].response.status: expected an integer from 100 to 599");
  CHECK(
      error(
          R"({"log": {"entries": [{"request": {"method": "GET", "url": "http://h/"}, "response": {"status": 200,
        "content": {"text": "x", "encoding": "gzip"}}}]}})") ==
      "log.entries[0].response.content.encoding: unsupported encoding \"gzip\" (expected base64)");
  CHECK(
      error(
          R"({"log": {"entries": [{"request": {"method": "GET", "url": "http://h/", "headers": [{"name": "a"}]},
        "response": {"status": 200}}]}})") == "log.entries[0].request.headers[0].value: missing");
}
