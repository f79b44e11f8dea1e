// Flags every proxying subcommand shares. Each flag maps to exactly one scenario key (documented in its
// help text); apply() layers the flags given on the command line over a base scenario.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "rproxy/scenario.hpp"
#include "run_scenario.hpp"

namespace rproxy::cli {

struct CommonFlags {
  std::string scenario_file;
  bool print_scenario = false;
  std::vector<std::string> listen;
  std::vector<std::string> to;
  std::vector<std::string> routes;
  std::optional<std::string> balance;
  std::optional<std::string> host_header;
  bool strip_prefix = false;
  std::optional<std::string> connect_timeout;
  std::optional<std::string> read_timeout;
  std::optional<std::uint32_t> max_conns;
  std::optional<std::string> max_body;
  std::optional<std::string> head_timeout;
  std::optional<std::string> idle_timeout;
  std::optional<std::string> body_timeout;
  std::optional<std::string> write_timeout;
  std::optional<std::string> underscore_headers;
  std::optional<std::string> drain_timeout;
  std::optional<std::string> access_log;
  std::optional<std::string> log_format;
  std::optional<std::uint64_t> seed;
  std::optional<unsigned> workers;
  std::optional<std::string> report;
  std::optional<std::string> admin;
  bool tls = false;
  std::optional<std::string> tls_cert;
  std::optional<std::string> tls_key;
  std::optional<std::string> redirect_http;
  std::optional<std::string> upstream_ca;
  bool insecure = false;
  std::optional<std::string> upstream_server_name;
  std::vector<std::string> backups;
  std::optional<std::string> health_check;
  std::optional<std::string> health_interval;
  std::optional<unsigned> retries;
  std::vector<std::string> retry_on;
  std::optional<std::string> hold;
  std::optional<std::string> rate_limit;
  std::optional<std::uint64_t> rate_limit_burst;
  std::optional<std::string> rate_limit_key;
  bool compress = false;
  bool cache = false;
  std::optional<std::string> cache_ttl;
  bool cors = false;
  std::vector<std::string> cors_origins;
  bool cors_credentials = false;
  std::vector<std::string> allow;
  std::vector<std::string> deny;
  std::optional<std::string> basic_auth;
  std::optional<std::string> bearer_tokens;
  std::optional<std::string> bearer_header;
  std::vector<std::string> static_dirs;  // [PREFIX=]DIR
  bool spa = false;
  bool quiet = false;
  bool watch = false;
  std::optional<std::string> admin_token_file;
  std::optional<std::string> summary_json;

  // allow_no_upstream: build() accepts a scenario without routes (replay adds its own).
  bool allow_no_upstream = false;

  void add_to(CLI::App& sub);
  RunOptions run_options() const {
    return RunOptions{quiet, summary_json.value_or(""), {}, watch ? scenario_file : std::string(),
                      admin_token_file.value_or("")};
  }
  // build loads --scenario (if any) and applies the flags; throws ConfigError naming flags or JSON paths.
  Scenario build() const;

 private:
  // apply_tls layers --tls, --tls-cert/--tls-key and --redirect-http over the scenario.
  void apply_tls(Scenario& s, std::vector<std::string>& problems) const;
  // gateway_stages adds the stages --cors and --rate-limit ask for, scenario-wide, ahead of the others.
  void gateway_stages(Scenario& s, std::vector<std::string>& problems) const;
};

// split_named_url splits "NAME=URL" (as in --to a=http://127.0.0.1:3001) into name and URL; a plain URL
// gives an empty name.
void split_named_url(const std::string& text, std::string& name, std::string& url);

// parse_route_flag splits "PREFIX=URL[,URL...]" into prefix and URLs.
bool parse_route_flag(const std::string& text, std::string& prefix, std::vector<std::string>& urls);

}  // namespace rproxy::cli
