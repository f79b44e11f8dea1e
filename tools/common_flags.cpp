#include "common_flags.hpp"

#include "cli.hpp"

#include "stages/rate_limit.hpp"


namespace rproxy::cli {

void CommonFlags::add_to(CLI::App& sub) {
  sub.add_option("--scenario", scenario_file, "Load this scenario JSON first; flags override it")
      ->check(CLI::ExistingFile)->type_name("FILE");
  sub.add_flag("--print-scenario", print_scenario, "Print the scenario these flags build, then exit 0");
  sub.add_option("--listen", listen, "Listen address (repeatable) [listeners]; default 127.0.0.1:8080")
      ->type_name("ADDR")->allow_extra_args(false);
  sub.add_option("--to", to,
                 "Upstream [NAME=]URL for all paths (repeat to balance; NAME labels it) [routes[].upstreams]")
      ->type_name("[NAME=]URL")->allow_extra_args(false);
  sub.add_option("--route", routes, "PREFIX=URL[,URL...]: send a path prefix to upstreams (repeatable) [routes[]]")
      ->type_name("PREFIX=URL")->allow_extra_args(false);
  sub.add_option("--balance", balance, "round_robin|least_conn|random|weighted [routes[].balance]")
      ->check(CLI::IsMember({"round_robin", "least_conn", "random", "weighted"}))->type_name("POLICY")
      ->default_str("round_robin");  // shown in --help only: an unset flag leaves the scenario's value
  sub.add_option("--host-header", host_header, "preserve|upstream: Host sent upstream [routes[].host_header]")
      ->check(CLI::IsMember({"preserve", "upstream"}))->type_name("MODE")->default_str("preserve");
  sub.add_flag("--strip-prefix", strip_prefix, "Remove the --route prefix before forwarding [routes[].strip_prefix]");
  sub.add_option("--connect-timeout", connect_timeout, "Upstream connect timeout, default 5s [routes[].connect_timeout]")
      ->type_name("DURATION");
  sub.add_option("--read-timeout", read_timeout, "Upstream response timeout, default 60s [routes[].read_timeout]")
      ->type_name("DURATION");
  sub.add_option("--max-conns", max_conns, "Concurrent client connections, default 1024 [limits.max_conns]")
      ->type_name("N");
  sub.add_option("--max-body", max_body, "Request body limit (413 beyond), 0 = none [limits.max_body]")
      ->type_name("SIZE");
  sub.add_option("--head-timeout", head_timeout, "Deadline for a whole request head (408), default 10s [limits.head_timeout]")
      ->type_name("DURATION");
  sub.add_option("--idle-timeout", idle_timeout, "Keep-alive idle timeout, default 75s [limits.idle_timeout]")
      ->type_name("DURATION");
  sub.add_option("--body-timeout", body_timeout, "Request body idle timeout (408), default 30s [limits.body_timeout]")
      ->type_name("DURATION");
  sub.add_option("--write-timeout", write_timeout, "Drop a client that stops reading, default 30s [limits.write_timeout]")
      ->type_name("DURATION");
  sub.add_option("--drain-timeout", drain_timeout, "Graceful stop budget, default 30s [limits.drain_timeout]")
      ->type_name("DURATION");
  sub.add_option("--underscore-headers", underscore_headers,
                 "Request fields named with _ : drop (default), reject (400) or allow [limits.underscore_headers]")
      ->check(CLI::IsMember({"drop", "reject", "allow"}))
      ->type_name("MODE")
      ->default_str("drop");
  sub.add_option("--access-log", access_log, "Access log file, or - for stderr [access_log.path]")->type_name("FILE|-");
  sub.add_option("--log-format", log_format, "text|json [access_log.format]")
      ->check(CLI::IsMember({"text", "json"}))->type_name("FORMAT")->default_str("text");
  sub.add_option("--seed", seed, "Seed for every random choice, default 1 [seed]")->type_name("N");
  sub.add_option("--workers", workers, "Event loops, 0 = one per core [workers]")->type_name("N");
  sub.add_option("--report", report, "Write a JSON report of what every stage saw on exit [report]")
      ->type_name("FILE");
  sub.add_option("--admin", admin,
                 "Serve the live-control API (report, fault rules) on this loopback address, e.g. "
                 "127.0.0.1:9901 [admin]")
      ->type_name("ADDR");
  sub.add_option("--admin-token-file", admin_token_file,
                 "Require Authorization: Bearer <first line of FILE> on the admin API (or set RPROXY_ADMIN_TOKEN)")
      ->type_name("FILE")
      ->check(CLI::ExistingFile);
  sub.add_flag("--tls", tls,
               "Serve HTTPS on every listener (default 127.0.0.1:8443), with a certificate from rproxy's local CA "
               "unless --tls-cert is given [listeners: https://ADDR]");
  sub.add_option("--tls-cert", tls_cert, "PEM certificate chain for HTTPS (implies --tls; needs --tls-key) [tls.cert]")
      ->type_name("FILE")->check(CLI::ExistingFile);
  sub.add_option("--tls-key", tls_key, "PEM private key of --tls-cert [tls.key]")
      ->type_name("FILE")->check(CLI::ExistingFile);
  sub.add_option("--redirect-http", redirect_http,
                 "Also listen for plain HTTP on this port (or ADDR) and redirect it to HTTPS with 308 "
                 "[tls.redirect_http]")
      ->type_name("PORT|ADDR");
  sub.add_option("--upstream-ca", upstream_ca,
                 "Trust this CA (PEM) for https:// upstreams, besides the system store [routes[].upstream_tls.ca]")
      ->type_name("FILE")->check(CLI::ExistingFile);
  sub.add_flag("--insecure", insecure,
               "Do not verify https:// upstream certificates (a warning is printed) [routes[].upstream_tls.insecure]");
  sub.add_option("--upstream-server-name", upstream_server_name,
                 "SNI and certificate name for https:// upstreams instead of the URL's host "
                 "[routes[].upstream_tls.server_name]")
      ->type_name("NAME");
  sub.add_option("--backup", backups,
                 "Backup upstream for --to, used only while the others are down (repeatable) "
                 "[routes[].upstreams[].backup]")
      ->type_name("URL")->allow_extra_args(false);
  sub.add_option("--health-check", health_check,
                 "Probe every upstream with GET PATH (2xx/3xx passes); down upstreams get no traffic "
                 "[routes[].health_check.path]")
      ->type_name("PATH");
  sub.add_option("--health-interval", health_interval, "Time between health probes, default 2s [routes[].health_check.interval]")
      ->type_name("DURATION");
  sub.add_option("--retries", retries, "Retry a failed attempt up to N times with backoff, default 0 [routes[].retries.attempts]")
      ->type_name("N");
  sub.add_option("--retry-on", retry_on,
                 "What is retried: connect, reset, timeout, 5xx or a status like 503 (repeatable), default connect "
                 "and reset [routes[].retries.on]")
      ->type_name("COND")->allow_extra_args(false)
      ->check(values_hint({"connect", "reset", "timeout", "5xx"}));
  sub.add_option("--hold", hold,
                 "While every upstream is down, hold idempotent requests up to this long (a dev server "
                 "restarting) instead of failing at once [routes[].hold]")
      ->type_name("DURATION");
  sub.add_option("--rate-limit", rate_limit,
                 "Admit at most RATE requests per client, e.g. 10/s, 600/m; 429 with Retry-After beyond "
                 "[stages: rate_limit]")
      ->type_name("RATE");
  sub.add_option("--rate-limit-burst", rate_limit_burst, "Requests a client may send ahead of the rate, default 0")
      ->type_name("N");
  sub.add_option("--rate-limit-key", rate_limit_key, "ip (default), header:NAME, route or global")
      ->type_name("KEY")
      ->check(values_hint({"ip", "header:NAME", "route", "global"}))
      ->default_str("ip");
  sub.add_flag("--compress", compress,
               "Compress text-like responses with brotli or gzip for clients that accept it, as they stream "
               "[stages: compress]");
  sub.add_flag("--cache", cache,
               "Cache responses in memory as RFC 9111 allows (Cache-Control, Expires, Vary, revalidation), 64 MiB "
               "LRU; X-Rproxy-Cache tells HIT, MISS, REVALIDATED or BYPASS [stages: cache]");
  sub.add_option("--cache-ttl", cache_ttl,
                 "Also cache responses that say nothing about freshness for this long (implies --cache) "
                 "[stages: cache.default_ttl]")
      ->type_name("DURATION");
  sub.add_flag("--cors", cors,
               "Answer CORS preflights and add CORS headers for any origin (or --cors-origin) [stages: cors]");
  sub.add_option("--cors-origin", cors_origins,
                 "Allowed origin or pattern, repeatable, e.g. http://localhost:5173, http://localhost:* (implies --cors)")
      ->type_name("ORIGIN")->allow_extra_args(false);
  sub.add_flag("--cors-credentials", cors_credentials,
               "Allow credentials (cookies) cross-origin; the origin is echoed instead of * (implies --cors)");
  sub.add_option("--allow", allow, "Admit only clients in this address or CIDR range, repeatable [stages: access]")
      ->type_name("CIDR")->allow_extra_args(false);
  sub.add_option("--deny", deny, "Refuse clients in this address or CIDR range (403), repeatable [stages: access]")
      ->type_name("CIDR")->allow_extra_args(false);
  sub.add_option("--basic-auth", basic_auth,
                 "Require HTTP Basic auth against an htpasswd file (bcrypt, sha512-crypt, yescrypt hashes) "
                 "[stages: access]")
      ->type_name("FILE")->check(CLI::ExistingFile);
  sub.add_option("--bearer-tokens", bearer_tokens,
                 "Require a bearer token from this file (sha256:HEX or plain, one per line) [stages: access]")
      ->type_name("FILE")->check(CLI::ExistingFile);
  sub.add_option("--bearer-header", bearer_header,
                 "Header carrying the token, default Authorization (Bearer TOKEN); e.g. X-Api-Key")
      ->type_name("NAME");
  sub.add_option("--static", static_dirs,
                 "Serve files from DIR (on PREFIX, e.g. /assets=./public), repeatable [routes[]: static stage]")
      ->type_name("[PREFIX=]DIR")->allow_extra_args(false);
  sub.add_flag("--spa", spa, "With --static: paths that name no file get index.html (client-side routing)");
  sub.add_flag("--quiet", quiet, "No live view on a terminal and no exit summary");
  sub.add_flag("--watch", watch,
               "Reload the --scenario file when it changes (and on SIGHUP); a broken file is reported and the "
               "running configuration stays");
  sub.add_option("--summary-json", summary_json,
                 "On exit, write the summary (per route and variant: requests, status classes, p50/p99, bytes) as "
                 "JSON")
      ->type_name("FILE");
}

void split_named_url(const std::string& text, std::string& name, std::string& url) {
  auto eq = text.find('=');
  auto scheme = text.find("://");
  if (eq != std::string::npos && (scheme == std::string::npos || eq < scheme)) {
    name = text.substr(0, eq);
    url = text.substr(eq + 1);
  } else {
    name.clear();
    url = text;
  }
}

bool parse_route_flag(const std::string& text, std::string& prefix, std::vector<std::string>& urls) {
  auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) return false;
  prefix = text.substr(0, eq);
  urls.clear();
  std::string rest = text.substr(eq + 1);
  std::size_t pos = 0;
  while (pos <= rest.size()) {
    auto comma = rest.find(',', pos);
    auto item = rest.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (item.empty()) return false;
    urls.push_back(item);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return !urls.empty();
}

void CommonFlags::gateway_stages(Scenario& s, std::vector<std::string>& problems) const {
  std::vector<StageSpec> added;
  if (rate_limit) {
    std::uint64_t count = 0;
    std::chrono::seconds per{1};
    if (auto err = stages::parse_rate(*rate_limit, count, per)) problems.push_back("--rate-limit: " + *err);
  } else if (rate_limit_burst || rate_limit_key) {
    problems.push_back(std::string(rate_limit_burst ? "--rate-limit-burst" : "--rate-limit-key") +
                       ": needs --rate-limit RATE");
  }
  if (compress) added.push_back(StageSpec{"compress", "", nlohmann::json::object()});
  if (cors || !cors_origins.empty() || cors_credentials) {
    nlohmann::json params = nlohmann::json::object();
    if (!cors_origins.empty()) params["origins"] = cors_origins;
    if (cors_credentials) params["credentials"] = true;
    added.push_back(StageSpec{"cors", "", params});
  }
  if (rate_limit || rate_limit_burst || rate_limit_key) {
    nlohmann::json params = {{"rate", rate_limit.value_or("")}};
    if (rate_limit_burst) params["burst"] = *rate_limit_burst;
    if (rate_limit_key) params["key"] = *rate_limit_key;
    added.push_back(StageSpec{"rate_limit", "", params});
  }
  if (!allow.empty() || !deny.empty() || basic_auth || bearer_tokens) {
    nlohmann::json params = nlohmann::json::object();
    if (!allow.empty()) params["allow"] = allow;
    if (!deny.empty()) params["deny"] = deny;
    if (basic_auth) params["basic"] = {{"users_file", *basic_auth}};
    if (bearer_tokens) {
      params["bearer"] = {{"tokens_file", *bearer_tokens}};
      if (bearer_header) params["bearer"]["header"] = *bearer_header;
    }
    added.push_back(StageSpec{"access", "", params});
  } else if (bearer_header) {
    problems.push_back("--bearer-header: needs --bearer-tokens FILE");
  }
  // The cache after access control and the rate limit: a hit must never skip them.
  if (cache || cache_ttl) {
    nlohmann::json params = nlohmann::json::object();
    if (cache_ttl) params["default_ttl"] = *cache_ttl;
    added.push_back(StageSpec{"cache", "", params});
  }
  // Compression first: response stages run in reverse order, so it sees every header the others set.
  // CORS next, so a 401 or 429 still carries the CORS headers a browser needs to read it; the rate limit
  // before access control, so password guessing is throttled before it costs a bcrypt each.
  s.stages.insert(s.stages.begin(), added.begin(), added.end());
}

void CommonFlags::apply_tls(Scenario& s, std::vector<std::string>& problems) const {
  if (tls_cert) s.tls.cert = *tls_cert;
  if (tls_key) s.tls.key = *tls_key;
  if (tls_cert.has_value() != tls_key.has_value())
    problems.push_back(std::string(tls_cert ? "--tls-cert" : "--tls-key") + ": give --tls-cert and --tls-key together");
  if (tls || tls_cert) {
    // 8080 speaking TLS would surprise; an HTTPS default gets its own port.
    if (listen.empty() && scenario_file.empty()) s.listeners = {ListenAddress{"127.0.0.1", 8443, true}};
    for (auto& l : s.listeners) l.tls = true;
  }
  if (redirect_http) {
    ListenAddress a;
    const auto& text = *redirect_http;
    bool port_only = !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
    if (auto err = parse_listen_address(text, a)) {
      problems.push_back("--redirect-http: " + *err);
      return;
    }
    if (port_only) {
      // A bare port listens where the (first) HTTPS listener does.
      for (const auto& l : s.listeners)
        if (l.tls) {
          a.host = l.host;
          break;
        }
    }
    s.tls.redirect_http = a;
  }
}

Scenario CommonFlags::build() const {
  Scenario s;
  if (!scenario_file.empty()) s = load_scenario(scenario_file);
  std::vector<std::string> problems;

  auto url_of = [&](const std::string& flag, const std::string& text) {
    UpstreamSpec u;
    if (auto err = parse_url(text, u.url)) problems.push_back(flag + " " + text + ": " + *err);
    return u;
  };
  auto duration_of = [&](const std::string& flag, const std::optional<std::string>& text, Millis& out) {
    if (!text) return;
    if (auto err = parse_duration(*text, out)) problems.push_back(flag + ": " + *err);
  };

  if (!listen.empty()) {
    s.listeners.clear();
    for (const auto& l : listen) {
      ListenAddress a;
      if (auto err = parse_listen_address(l, a)) problems.push_back("--listen " + l + ": " + *err);
      s.listeners.push_back(a);
    }
  }
  if (!to.empty() || !routes.empty() || !static_dirs.empty()) {
    s.routes.clear();
    for (const auto& text : static_dirs) {
      // "/assets=./public" or "./public"; a DIR may itself contain '=' only after a prefix.
      std::string prefix = "/";
      std::string dir = text;
      if (auto eq = text.find('='); eq != std::string::npos && !text.empty() && text[0] == '/') {
        prefix = text.substr(0, eq);
        dir = text.substr(eq + 1);
      }
      Route route;
      if (prefix != "/") route.match.path_prefix = prefix;
      nlohmann::json params = {{"root", dir}, {"prefix", prefix}};
      if (spa) params["spa"] = true;
      route.stages.push_back(StageSpec{"static", "", params});
      s.routes.push_back(std::move(route));
    }
    for (const auto& r : routes) {
      std::string prefix;
      std::vector<std::string> urls;
      if (!parse_route_flag(r, prefix, urls)) {
        problems.push_back("--route " + r + ": expected PREFIX=URL[,URL...], e.g. /api=http://127.0.0.1:3000");
        continue;
      }
      Route route;
      route.match.path_prefix = prefix;
      route.strip_prefix = strip_prefix;
      for (const auto& u : urls) route.upstreams.push_back(url_of("--route", u));
      s.routes.push_back(std::move(route));
    }
    if (!to.empty()) {
      Route route;
      for (const auto& text : to) {
        std::string name;
        std::string url;
        split_named_url(text, name, url);
        auto up = url_of("--to", url);
        up.name = name;
        if (!name.empty() && !is_valid_scenario_name(name))
          problems.push_back("--to " + text + ": the name before \"=\" must be 1-64 letters, digits, \"_\", \"-\" or \".\"");
        route.upstreams.push_back(up);
      }
      for (const auto& text : backups) {
        auto up = url_of("--backup", text);
        up.backup = true;
        route.upstreams.push_back(up);
      }
      s.routes.push_back(std::move(route));
    }
  }
  if (!backups.empty() && to.empty()) problems.push_back("--backup: needs --to (the upstreams it backs up)");
  for (auto& route : s.routes) {
    if (upstream_ca) route.upstream_tls.ca = *upstream_ca;
    if (insecure) route.upstream_tls.insecure = true;
    if (upstream_server_name) route.upstream_tls.server_name = *upstream_server_name;
    if (balance) route.balance = *parse_balance(*balance);  // IsMember already checked the spelling
    if (host_header) route.host_header = *parse_host_header(*host_header);
    duration_of("--connect-timeout", connect_timeout, route.connect_timeout);
    duration_of("--read-timeout", read_timeout, route.read_timeout);
    if (health_check || health_interval) {
      if (!route.health_check) route.health_check.emplace();
      if (health_check) route.health_check->path = *health_check;
      duration_of("--health-interval", health_interval, route.health_check->interval);
    }
    if (retries) route.retries.attempts = *retries;
    if (!retry_on.empty()) route.retries.on = retry_on;
    duration_of("--hold", hold, route.hold);
  }
  if (watch && scenario_file.empty()) problems.push_back("--watch: needs --scenario FILE (the file to watch)");
  if (spa && static_dirs.empty()) problems.push_back("--spa: needs --static DIR");
  apply_tls(s, problems);
  gateway_stages(s, problems);
  if (max_conns) s.limits.max_conns = *max_conns;
  if (max_body) {
    if (auto err = parse_size(*max_body, s.limits.max_body)) problems.push_back("--max-body: " + *err);
  }
  duration_of("--head-timeout", head_timeout, s.limits.head_timeout);
  duration_of("--idle-timeout", idle_timeout, s.limits.idle_timeout);
  duration_of("--body-timeout", body_timeout, s.limits.body_timeout);
  duration_of("--write-timeout", write_timeout, s.limits.write_timeout);
  duration_of("--drain-timeout", drain_timeout, s.limits.drain_timeout);
  if (underscore_headers) s.limits.underscore_headers = *parse_underscore_headers(*underscore_headers);
  if (access_log) s.access_log.path = *access_log;
  if (log_format) s.access_log.format = *log_format;
  if (seed) s.seed = *seed;
  if (workers) s.workers = *workers;
  if (report) s.report = *report;
  if (admin) {
    ListenAddress a;
    if (auto err = parse_listen_address(*admin, a))
      problems.push_back("--admin: " + *err);
    else if (!is_loopback_host(a.host))
      problems.push_back("--admin " + *admin + ": the admin endpoint listens on loopback only (127.0.0.1, ::1)");
    else
      s.admin = a;
  }
  if (s.routes.empty() && problems.empty() && !allow_no_upstream)
    problems.push_back("no upstream: give --to URL, --route PREFIX=URL or --scenario FILE");
  if (!problems.empty()) throw ConfigError(problems);
  if (s.routes.empty()) return s;  // allow_no_upstream: the caller completes and validates it
  // Flags produce the same model a file does, so they get the same names and the same validation.
  fill_default_names(s);
  auto more = validate_scenario(s);
  if (!more.empty()) throw ConfigError(more);
  return s;
}

}  // namespace rproxy::cli
