#include "stages/compress.hpp"

#include "stages/params.hpp"

namespace rproxy::stages {

namespace {
using nlohmann::json;

bool lists_token(const Headers& headers, std::string_view name, std::string_view token) {
  for (const auto& f : headers)
    if (iequals(f.name, name))
      for (auto item : split_list(f.value))
        if (iequals(item, token)) return true;
  return false;
}

// Vary lists request fields a cached variant depends on; "*" already covers everything.
void add_vary(Headers& headers, std::string_view field) {
  if (lists_token(headers, "Vary", field) || lists_token(headers, "Vary", "*")) return;
  if (headers.has("Vary"))
    headers.set("Vary", headers.joined("Vary") + ", " + std::string(field));
  else
    headers.add("Vary", std::string(field));
}
}  // namespace

std::unique_ptr<Stage> CompressStage::create(const json& params, const std::string& path, const StageContext&,
                                             std::vector<std::string>& problems) {
  ParamReader r{problems};
  const auto before = problems.size();
  CompressSettings s;
  if (!params.is_object()) {
    r.fail(path, "expected an object, got " + json_describe(params));
    return nullptr;
  }
  r.known_keys(params, path, {"encodings", "types", "min_size", "gzip_level", "brotli_level"});
  if (auto it = params.find("encodings"); it != params.end()) {
    const auto p = json_path_key(path, "encodings");
    if (auto list = r.strings(*it, p)) {
      s.encodings.clear();
      for (std::size_t i = 0; i < list->size(); ++i) {
        const auto& e = (*list)[i];
        if (e == "gzip")
          s.encodings.push_back(ContentCoding::Gzip);
        else if (e == "br")
          s.encodings.push_back(ContentCoding::Brotli);
        else
          r.fail(json_path_index(p, i), "must be \"br\" or \"gzip\", got " + json_describe((*list)[i]));
      }
      if (list->empty())
        r.fail(p, "at least one encoding is required (remove the stage to turn compression off)");
    }
  }
  if (auto it = params.find("types"); it != params.end()) {
    const auto p = json_path_key(path, "types");
    if (auto list = r.strings(*it, p)) {
      for (std::size_t i = 0; i < list->size(); ++i)
        if ((*list)[i].find('/') == std::string::npos)
          r.fail(json_path_index(p, i),
                 "expected a media type like \"text/html\" or \"text/*\", got " + json_describe((*list)[i]));
      if (list->empty()) r.fail(p, "at least one media type is required");
      s.types = *list;
    }
  }
  if (auto it = params.find("min_size"); it != params.end())
    if (auto n = r.size(*it, json_path_key(path, "min_size"))) s.min_size = *n;
  if (auto it = params.find("gzip_level"); it != params.end())
    if (auto n = r.integer(*it, json_path_key(path, "gzip_level"), 1, 9)) s.gzip_level = static_cast<int>(*n);
  if (auto it = params.find("brotli_level"); it != params.end())
    if (auto n = r.integer(*it, json_path_key(path, "brotli_level"), 0, 11))
      s.brotli_level = static_cast<int>(*n);
  if (problems.size() != before) return nullptr;
  return std::make_unique<CompressStage>(std::move(s));
}

Decision CompressStage::on_response(Exchange& ex) {
  if (!ex.response) return Decision::proceed();
  auto& resp = *ex.response;
  const int st = resp.status;
  if (st < 200 || st == 204 || st == 206 || st == 304) return Decision::proceed();
  if (resp.headers.has("Content-Range")) return Decision::proceed();
  if (auto ce = resp.headers.get("Content-Encoding"); ce && !iequals(*ce, "identity"))
    return Decision::proceed();
  if (lists_token(resp.headers, "Cache-Control", "no-transform")) return Decision::proceed();
  auto type = resp.headers.get("Content-Type");
  if (!type || !is_compressible_type(*type, settings_.types)) return Decision::proceed();
  if (auto cl = resp.headers.get("Content-Length")) {
    std::uint64_t n = 0;
    bool digits = !cl->empty();
    for (char c : *cl) {
      digits = digits && c >= '0' && c <= '9';
      if (digits) n = n * 10 + static_cast<std::uint64_t>(c - '0');
    }
    if (digits && n < settings_.min_size) return Decision::proceed();
  }
  add_vary(resp.headers, "Accept-Encoding");
  if (ex.request.version_minor == 0) return Decision::proceed();
  auto coding = choose_coding(ex.request.headers.get("Accept-Encoding"), settings_.encodings);
  if (coding == ContentCoding::Identity) return Decision::proceed();
  resp.headers.set("Content-Encoding", std::string(to_string(coding)));
  resp.headers.remove("Content-Length");
  resp.headers.remove("Accept-Ranges");
  if (auto etag = resp.headers.get("ETag"); etag && !etag->starts_with("W/"))
    resp.headers.set("ETag", "W/" + std::string(*etag));
  Decision d;
  d.content_coding = std::string(to_string(coding));
  d.coding_level = coding == ContentCoding::Gzip ? settings_.gzip_level : settings_.brotli_level;
  compressed_.fetch_add(1, std::memory_order_relaxed);
  (coding == ContentCoding::Gzip ? gzip_ : brotli_).fetch_add(1, std::memory_order_relaxed);
  return d;
}

json CompressStage::report() const {
  return {{"compressed", compressed_.load()}, {"gzip", gzip_.load()}, {"br", brotli_.load()}};
}

std::string CompressStage::summary() const {
  auto n = compressed_.load();
  if (n == 0) return {};
  return "compress: " + std::to_string(n) + " responses compressed (" + std::to_string(brotli_.load()) +
         " br, " + std::to_string(gzip_.load()) + " gzip)";
}

}  // namespace rproxy::stages
