#include "stages/cors.hpp"

#include "rproxy/http_parser.hpp"
#include "stages/glob.hpp"
#include "stages/params.hpp"

namespace rproxy::stages {

namespace {
using nlohmann::json;

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ", ") + i;
  return out;
}

// Origins are "scheme://host[:port]" (or "null" from sandboxed documents); anything else in a pattern is
// almost certainly a typo such as a trailing slash, which would never match.
std::optional<std::string> check_origin_pattern(const std::string& p) {
  if (p == "*" || p == "null") return std::nullopt;
  auto scheme = p.find("://");
  if (scheme == std::string::npos || scheme == 0)
    return "expected an origin like \"http://localhost:5173\" or a pattern like \"http://localhost:*\", got "
           "\"" +
           p + "\"";
  if (p.find('/', scheme + 3) != std::string::npos)
    return "an origin has no path (drop the trailing \"/...\"), got \"" + p + "\"";
  return std::nullopt;
}
}  // namespace

std::unique_ptr<Stage> CorsStage::create(const json& params, const std::string& path, const StageContext&,
                                         std::vector<std::string>& problems) {
  ParamReader r{problems};
  const auto before = problems.size();
  CorsSettings s;
  if (!params.is_object()) {
    r.fail(path, "expected an object, got " + json_describe(params));
    return nullptr;
  }
  r.known_keys(params, path, {"origins", "credentials", "methods", "headers", "expose", "max_age"});
  if (auto it = params.find("origins"); it != params.end()) {
    if (auto list = r.strings(*it, json_path_key(path, "origins"))) {
      if (list->empty()) r.fail(json_path_key(path, "origins"), "at least one origin (or \"*\") is required");
      for (std::size_t i = 0; i < list->size(); ++i)
        if (auto err = check_origin_pattern((*list)[i]))
          r.fail(json_path_index(json_path_key(path, "origins"), i), *err);
      s.origins = *list;
    }
  }
  if (auto it = params.find("credentials"); it != params.end())
    if (auto b = r.boolean(*it, json_path_key(path, "credentials"))) s.credentials = *b;
  auto tokens = [&](const char* key, std::vector<std::string>& out, bool upper) {
    auto it = params.find(key);
    if (it == params.end()) return;
    auto list = r.strings(*it, json_path_key(path, key));
    if (!list) return;
    for (std::size_t i = 0; i < list->size(); ++i) {
      if (!is_token((*list)[i])) {
        r.fail(json_path_index(json_path_key(path, key), i), "not a valid token: \"" + (*list)[i] + "\"");
        continue;
      }
      if (upper)
        for (auto& c : (*list)[i]) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    out = *list;
  };
  tokens("methods", s.methods, true);
  tokens("headers", s.headers, false);
  tokens("expose", s.expose, false);
  if (auto it = params.find("max_age"); it != params.end())
    if (auto d = r.duration(*it, json_path_key(path, "max_age")))
      s.max_age = std::chrono::duration_cast<std::chrono::seconds>(*d);
  if (problems.size() != before) return nullptr;
  return std::make_unique<CorsStage>(std::move(s));
}

bool CorsStage::origin_allowed(std::string_view origin) const {
  for (const auto& p : settings_.origins)
    if (p == "*" ? origin != "null" : glob_match(p, origin)) return true;
  return false;
}

std::string CorsStage::allow_origin_value(const std::string& origin) const {
  // "*" only when every origin is welcome and no credentials flow; otherwise the origin itself.
  bool any = settings_.origins.size() == 1 && settings_.origins[0] == "*";
  return any && !settings_.credentials ? "*" : origin;
}

Decision CorsStage::on_request(Exchange& ex) {
  auto origin = ex.request.headers.get("Origin");
  if (!origin || ex.request.method != "OPTIONS" || !ex.request.headers.has("Access-Control-Request-Method"))
    return Decision::proceed();
  // A preflight: the browser asks permission; the upstream is never involved.
  const std::string o(*origin);
  ex.tags["cors"] = "preflight";
  LocalResponse r;
  r.headers.add("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers");
  if (!origin_allowed(o)) {
    r.status = 403;
    r.headers.add("Content-Type", "text/plain; charset=utf-8");
    r.headers.add("X-Rproxy-Error", "cors_origin_not_allowed");
    r.body =
        "403 Forbidden: CORS origin " + o + " is not allowed (allowed: " + join(settings_.origins) + ")\n";
    return Decision::respond(std::move(r));
  }
  r.status = 204;
  r.headers.add("Access-Control-Allow-Origin", allow_origin_value(o));
  if (settings_.credentials) r.headers.add("Access-Control-Allow-Credentials", "true");
  r.headers.add("Access-Control-Allow-Methods", join(settings_.methods));
  if (!settings_.headers.empty()) {
    r.headers.add("Access-Control-Allow-Headers", join(settings_.headers));
  } else if (auto asked = ex.request.headers.get("Access-Control-Request-Headers");
             asked && !asked->empty()) {
    r.headers.add("Access-Control-Allow-Headers", std::string(*asked));
  }
  r.headers.add("Access-Control-Max-Age", std::to_string(settings_.max_age.count()));
  // Chrome's Private Network Access asks before a public page may call a loopback server.
  if (ex.request.headers.get("Access-Control-Request-Private-Network") ==
      std::optional<std::string_view>("true"))
    r.headers.add("Access-Control-Allow-Private-Network", "true");
  return Decision::respond(std::move(r));
}

Decision CorsStage::on_response(Exchange& ex) {
  if (!ex.response || ex.tags.count("cors")) return Decision::proceed();  // preflights are complete
  auto& h = ex.response->headers;
  auto origin = ex.request.headers.get("Origin");
  // Vary even when no Origin came: the next request (with one) must not be served this cached answer.
  if (!h.has_token("Vary", "Origin") && !h.has_token("Vary", "*")) h.add("Vary", "Origin");
  if (!origin) return Decision::proceed();
  const std::string o(*origin);
  for (const char* name :
       {"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Access-Control-Expose-Headers"})
    h.remove(name);
  if (!origin_allowed(o)) return Decision::proceed();
  h.add("Access-Control-Allow-Origin", allow_origin_value(o));
  if (settings_.credentials) h.add("Access-Control-Allow-Credentials", "true");
  if (!settings_.expose.empty()) h.add("Access-Control-Expose-Headers", join(settings_.expose));
  return Decision::proceed();
}

}  // namespace rproxy::stages
