#include "stages/cache.hpp"

#include <algorithm>
#include <cctype>

#include "stages/params.hpp"

namespace rproxy::stages {

namespace {
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

enum class Label { Hit, Miss, Revalidated, Bypass };

const char* label_text(Label l) {
  switch (l) {
    case Label::Hit:
      return "HIT";
    case Label::Miss:
      return "MISS";
    case Label::Revalidated:
      return "REVALIDATED";
    case Label::Bypass:
      return "BYPASS";
  }
  return "MISS";
}

std::string lowercase(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// CacheTee keeps the upstream's head as received and the body up to max_entry; past that it only counts,
// so a large download streams through without the cache holding it.
class CacheTee : public ExchangeTee {
 public:
  explicit CacheTee(std::uint64_t max_entry) : max_entry_(max_entry) {}
  void request_body(std::string_view) override {}
  void response_head(const ResponseHead& h) override {
    head = h;
    body.clear();
    size = 0;
    over = false;
  }
  void response_body(std::string_view piece) override {
    size += piece.size();
    if (over) return;
    if (size > max_entry_) {
      over = true;
      std::string().swap(body);
      return;
    }
    body.append(piece);
  }

  std::optional<ResponseHead> head;
  std::string body;
  std::uint64_t size = 0;  // every body byte seen, stored or not
  bool over = false;       // more than max_entry: not stored

 private:
  std::uint64_t max_entry_;
};

std::string key_of(const std::string& route, std::string_view scheme, std::string_view host,
                   std::string_view target) {
  std::string key = route;
  key += '\n';
  key += lowercase(scheme);
  key += "://";
  key += lowercase(host);
  key += target;
  return key;
}

std::string_view host_of(const RequestHead& request) {
  auto h = request.headers.get("Host");
  return h ? *h : std::string_view();
}

// A Location / Content-Location on the same host, as (scheme, target); other origins are not ours to
// invalidate (RFC 9111 §4.4).
std::optional<std::pair<std::string, std::string>> same_origin(std::string_view uri, std::string_view scheme,
                                                               std::string_view host) {
  uri = uri.substr(0, uri.find('#'));
  if (!uri.empty() && uri[0] == '/' && uri.compare(0, 2, "//") != 0)
    return std::pair{std::string(scheme), std::string(uri)};
  auto sep = uri.find("://");
  if (sep == std::string_view::npos) return std::nullopt;
  auto rest = uri.substr(sep + 3);
  auto slash = rest.find('/');
  if (!iequals(rest.substr(0, slash), host)) return std::nullopt;
  return std::pair{std::string(uri.substr(0, sep)),
                   slash == std::string_view::npos ? std::string("/") : std::string(rest.substr(slash))};
}

std::optional<std::uint64_t> parse_length(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  if (s.empty() || s.size() > 19) return std::nullopt;
  std::uint64_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return n;
}

bool has_validator(const Headers& h) {
  return h.has("ETag") || h.has("Last-Modified");
}

}  // namespace

struct CacheStage::State {
  Label label = Label::Miss;
  bool answered = false;  // on_request answered (HIT, 304, 504): on_response meets its own answer
  bool replaced = false;  // on_response answered REVALIDATED from the store
  bool unsafe = false;    // POST, PUT, ...: invalidates on success
  bool authorization = false;
  bool own_conditional = false;  // If-None-Match / If-Modified-Since added by the cache
  std::string key;
  SysTime request_time{};
  SysTime response_time{};
  Headers request_headers;  // the request as looked up, before the cache's conditionals: Vary values
  CacheStore::Entry stale;  // the stored variant found unusable (revalidated when it has a validator)
  std::shared_ptr<CacheTee> tee;
};

namespace {
CacheStage::State* state_of(const Exchange& ex, const Stage* stage) {
  auto it = ex.stage_state.find(stage);
  return it == ex.stage_state.end() ? nullptr : static_cast<CacheStage::State*>(it->second.get());
}

// A stored variant answers the request without the upstream when fresh enough for both sides
// (RFC 9111 §4.2, §5.2.1). max-age=0 always revalidates (what browsers send on reload), even at age 0.
bool usable(const CachedResponse& e, const CacheControl& req, milliseconds age) {
  if (req.no_cache || e.always_revalidate) return false;
  if (req.max_age && (*req.max_age == 0 || age > seconds(*req.max_age))) return false;
  const auto left = e.lifetime - age;
  if (left > milliseconds(0)) return !req.min_fresh || left >= seconds(*req.min_fresh);
  if (e.never_stale) return false;
  return req.max_stale_any || (req.max_stale && -left <= seconds(*req.max_stale));
}
}  // namespace

CacheStage::CacheStage(CacheSettings settings, Clock clock)
    : settings_(std::move(settings)), clock_(std::move(clock)), store_(settings_.max_size) {}

std::unique_ptr<Stage> CacheStage::create(const json& params, const std::string& path, const StageContext&,
                                          std::vector<std::string>& problems) {
  ParamReader r{problems};
  const auto before = problems.size();
  if (!params.is_object()) {
    r.fail(path, "expected an object, got " + json_describe(params));
    return nullptr;
  }
  r.known_keys(params, path, {"max_size", "max_entry", "default_ttl", "heuristic", "methods", "private"});
  CacheSettings s;
  auto positive_size = [&](const char* key, std::uint64_t& out) {
    auto it = params.find(key);
    if (it == params.end()) return;
    if (auto n = r.size(*it, json_path_key(path, key))) {
      if (*n == 0)
        r.fail(json_path_key(path, key), "must be above 0");
      else
        out = *n;
    }
  };
  positive_size("max_size", s.max_size);
  positive_size("max_entry", s.max_entry);
  if (auto it = params.find("default_ttl"); it != params.end())
    if (auto d = r.duration(*it, json_path_key(path, "default_ttl"))) s.default_ttl = *d;
  if (auto it = params.find("heuristic"); it != params.end())
    if (auto b = r.boolean(*it, json_path_key(path, "heuristic"))) s.heuristic = *b;
  if (auto it = params.find("private"); it != params.end())
    if (auto b = r.boolean(*it, json_path_key(path, "private"))) s.private_cache = *b;
  if (auto it = params.find("methods"); it != params.end()) {
    const auto mp = json_path_key(path, "methods");
    if (auto list = r.strings(*it, mp)) {
      s.get = s.head = false;
      for (std::size_t i = 0; i < list->size(); ++i) {
        const auto m = (*list)[i];
        if (iequals(m, "GET")) {
          s.get = true;
        } else if (iequals(m, "HEAD")) {
          s.head = true;
        } else {
          r.fail(json_path_index(mp, i), "only GET and HEAD are cached, got \"" + m + "\"");
        }
      }
      if (list->empty()) {
        r.fail(mp, "at least one method (GET, HEAD) is required");
      } else if (s.head && !s.get) {
        r.fail(mp, "HEAD is answered from stored GET responses, so it needs GET too");
      }
    }
  }
  if (problems.size() != before) return nullptr;
  return std::make_unique<CacheStage>(std::move(s));
}

FreshnessRules CacheStage::rules() const {
  return FreshnessRules{!settings_.private_cache, settings_.heuristic, settings_.default_ttl};
}

namespace {
// judge fills in what the freshness rules say about an entry about to be stored and returns why it may
// not be stored (nullopt: it may).
std::optional<std::string> judge(CachedResponse& e, bool authorization, const FreshnessRules& rules) {
  const auto cc = parse_cache_control(e.headers);
  e.lifetime = freshness_lifetime(e.status, e.headers, cc, e.response_time, rules);
  e.always_revalidate = cc.no_cache;
  e.never_stale = cc.must_revalidate || (rules.shared && (cc.proxy_revalidate || cc.s_maxage));
  e.hide_unvalidated = cc.no_cache_fields;
  auto why = why_not_storable(StoreQuestion{e.status, e.headers, cc, authorization, rules.shared,
                                            cc.no_cache ? milliseconds(0) : e.lifetime});
  if (!why && rules.shared) {
    // private="...": a shared cache stores the response without those fields (RFC 9111 §5.2.2.7). A
    // cookie is one user's: unless the upstream says public, it is never kept for the next user, not
    // even for after a revalidation as no-cache="Set-Cookie" would allow.
    for (const auto& f : cc.private_fields) e.headers.remove(f);
    if (!cc.is_public) e.headers.remove("Set-Cookie");
  }
  return why;
}
}  // namespace

LocalResponse CacheStage::from_store(const CachedResponse& e, const char* label, bool validated) const {
  LocalResponse r;
  r.status = e.status;
  r.headers = e.headers;
  r.headers.remove("Age");
  r.headers.remove("Content-Length");  // the engine sets it from the body (also for HEAD)
  if (!validated)
    for (const auto& f : e.hide_unvalidated) r.headers.remove(f);
  const auto age = current_age(e.headers, e.request_time, e.response_time, clock_());
  r.headers.add("Age", std::to_string(std::chrono::duration_cast<seconds>(age).count()));
  r.headers.set("X-Rproxy-Cache", label);
  r.body = e.body;  // the engine sends none for HEAD
  return r;
}

Decision CacheStage::answer_hit(Exchange& ex, State& st, const CachedResponse& e) {
  st.label = Label::Hit;
  st.answered = true;
  ex.tags["cache"] = "hit";
  const Headers& rh = ex.request.headers;
  // The client's own conditional, evaluated against the stored response (RFC 9111 §4.3.2); only a 2xx
  // turns into 304. If-Modified-Since counts only without If-None-Match.
  bool not_modified = false;
  if (e.status >= 200 && e.status < 300) {
    if (rh.has("If-None-Match")) {
      not_modified = etag_list_matches(rh.joined("If-None-Match"), e.headers.get("ETag").value_or(""));
    } else if (auto ims = rh.get("If-Modified-Since")) {
      auto since = parse_http_time(*ims);
      std::optional<SysTime> modified;
      if (auto lm = e.headers.get("Last-Modified")) modified = parse_http_time(*lm);
      if (!modified)
        if (auto d = e.headers.get("Date")) modified = parse_http_time(*d);
      not_modified = since && modified.value_or(e.response_time) <= *since;
    }
  }
  if (!not_modified) return Decision::respond(from_store(e, "HIT", false));
  LocalResponse r;
  r.status = 304;
  for (const char* name :
       {"Cache-Control", "Content-Location", "Date", "ETag", "Expires", "Last-Modified", "Vary"})
    for (const auto& h : e.headers)
      if (iequals(h.name, name)) r.headers.add(h.name, h.value);
  const auto age = current_age(e.headers, e.request_time, e.response_time, clock_());
  r.headers.add("Age", std::to_string(std::chrono::duration_cast<seconds>(age).count()));
  r.headers.add("X-Rproxy-Cache", "HIT");
  return Decision::respond(std::move(r));
}

Decision CacheStage::on_request(Exchange& ex) {
  auto st = std::make_shared<State>();
  ex.stage_state[this] = st;
  st->request_time = clock_();
  st->key = key_of(ex.route, ex.scheme, host_of(ex.request), ex.request.target);
  const auto& method = ex.request.method;
  const Headers& rh = ex.request.headers;
  const bool get = method == "GET";
  const bool head = method == "HEAD";
  auto bypass = [&] {
    st->label = Label::Bypass;
    ex.tags["cache"] = "bypass";
    return Decision::proceed();
  };
  if (!get && !head) {
    st->unsafe = method != "OPTIONS" && method != "TRACE";  // the safe methods besides GET and HEAD
    return bypass();
  }
  if ((get && !settings_.get) || (head && !settings_.head)) return bypass();
  const auto cc = request_cache_control(rh);
  // no-store: nothing of this exchange may be kept. If-Match / If-Unmodified-Since: preconditions on the
  // current state of the resource are the upstream's to evaluate.
  if (cc.no_store || rh.has("If-Match") || rh.has("If-Unmodified-Since")) return bypass();

  st->authorization = rh.has("Authorization");
  st->request_headers = rh;
  auto watch = [&] {
    st->tee = std::make_shared<CacheTee>(settings_.max_entry);
    ex.tees.push_back(st->tee);
  };
  if (st->authorization && !settings_.private_cache) {
    // Never answered with what another user got; stored when the response allows sharing (RFC 9111 §3.5),
    // then labelled MISS in on_response.
    st->label = Label::Bypass;
    if (get) watch();
    return Decision::proceed();
  }

  const auto now = clock_();
  auto entry = store_.find(st->key, [&](const CachedResponse& e) { return vary_matches(e.vary, rh); });
  if (entry &&
      usable(*entry, cc, current_age(entry->headers, entry->request_time, entry->response_time, now)))
    return answer_hit(ex, *st, *entry);
  if (cc.only_if_cached) {
    st->answered = true;
    ex.tags["cache"] = "miss";
    LocalResponse r;
    r.status = 504;
    r.headers.add("Content-Type", "text/plain; charset=utf-8");
    r.headers.add("X-Rproxy-Error", "cache_only_if_cached");
    r.headers.add("X-Rproxy-Cache", "MISS");
    r.body = "504 Gateway Timeout: only-if-cached and no usable stored response for " + method + " " +
             ex.request.target + "\n";
    return Decision::respond(std::move(r));
  }
  st->stale = entry;  // replaced by what the upstream answers, or dropped when that may not be stored
  if (entry && has_validator(entry->headers)) {
    // A client conditional goes on as it is (the 304 is then for the client); otherwise ask about ours.
    if (!rh.has("If-None-Match") && !rh.has("If-Modified-Since")) {
      st->own_conditional = true;
      if (auto etag = entry->headers.get("ETag")) ex.request.headers.set("If-None-Match", std::string(*etag));
      if (auto lm = entry->headers.get("Last-Modified"))
        ex.request.headers.set("If-Modified-Since", std::string(*lm));
    }
  }
  if (get || st->stale) watch();
  st->label = Label::Miss;
  return Decision::proceed();
}

Decision CacheStage::revalidated(Exchange& ex, State& st, const Headers& not_modified) {
  // The stored response, its fields updated from the 304 (RFC 9111 §4.3.4), restarts its life now.
  auto fresh = std::make_shared<CachedResponse>(*st.stale);
  fresh->headers = freshen_headers(st.stale->headers, not_modified);
  // The old Age and Date describe the old response: a 304 without them must not age the new one.
  if (!not_modified.has("Age")) fresh->headers.remove("Age");
  if (!not_modified.has("Date")) fresh->headers.set("Date", format_http_time(st.response_time));
  fresh->request_time = st.request_time;
  fresh->response_time = st.response_time;
  fresh->vary = vary_key(fresh->headers, st.request_headers);
  // This client gets the merged response as it is (a Set-Cookie of the 304 included); the stored copy
  // is then trimmed by judge.
  auto answer = from_store(*fresh, "REVALIDATED", true);
  const auto stale = st.stale.get();
  const auto& request = st.request_headers;
  if (judge(*fresh, st.authorization, rules()))
    store_.erase(st.key, stale);  // the 304 withdrew permission (no-store, private, ...)
  else
    store_.put(st.key, fresh,
               [&](const CachedResponse& e) { return &e == stale || vary_matches(e.vary, request); });
  st.label = Label::Revalidated;
  ex.tags["cache"] = "revalidated";
  if (!st.own_conditional) return Decision::proceed();  // the client's 304 goes on
  st.replaced = true;
  return Decision::respond(std::move(answer));
}

Decision CacheStage::on_response(Exchange& ex) {
  auto* st = state_of(ex, this);
  if (!st || !ex.response || st->answered || st->replaced) return Decision::proceed();
  st->response_time = clock_();
  // The upstream's head as it was sent, not as later stages edited it (rproxy's own errors have no tee head).
  const bool teed = st->tee && st->tee->head;
  const Headers& upstream = teed ? st->tee->head->headers : ex.response->headers;
  const int status = teed ? st->tee->head->status : ex.response->status;
  if (st->stale && status == 304 &&
      (st->own_conditional || validators_select(st->stale->headers, upstream))) {
    auto d = revalidated(ex, *st, upstream);
    if (d.kind == Decision::Kind::Respond) return d;
  } else if (st->authorization && st->label == Label::Bypass) {
    const auto cc = parse_cache_control(upstream);
    if (cc.is_public || cc.s_maxage || cc.must_revalidate) st->label = Label::Miss;
  }
  if (st->label == Label::Miss) ex.tags["cache"] = "miss";
  ex.response->headers.set("X-Rproxy-Cache", label_text(st->label));
  return Decision::proceed();
}

void CacheStage::store(const Exchange& ex, State& st) {
  auto& tee = *st.tee;
  if (!tee.head || tee.head->status == 304) return;
  const auto& head = *tee.head;
  // Only a response the client got whole: no error, the status unchanged by later stages, every teed byte
  // sent on (a fault stage's truncation or a client gone leaves fewer), and as long as it said it was.
  const auto& out = ex.outcome;
  auto declared = head.headers.get("Content-Length");
  const bool whole = out.error.empty() && out.status == head.status && !tee.over &&
                     tee.size == out.bytes_out && (!declared || parse_length(*declared) == tee.size);
  if (!whole) return;
  auto e = std::make_shared<CachedResponse>();
  e->status = head.status;
  e->headers = head.headers;
  strip_hop_by_hop(e->headers);
  e->body = std::move(tee.body);
  e->request_time = st.request_time;
  e->response_time = st.response_time == SysTime{} ? clock_() : st.response_time;
  // RFC 9110 §6.6.1: a cache records when a response without Date arrived (and Age builds on it).
  if (!e->headers.has("Date")) e->headers.add("Date", format_http_time(e->response_time));
  if (judge(*e, st.authorization, rules())) {
    // The upstream answered the revalidation with something we may not keep: the stale copy is outdated.
    if (st.stale && head.status < 500) store_.erase(st.key, st.stale.get());
    return;
  }
  e->vary = vary_key(e->headers, st.request_headers);
  const auto& request = st.request_headers;
  if (store_.put(st.key, std::move(e),
                 [&](const CachedResponse& old) { return vary_matches(old.vary, request); }))
    stored_.fetch_add(1, std::memory_order_relaxed);
}

void CacheStage::invalidate(const Exchange& ex, const State& st) {
  // RFC 9111 §4.4: a successful unsafe request changes the target, and may change what Location and
  // Content-Location point at.
  if (ex.outcome.status < 200 || ex.outcome.status >= 400) return;
  store_.erase(st.key);
  if (!ex.response) return;
  const auto host = host_of(ex.request);
  for (const char* name : {"Location", "Content-Location"})
    if (auto v = ex.response->headers.get(name))
      if (auto target = same_origin(*v, ex.scheme, host))
        store_.erase(key_of(ex.route, target->first, host, target->second));
}

void CacheStage::on_complete(const Exchange& ex) {
  auto* st = state_of(ex, this);
  if (!st) return;
  switch (st->label) {
    case Label::Hit:
      hits_.fetch_add(1, std::memory_order_relaxed);
      break;
    case Label::Miss:
      misses_.fetch_add(1, std::memory_order_relaxed);
      break;
    case Label::Revalidated:
      revalidated_.fetch_add(1, std::memory_order_relaxed);
      break;
    case Label::Bypass:
      bypass_.fetch_add(1, std::memory_order_relaxed);
      break;
  }
  if (st->unsafe)
    invalidate(ex, *st);
  else if (st->tee && !st->replaced && ex.request.method == "GET")
    store(ex, *st);
}

json CacheStage::report() const {
  const auto s = store_.stats();
  return {{"hits", hits_.load()},     {"misses", misses_.load()}, {"revalidated", revalidated_.load()},
          {"bypass", bypass_.load()}, {"stored", stored_.load()}, {"evicted", s.evicted},
          {"entries", s.entries},     {"bytes", s.bytes}};
}

std::string CacheStage::summary() const {
  const auto s = store_.stats();
  return "cache: " + std::to_string(hits_.load()) + " hits, " + std::to_string(misses_.load()) + " misses, " +
         std::to_string(revalidated_.load()) + " revalidated, " + std::to_string(bypass_.load()) +
         " bypass, " + std::to_string(stored_.load()) + " stored, " + std::to_string(s.evicted) +
         " evicted, " + std::to_string(s.entries) + " entries, " + std::to_string(s.bytes) + " bytes\n";
}

}  // namespace rproxy::stages
