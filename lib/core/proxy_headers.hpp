// Proxy header rules (RFC 9110 §7.6): what a gateway removes, adds and rewrites on the way through.
#pragma once

#include <string>

#include "rproxy/http.hpp"
#include "rproxy/scenario.hpp"

namespace rproxy {

// ForwardContext is what the header rules need to know about the hop.
struct ForwardContext {
  std::string client_ip;
  std::string scheme = "http";      // of the listener the request arrived on
  std::string upstream_authority;   // host:port of the chosen upstream
  bool send_upstream_host = false;  // replace Host with upstream_authority
  bool upgrade = false;             // keep Upgrade + "Connection: upgrade" for a tunnel
};

// strip_connection_options drops every field named in Connection (never Host) and Connection itself.
void strip_connection_options(Headers& headers);

// remove_hop_by_hop drops Connection, every field it names, and the fixed hop-by-hop set.
// Content-Length and Transfer-Encoding go too: rproxy always re-frames bodies itself.
void remove_hop_by_hop(Headers& headers);

// host_header_value is the Host an upstream URL implies: the authority, without the scheme's default port.
std::string host_header_value(const Url& url);

// prepare_upstream_request edits a client request head into the head sent upstream.
void prepare_upstream_request(RequestHead& head, const ForwardContext& ctx);

// prepare_client_response edits an upstream response head before it goes to the client (framing headers
// are set by the engine afterwards).
void prepare_client_response(ResponseHead& head, bool upgrade);

// The pseudonym rproxy adds in Via.
inline constexpr const char* kViaPseudonym = "rproxy";

// via_hops counts the Via entries rproxy added (received-by kViaPseudonym) on a request's way here.
std::size_t via_hops(const Headers& headers);
// A request that passed through rproxy this often is going round in circles (an upstream that leads back
// to a listener, maybe through other proxies): it gets 508 before it can take every connection.
inline constexpr std::size_t kMaxViaHops = 8;

}  // namespace rproxy
