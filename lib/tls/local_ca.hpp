// A local certificate authority for `rproxy serve --tls` (like Caddy's internal CA or mkcert): a CA made
// once per user and a localhost certificate it signs, kept in a data directory and renewed without manual
// steps. The CA is name-constrained to localhost and loopback addresses, so trusting it (or leaking its
// key) cannot be used to impersonate real sites.
#pragma once

#include <chrono>
#include <string>

namespace rproxy::tls {

struct LocalCertificates {
  std::string dir;      // the data directory
  std::string ca_cert;  // <dir>/ca.pem
  std::string ca_key;   // <dir>/ca-key.pem (0600)
  std::string cert;     // <dir>/localhost.pem: the leaf only (clients know the CA)
  std::string key;      // <dir>/localhost-key.pem (0600)
  // <dir>/ca-bundle.pem: the system bundle followed by our CA, for variables such as SSL_CERT_FILE that
  // replace the default bundle instead of adding to it.
  std::string bundle;
  bool created_ca = false;     // this call created (or renewed) the CA
  bool issued_leaf = false;    // this call (re)issued the leaf
  std::string ca_subject;      // "CN=rproxy local CA user@host, O=rproxy development CA", for messages
  std::string leaf_not_after;  // "2027-11-27" (UTC), for messages
  std::string system_bundle;   // the system bundle copied into bundle; "" when none was found
};

// default_data_dir: $RPROXY_DATA_DIR if set and non-empty, else $XDG_DATA_HOME/rproxy, else
// $HOME/.local/share/rproxy. Throws std::runtime_error when none can be determined.
std::string default_data_dir();

// ensure_local_certificates creates the directory (0700) and the CA once and reuses them later. It
// (re)issues the leaf when it is missing, unreadable, not signed by the current CA, expires within 30 days
// or does not carry exactly the expected SANs, and renews the CA (and the leaf) when the CA expires within
// 30 days. The bundle is rewritten when it is missing, lacks the current CA or is older than the system
// bundle. Safe when several processes or threads run it at once (flock on <dir>/.lock while changing
// anything); files are written atomically and private keys are created 0600. Throws std::runtime_error
// naming the file and the OpenSSL or errno reason, e.g. for a corrupt ca.pem.
LocalCertificates ensure_local_certificates(const std::string& dir);

// describe_certificate: subject, issuer, SANs, CA and name constraints, validity and SHA-256 fingerprint
// of the first certificate in a PEM file, one "label: value" per line. Throws std::runtime_error naming
// the file.
std::string describe_certificate(const std::string& pem_path);

// certificate_fingerprint: SHA-256 of the first certificate in a PEM file, "AB:CD:...". Throws like
// describe_certificate.
std::string certificate_fingerprint(const std::string& pem_path);

// LeafPem is a certificate and its private key, PEM-encoded.
struct LeafPem {
  std::string cert;
  std::string key;
};

// issue_leaf_for signs, in memory, a leaf naming only dns_name (which must be under localhost) with the
// CA in dir. TLS listeners on the local CA use it for SNI on demand: OpenSSL-based clients (curl, Python,
// Node) refuse the leaf's *.localhost wildcard, since it stands for a single label, so app.localhost gets
// a certificate of its own. Throws std::runtime_error when the CA cannot be read or the name is not under
// localhost.
LeafPem issue_leaf_for(const std::string& dir, const std::string& dns_name);

// detail: building blocks shared with the tests and `rproxy ca`, not part of the CA's interface.
namespace detail {

// The leaf's subjectAltName in OpenSSL's config syntax. A leaf with any other set of names is reissued.
inline constexpr const char* kLeafSubjectAltName = "DNS:localhost,DNS:*.localhost,IP:127.0.0.1,IP:::1";

// The leaf and the CA are renewed when they expire within this margin, so a server started with them
// has at least a month before its certificate expires.
inline constexpr std::chrono::hours kRenewBefore{24 * 30};

// issue_leaf signs a new leaf with the CA in dir (ca.pem, ca-key.pem), valid from one hour ago until
// now + valid_for, with this subjectAltName, and writes localhost.pem and localhost-key.pem atomically.
// ensure_local_certificates does the same with 365 days; tests use it to plant an expiring or misnamed leaf.
void issue_leaf(const std::string& dir, std::chrono::seconds valid_for,
                const std::string& subject_alt_name = kLeafSubjectAltName);

// issue_ca makes a new CA valid from one hour ago until now + valid_for and writes ca-key.pem and ca.pem
// atomically (key first: a key without a certificate is never trusted, so it is safely replaced later).
void issue_ca(const std::string& dir, std::chrono::seconds valid_for);

// write_file_atomically writes content to a new file next to path (created with O_EXCL and this mode,
// so a private key is never readable by others, not even briefly), fsyncs it and renames it over path.
// Throws std::runtime_error naming path and errno's reason.
void write_file_atomically(const std::string& path, const std::string& content, unsigned mode);

}  // namespace detail

}  // namespace rproxy::tls
