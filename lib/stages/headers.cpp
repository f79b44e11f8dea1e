#include "stages/headers.hpp"

#include <array>
#include <string_view>

#include "rproxy/http_parser.hpp"
#include "rproxy/scenario.hpp"

namespace rproxy::stages {
namespace {

using nlohmann::json;

// Headers the engine itself derives from the connection and the body framing (RFC 9110 §7.6.1, RFC 9112
// §6). Letting a stage rewrite them would make the forwarded head disagree with the forwarded bytes.
constexpr std::array<std::string_view, 8> kManagedHeaders{
    "Content-Length", "Transfer-Encoding", "Connection",      "Keep-Alive", "TE",
    "Trailer",        "Upgrade",           "Proxy-Connection"};

const std::string_view* managed_header(std::string_view name) {
  for (const auto& m : kManagedHeaders)
    if (iequals(m, name)) return &m;
  return nullptr;
}

// Checks a header name; appends a problem at path and returns false when it cannot be used.
bool check_name(std::string_view name, const std::string& path, std::vector<std::string>& problems) {
  if (!is_token(name)) {
    problems.push_back(path + ": not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)");
    return false;
  }
  if (const auto* managed = managed_header(name)) {
    problems.push_back(path + ": " + std::string(*managed) +
                       " is managed by the proxy (framing and connection headers cannot be edited)");
    return false;
  }
  return true;
}

bool check_value(const json& value, const std::string& path, std::vector<std::string>& problems) {
  if (!value.is_string()) {
    problems.push_back(path + ": expected a string, got " + json_describe(value));
    return false;
  }
  const auto& text = value.get_ref<const std::string&>();
  // CR/LF/NUL get their own message: they are the injection attempt, the rest are typos.
  if (text.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
    problems.push_back(path + ": value contains CR/LF/NUL");
    return false;
  }
  if (!is_valid_field_value(text)) {
    problems.push_back(path + ": value contains a control character");
    return false;
  }
  return true;
}

// Names seen so far in one section; header names compare case-insensitively, JSON keys do not.
const std::string* find_name(const std::vector<std::string>& seen, std::string_view name) {
  for (const auto& s : seen)
    if (iequals(s, name)) return &s;
  return nullptr;
}

void parse_fields(const json& v, const std::string& path, std::vector<Header>& out,
                  std::vector<std::string>& problems) {
  if (!v.is_object()) {
    problems.push_back(path + ": expected an object of header names to values, got " + json_describe(v));
    return;
  }
  std::vector<std::string> seen;
  for (const auto& [name, value] : v.items()) {
    auto field_path = json_path_key(path, name);
    bool ok = check_name(name, field_path, problems);
    ok = check_value(value, field_path, problems) && ok;
    if (!ok) continue;
    if (const auto* first = find_name(seen, name)) {
      problems.push_back(field_path + ": same header as \"" + *first + "\" (names are case-insensitive)");
      continue;
    }
    seen.push_back(name);
    out.push_back({name, value.get<std::string>()});
  }
}

void parse_remove(const json& v, const std::string& path, std::vector<std::string>& out,
                  std::vector<std::string>& problems) {
  if (!v.is_array()) {
    problems.push_back(path + ": expected an array of header names, got " + json_describe(v));
    return;
  }
  for (std::size_t i = 0; i < v.size(); ++i) {
    auto item_path = json_path_index(path, i);
    if (!v[i].is_string()) {
      problems.push_back(item_path + ": expected a string, got " + json_describe(v[i]));
      continue;
    }
    const auto& name = v[i].get_ref<const std::string&>();
    if (!check_name(name, item_path, problems)) continue;
    if (find_name(out, name) != nullptr) {
      problems.push_back(item_path + ": \"" + name + "\" is listed twice");
      continue;
    }
    out.push_back(name);
  }
}


}  // namespace

void parse_header_edits(const json& v, const std::string& path, HeaderEdits& out,
                 std::vector<std::string>& problems) {
  if (!v.is_object()) {
    problems.push_back(path + ": expected an object with \"set\", \"add\" and/or \"remove\", got " +
                       json_describe(v));
    return;
  }
  for (const auto& [key, value] : v.items()) {
    auto key_path = json_path_key(path, key);
    if (key == "set") {
      parse_fields(value, key_path, out.set, problems);
    } else if (key == "add") {
      parse_fields(value, key_path, out.add, problems);
    } else if (key == "remove") {
      parse_remove(value, key_path, out.remove, problems);
    } else {
      problems.push_back(key_path + ": unknown key (expected set, add or remove)");
    }
  }
  // remove runs before set, so removing a name that is also set does nothing: almost surely a mistake.
  if (v.contains("remove") && v["remove"].is_array()) {
    const auto& list = v["remove"];
    for (std::size_t i = 0; i < list.size(); ++i) {
      if (!list[i].is_string()) continue;
      const auto& name = list[i].get_ref<const std::string&>();
      for (const auto& h : out.set)
        if (iequals(h.name, name))
          problems.push_back(json_path_index(json_path_key(path, "remove"), i) + ": \"" + name +
                             "\" is also in set, which already replaces it");
    }
  }
}

void HeaderEdits::apply(Headers& headers) const {
  for (const auto& name : remove) headers.remove(name);
  for (const auto& h : set) headers.set(h.name, h.value);
  for (const auto& h : add) headers.add(h.name, h.value);
}

std::unique_ptr<Stage> HeadersStage::create(const nlohmann::json& params, const std::string& path,
                                            const StageContext& /*context*/, std::vector<std::string>& problems) {
  const auto before = problems.size();
  if (!params.is_object()) {
    problems.push_back(path + ": expected an object with \"request\" and/or \"response\", got " +
                       json_describe(params));
    return nullptr;
  }
  HeaderEdits request;
  HeaderEdits response;
  for (const auto& [key, value] : params.items()) {
    auto key_path = json_path_key(path, key);
    if (key == "request") {
      parse_header_edits(value, key_path, request, problems);
    } else if (key == "response") {
      parse_header_edits(value, key_path, response, problems);
    } else {
      problems.push_back(key_path + ": unknown key (expected request or response)");
    }
  }
  if (problems.size() != before) return nullptr;
  return std::make_unique<HeadersStage>(std::move(request), std::move(response));
}

Decision HeadersStage::on_request(Exchange& exchange) {
  request_.apply(exchange.request.headers);
  return Decision::proceed();
}

Decision HeadersStage::on_response(Exchange& exchange) {
  if (exchange.response) response_.apply(exchange.response->headers);
  return Decision::proceed();
}

}  // namespace rproxy::stages
