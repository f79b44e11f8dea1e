#include "stages/static_files.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>

#include "rproxy/http_parser.hpp"
#include "stages/params.hpp"

namespace rproxy::stages {

namespace {
using nlohmann::json;

LocalResponse text_response(int status, const std::string& code, const std::string& body) {
  LocalResponse r;
  r.status = status;
  r.headers.add("Content-Type", "text/plain; charset=utf-8");
  if (!code.empty()) r.headers.add("X-Rproxy-Error", code);
  r.body = body + "\n";
  return r;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Splits the path into decoded segments; false when it is not a path we serve (traversal, NUL, "%2F").
bool decode_segments(std::string_view path, std::vector<std::string>& out) {
  std::string seg;
  auto flush = [&]() -> bool {
    if (seg == "..") return false;
    if (!seg.empty() && seg != ".") out.push_back(seg);
    seg.clear();
    return true;
  };
  for (std::size_t i = 0; i < path.size(); ++i) {
    char c = path[i];
    if (c == '/') {
      if (!flush()) return false;
      continue;
    }
    if (c == '%') {
      if (i + 2 >= path.size()) return false;
      int hi = hex_value(path[i + 1]);
      int lo = hex_value(path[i + 2]);
      if (hi < 0 || lo < 0) return false;
      char d = static_cast<char>(hi * 16 + lo);
      // An encoded slash or NUL would change what the path means after decoding: refuse it.
      if (d == '/' || d == '\0' || d == '\\') return false;
      seg += d;
      i += 2;
      continue;
    }
    if (c == '\0' || c == '\\') return false;
    seg += c;
  }
  return flush();
}

bool inside(const std::string& real, const std::string& root) {
  return real == root || (real.size() > root.size() && real.compare(0, root.size(), root) == 0 &&
                          (root.back() == '/' || real[root.size()] == '/'));
}

std::optional<std::string> real_path(const std::string& p) {
  char buf[PATH_MAX];
  if (!::realpath(p.c_str(), buf)) return std::nullopt;
  return std::string(buf);
}

std::string etag_for(const struct stat& st) {
  char b[64];
  std::snprintf(b, sizeof b, "\"%llx-%llx\"", static_cast<unsigned long long>(st.st_size),
                static_cast<unsigned long long>(st.st_mtim.tv_sec) * 1000000000ull +
                    static_cast<unsigned long long>(st.st_mtim.tv_nsec));
  return b;
}

// If-None-Match: "*" or a list of entity tags, compared weakly (RFC 9110 §13.1.2).
bool none_match(std::string_view header, const std::string& etag) {
  std::size_t pos = 0;
  while (pos < header.size()) {
    auto comma = header.find(',', pos);
    auto item = header.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (item == "*") return true;
    if (item.rfind("W/", 0) == 0) item.remove_prefix(2);
    if (item == etag) return true;
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return false;
}

struct ByteRange {
  std::uint64_t first = 0;
  std::uint64_t length = 0;
};
enum class RangeResult { None, One, Unsatisfiable };

// One range of "bytes=..." (several ranges are answered with the whole file, which RFC 9110 allows).
RangeResult parse_range(std::string_view v, std::uint64_t size, ByteRange& out) {
  if (v.rfind("bytes=", 0) != 0) return RangeResult::None;
  v.remove_prefix(6);
  if (v.find(',') != std::string_view::npos) return RangeResult::None;
  auto dash = v.find('-');
  if (dash == std::string_view::npos) return RangeResult::None;
  auto a = v.substr(0, dash);
  auto b = v.substr(dash + 1);
  auto number = [](std::string_view s, std::uint64_t& n) {
    if (s.empty() || s.size() > 19 || s.find_first_not_of("0123456789") != std::string_view::npos)
      return false;
    n = std::stoull(std::string(s));
    return true;
  };
  std::uint64_t x = 0, y = 0;
  if (a.empty()) {  // suffix: the last y bytes
    if (!number(b, y)) return RangeResult::None;
    if (y == 0 || size == 0) return RangeResult::Unsatisfiable;
    y = std::min(y, size);
    out = {size - y, y};
    return RangeResult::One;
  }
  if (!number(a, x)) return RangeResult::None;
  if (!b.empty() && (!number(b, y) || y < x)) return RangeResult::None;
  if (x >= size) return RangeResult::Unsatisfiable;
  std::uint64_t last = b.empty() ? size - 1 : std::min(y, size - 1);
  out = {x, last - x + 1};
  return RangeResult::One;
}
}  // namespace

std::string content_type_for(const std::string& name) {
  static const std::map<std::string, std::string> types{{"html", "text/html; charset=utf-8"},
                                                        {"htm", "text/html; charset=utf-8"},
                                                        {"css", "text/css; charset=utf-8"},
                                                        {"js", "text/javascript; charset=utf-8"},
                                                        {"mjs", "text/javascript; charset=utf-8"},
                                                        {"json", "application/json"},
                                                        {"map", "application/json"},
                                                        {"txt", "text/plain; charset=utf-8"},
                                                        {"md", "text/markdown; charset=utf-8"},
                                                        {"csv", "text/csv; charset=utf-8"},
                                                        {"xml", "application/xml"},
                                                        {"svg", "image/svg+xml"},
                                                        {"png", "image/png"},
                                                        {"jpg", "image/jpeg"},
                                                        {"jpeg", "image/jpeg"},
                                                        {"gif", "image/gif"},
                                                        {"webp", "image/webp"},
                                                        {"avif", "image/avif"},
                                                        {"ico", "image/x-icon"},
                                                        {"wasm", "application/wasm"},
                                                        {"woff", "font/woff"},
                                                        {"woff2", "font/woff2"},
                                                        {"ttf", "font/ttf"},
                                                        {"otf", "font/otf"},
                                                        {"pdf", "application/pdf"},
                                                        {"mp4", "video/mp4"},
                                                        {"webm", "video/webm"},
                                                        {"mp3", "audio/mpeg"},
                                                        {"wav", "audio/wav"},
                                                        {"webmanifest", "application/manifest+json"},
                                                        {"zip", "application/zip"},
                                                        {"gz", "application/gzip"}};
  auto slash = name.rfind('/');
  auto dot = name.rfind('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash))
    return "application/octet-stream";
  std::string ext = name.substr(dot + 1);
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto it = types.find(ext);
  return it == types.end() ? "application/octet-stream" : it->second;
}

std::string http_date(std::int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  char b[64];
  std::strftime(b, sizeof b, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return b;
}

std::optional<std::int64_t> parse_http_date(std::string_view text) {
  std::tm tm{};
  std::string s(text);
  const char* end = ::strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (!end || *end != '\0') return std::nullopt;
  return static_cast<std::int64_t>(::timegm(&tm));
}

std::unique_ptr<Stage> StaticStage::create(const json& params, const std::string& path, const StageContext&,
                                           std::vector<std::string>& problems) {
  ParamReader r{problems};
  const auto before = problems.size();
  if (!params.is_object()) {
    r.fail(path, "expected an object with \"root\", got " + json_describe(params));
    return nullptr;
  }
  r.known_keys(params, path, {"root", "prefix", "index", "spa", "cache_control"});
  StaticSettings s;
  if (auto it = params.find("root"); it == params.end()) {
    r.fail(json_path_key(path, "root"), "required: the directory to serve");
  } else if (auto root = r.string(*it, json_path_key(path, "root"))) {
    s.root = *root;
    struct stat st {};
    auto real = real_path(*root);
    if (!real || ::stat(real->c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      r.fail(json_path_key(path, "root"),
             "not a directory: " + *root + (real ? "" : std::string(" (") + std::strerror(errno) + ")"));
    else
      s.real_root = *real;
  }
  if (auto it = params.find("prefix"); it != params.end()) {
    if (auto p = r.string(*it, json_path_key(path, "prefix"))) {
      if (p->empty() || p->front() != '/')
        r.fail(json_path_key(path, "prefix"), "must start with \"/\", got \"" + *p + "\"");
      s.prefix = *p;
    }
  }
  if (auto it = params.find("index"); it != params.end())
    if (auto list = r.strings(*it, json_path_key(path, "index"))) {
      for (std::size_t i = 0; i < list->size(); ++i)
        if ((*list)[i].empty() || (*list)[i].find('/') != std::string::npos || (*list)[i] == "..")
          r.fail(json_path_index(json_path_key(path, "index"), i),
                 "must be a file name, got \"" + (*list)[i] + "\"");
      s.index = *list;
    }
  if (auto it = params.find("spa"); it != params.end())
    if (auto b = r.boolean(*it, json_path_key(path, "spa"))) s.spa = *b;
  if (auto it = params.find("cache_control"); it != params.end())
    if (auto c = r.string(*it, json_path_key(path, "cache_control"))) {
      if (!is_valid_field_value(*c)) r.fail(json_path_key(path, "cache_control"), "not a valid header value");
      s.cache_control = *c;
    }
  if (problems.size() != before) return nullptr;
  return std::make_unique<StaticStage>(std::move(s));
}

Decision StaticStage::on_request(Exchange& ex) {
  const auto& req = ex.request;
  if (req.method != "GET" && req.method != "HEAD") {
    auto r =
        text_response(405, "method_not_allowed", "405 Method Not Allowed: static files answer GET and HEAD");
    r.headers.add("Allow", "GET, HEAD");
    return Decision::respond(std::move(r));
  }
  std::string_view target = req.target;
  auto q = target.find_first_of("?#");
  std::string_view path = target.substr(0, q);
  std::string_view query = q == std::string_view::npos ? std::string_view() : target.substr(q);
  if (path.empty() || path.front() != '/')
    return Decision::respond(text_response(400, "bad_path", "400 Bad Request: expected an origin-form path"));
  // The route matched the prefix segment-wise; what follows it is the path inside root.
  std::string_view rest = path;
  if (settings_.prefix != "/" && rest.rfind(settings_.prefix, 0) == 0)
    rest.remove_prefix(settings_.prefix.size());
  std::vector<std::string> segments;
  if (!decode_segments(rest, segments))
    return Decision::respond(text_response(404, "not_found", "404 Not Found"));  // never says why
  std::string file = settings_.real_root;
  for (const auto& s : segments) file += "/" + s;

  struct stat st {};
  auto resolve = [&](const std::string& candidate, std::string& real_out) {
    auto real = real_path(candidate);
    if (!real || !inside(*real, settings_.real_root) || ::stat(real->c_str(), &st) != 0) return false;
    real_out = *real;
    return true;
  };
  std::string real;
  bool found = resolve(file, real);
  if (found && S_ISDIR(st.st_mode)) {
    if (path.back() != '/') {
      LocalResponse r = text_response(301, "", "301 Moved Permanently");
      r.headers.add("Location", std::string(path) + "/" + std::string(query));
      return Decision::respond(std::move(r));
    }
    found = false;
    for (const auto& idx : settings_.index)
      if (resolve(real + "/" + idx, real) && S_ISREG(st.st_mode)) {
        found = true;
        break;
      }
  }
  if (found && !S_ISREG(st.st_mode)) found = false;
  if (!found && settings_.spa) {
    bool looks_like_page = segments.empty() || segments.back().find('.') == std::string::npos ||
                           req.headers.has_token("Accept", "text/html");
    if (looks_like_page)
      for (const auto& idx : settings_.index)
        if (resolve(settings_.real_root + "/" + idx, real) && S_ISREG(st.st_mode)) {
          found = true;
          ex.tags["static"] = "spa_fallback";
          break;
        }
  }
  if (!found) return Decision::respond(text_response(404, "not_found", "404 Not Found"));

  const auto size = static_cast<std::uint64_t>(st.st_size);
  const auto etag = etag_for(st);
  const auto mtime = static_cast<std::int64_t>(st.st_mtim.tv_sec);
  LocalResponse r;
  r.headers.add("Content-Type", content_type_for(real));
  r.headers.add("ETag", etag);
  r.headers.add("Last-Modified", http_date(mtime));
  r.headers.add("Accept-Ranges", "bytes");
  if (!settings_.cache_control.empty()) r.headers.add("Cache-Control", settings_.cache_control);

  bool not_modified = false;
  if (auto inm = req.headers.get("If-None-Match")) {
    not_modified = none_match(*inm, etag);
  } else if (auto ims = req.headers.get("If-Modified-Since")) {
    auto t = parse_http_date(*ims);
    not_modified = t && mtime <= *t;
  }
  if (not_modified) {
    r.status = 304;
    return Decision::respond(std::move(r));
  }
  r.status = 200;
  r.body_file = real;
  r.body_file_size = size;
  if (auto range = req.headers.get("Range"); range && req.method == "GET") {
    bool if_range_ok = true;
    if (auto ir = req.headers.get("If-Range")) {
      auto t = parse_http_date(*ir);
      if_range_ok = t ? *t == mtime : std::string_view(*ir) == etag;
    }
    ByteRange br;
    auto res = if_range_ok ? parse_range(*range, size, br) : RangeResult::None;
    if (res == RangeResult::Unsatisfiable) {
      auto bad = text_response(416, "range_not_satisfiable", "416 Range Not Satisfiable");
      bad.headers.add("Content-Range", "bytes */" + std::to_string(size));
      return Decision::respond(std::move(bad));
    }
    if (res == RangeResult::One) {
      r.status = 206;
      r.body_file_offset = br.first;
      r.body_file_size = br.length;
      r.headers.add("Content-Range", "bytes " + std::to_string(br.first) + "-" +
                                         std::to_string(br.first + br.length - 1) + "/" +
                                         std::to_string(size));
    }
  }
  return Decision::respond(std::move(r));
}

}  // namespace rproxy::stages
