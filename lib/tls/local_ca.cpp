#include "tls/local_ca.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "tls/tls_context.hpp"

namespace rproxy::tls {

namespace {

using std::chrono::hours;
using std::chrono::seconds;

constexpr hours kCaValidity{24 * 3650};
constexpr hours kLeafValidity{24 * 365};  // browsers refuse leaves valid for more than 397 days
constexpr hours kBackdate{1};             // tolerates clocks a little behind ours (VMs, containers)
// Files read here are small PEM files and a system bundle of a few hundred KiB; anything far larger is
// not what we are looking for.
constexpr std::size_t kMaxFileSize = 16 * 1024 * 1024;

// The CA may only vouch for localhost and loopback addresses (RFC 5280 4.2.1.10: DNS:localhost also
// covers every *.localhost name), so a leaked CA key cannot mint a certificate for a real site.
constexpr const char* kCaNameConstraints =
    "critical,permitted;DNS:localhost,permitted;IP:127.0.0.0/255.0.0.0,"
    "permitted;IP:::1/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";

// The first readable one is copied into the bundle (Debian/Ubuntu, Fedora/RHEL, Alpine/Arch/macOS).
constexpr const char* kSystemBundles[] = {"/etc/ssl/certs/ca-certificates.crt",
                                          "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"};

template <auto Free>
struct Deleter {
  template <class T>
  void operator()(T* p) const {
    Free(p);
  }
};
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free_all>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BN_free>>;
using NamesPtr = std::unique_ptr<GENERAL_NAMES, Deleter<GENERAL_NAMES_free>>;
using ConstraintsPtr = std::unique_ptr<NAME_CONSTRAINTS, Deleter<NAME_CONSTRAINTS_free>>;
using BasicPtr = std::unique_ptr<BASIC_CONSTRAINTS, Deleter<BASIC_CONSTRAINTS_free>>;

std::string errno_text(int error) {
  return std::system_category().message(error);
}

// ssl_reason is OpenSSL's reason for the last failure, or fallback when its queue is empty.
std::string ssl_reason(const std::string& fallback) {
  auto reason = openssl_error();
  return reason.empty() ? fallback : reason;
}

struct Files {
  std::string dir;
  std::string ca_cert;
  std::string ca_key;
  std::string cert;
  std::string key;
  std::string bundle;
  std::string lock;
};

// files_in makes dir absolute, because the paths end up in environment variables and shell snippets
// used from other working directories.
Files files_in(std::string dir) {
  if (dir.empty()) throw std::runtime_error("the rproxy data directory is an empty path");
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (dir.front() != '/') {
    std::error_code ec;
    auto cwd = std::filesystem::current_path(ec);
    if (ec) throw std::runtime_error("cannot make " + dir + " absolute: " + ec.message());
    dir = (cwd / dir).string();
  }
  const std::string base = dir == "/" ? "" : dir;
  return Files{dir,
               base + "/ca.pem",
               base + "/ca-key.pem",
               base + "/localhost.pem",
               base + "/localhost-key.pem",
               base + "/ca-bundle.pem",
               base + "/.lock"};
}

// make_private_dirs creates dir and its missing parents 0700 (the XDG base directory spec's mode), and
// leaves existing ones alone.
void make_private_dirs(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return;
  for (std::size_t pos = 1; pos != std::string::npos;) {
    pos = dir.find('/', pos + 1);
    auto part = dir.substr(0, pos);
    if (::mkdir(part.c_str(), 0700) == 0) continue;
    const int error = errno;
    if (error == EEXIST && ::stat(part.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) continue;
    throw std::runtime_error("cannot create directory " + part + ": " +
                             errno_text(error == EEXIST ? ENOTDIR : error));
  }
}

// read_text returns false with error "" when path does not exist, false with errno's reason when it
// cannot be read, true and its content otherwise.
bool read_text(const std::string& path, std::string& content, std::string& error) {
  content.clear();
  error.clear();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT) error = errno_text(errno);
    return false;
  }
  char buf[16384];
  for (;;) {
    const auto n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = errno_text(errno);
      break;
    }
    if (n == 0) break;
    content.append(buf, static_cast<std::size_t>(n));
    if (content.size() > kMaxFileSize) {
      error = "larger than " + std::to_string(kMaxFileSize) + " bytes";
      break;
    }
  }
  ::close(fd);
  return error.empty();
}

X509Ptr parse_cert(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return X509Ptr(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
}

PkeyPtr parse_key(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return PkeyPtr(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
}

// load_cert reads the first certificate of a PEM file or throws naming the file.
X509Ptr load_cert(const std::string& path) {
  std::string text, error;
  if (!read_text(path, text, error))
    throw std::runtime_error("cannot read " + path + ": " + (error.empty() ? errno_text(ENOENT) : error));
  ERR_clear_error();
  auto cert = parse_cert(text);
  if (!cert)
    throw std::runtime_error(path + " is not a PEM certificate: " + ssl_reason("no certificate found"));
  return cert;
}

std::string to_pem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1)
    throw std::runtime_error("cannot encode a certificate: " + ssl_reason("out of memory"));
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(size));
}

std::string to_pem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1)
    throw std::runtime_error("cannot encode a private key: " + ssl_reason("out of memory"));
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(size));
}

// expires_within: the certificate's notAfter is less than margin away (or unreadable).
bool expires_within(const X509* cert, seconds margin) {
  time_t limit = std::time(nullptr) + static_cast<time_t>(margin.count());
  return X509_cmp_time(X509_get0_notAfter(cert), &limit) <= 0;
}

bool not_yet_valid(const X509* cert) {
  return X509_cmp_current_time(X509_get0_notBefore(cert)) >= 0;
}

std::string format_time(const ASN1_TIME* time, const char* format) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(time, &tm) != 1) return "?";
  char buf[64];
  return std::strftime(buf, sizeof buf, format, &tm) ? buf : "?";
}

std::string format_name(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  // "O=rproxy development CA, CN=..." in certificate order, UTF-8 left as it is.
  const unsigned long flags =
      (XN_FLAG_ONELINE & ~XN_FLAG_SPC_EQ & ~ASN1_STRFLGS_ESC_MSB) | ASN1_STRFLGS_UTF8_CONVERT;
  if (!bio || X509_NAME_print_ex(bio.get(), name, 0, flags) < 0) return "?";
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(size));
}

std::string format_ip(const unsigned char* bytes, int length) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (length == 4) ::inet_ntop(AF_INET, bytes, buf, sizeof buf);
  if (length == 16) ::inet_ntop(AF_INET6, bytes, buf, sizeof buf);
  return buf;
}

// format_general_name renders a name as OpenSSL's config syntax does ("DNS:localhost", "IP:::1"), so
// the leaf's names compare with kLeafSubjectAltName; a name constraint's address gets its prefix length.
std::string format_general_name(const GENERAL_NAME* name, bool constraint) {
  switch (name->type) {
    case GEN_DNS: {
      const auto* s = name->d.dNSName;
      return "DNS:" + std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                  static_cast<std::size_t>(ASN1_STRING_length(s)));
    }
    case GEN_IPADD: {
      const auto* bytes = ASN1_STRING_get0_data(name->d.iPAddress);
      const int length = ASN1_STRING_length(name->d.iPAddress);
      if (!constraint) return "IP:" + format_ip(bytes, length);
      if (length != 8 && length != 32) return "IP:?";
      int prefix = 0;
      for (int i = length / 2; i < length; ++i) prefix += __builtin_popcount(bytes[i]);
      return "IP:" + format_ip(bytes, length / 2) + "/" + std::to_string(prefix);
    }
    case GEN_EMAIL:
      return "email:" + std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(name->d.rfc822Name)),
                                    static_cast<std::size_t>(ASN1_STRING_length(name->d.rfc822Name)));
    case GEN_URI:
      return "URI:" +
             std::string(
                 reinterpret_cast<const char*>(ASN1_STRING_get0_data(name->d.uniformResourceIdentifier)),
                 static_cast<std::size_t>(ASN1_STRING_length(name->d.uniformResourceIdentifier)));
    case GEN_DIRNAME:
      return "dirName:" + format_name(name->d.directoryName);
    default:
      return "othername:" + std::to_string(name->type);
  }
}

// subject_alt_names lists the leaf's SANs; a certificate without (or with a duplicated) extension has none.
std::vector<std::string> subject_alt_names(const X509* cert) {
  std::vector<std::string> out;
  NamesPtr names(static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i)
    out.push_back(format_general_name(sk_GENERAL_NAME_value(names.get(), i), false));
  return out;
}

// split_names splits kLeafSubjectAltName, which is written in the form format_general_name produces.
std::vector<std::string> split_names(const std::string& list) {
  std::vector<std::string> out;
  for (std::size_t start = 0; start <= list.size();) {
    auto comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    out.push_back(list.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

bool same_names(std::vector<std::string> a, std::vector<std::string> b) {
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  return a == b;
}

std::string fingerprint(const X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (X509_digest(cert, EVP_sha256(), md, &length) != 1) return "?";
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned int i = 0; i < length; ++i) {
    if (i) out += ':';
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

// user_at_host names the CA after its owner, so several CAs in one trust store can be told apart.
std::string user_at_host() {
  std::string user;
  long size = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(static_cast<std::size_t>(size > 0 ? size : 16384));
  passwd pw{};
  passwd* found = nullptr;
  if (::getpwuid_r(::geteuid(), &pw, buf.data(), buf.size(), &found) == 0 && found && found->pw_name)
    user = found->pw_name;
  if (user.empty()) {
    const char* env = std::getenv("USER");
    user = env && *env ? env : "uid" + std::to_string(::geteuid());
  }
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || !host[0]) std::snprintf(host, sizeof host, "localhost");
  return user + "@" + host;
}

// ca_common_name fits RFC 5280's 64-character limit on a CN, cutting on a UTF-8 character boundary.
std::string ca_common_name() {
  std::string cn = "rproxy local CA " + user_at_host();
  if (cn.size() > 64) {
    cn.resize(64);
    while (!cn.empty() && (static_cast<unsigned char>(cn.back()) & 0xC0) == 0x80) cn.pop_back();
    if (!cn.empty() && static_cast<unsigned char>(cn.back()) >= 0xC0) cn.pop_back();
  }
  return cn;
}

void add_name_entry(X509_NAME* name, const char* field, const std::string& value) {
  if (X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1, 0) != 1)
    throw std::runtime_error(std::string("cannot set ") + field + "=" + value + ": " +
                             ssl_reason("invalid value"));
}

void add_extension(X509* cert, X509V3_CTX* ctx, int nid, const char* value) {
  ExtPtr ext(X509V3_EXT_nconf_nid(nullptr, ctx, nid, value));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1)
    throw std::runtime_error(std::string("cannot add the extension ") + OBJ_nid2sn(nid) + "=" + value + ": " +
                             ssl_reason("invalid value"));
}

PkeyPtr new_key() {
  PkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) throw std::runtime_error("cannot generate an EC P-256 key: " + ssl_reason("unknown error"));
  return key;
}

// new_certificate: X.509 v3 with a random positive 128-bit serial, valid from kBackdate ago until
// now + valid_for, for subject_key.
X509Ptr new_certificate(EVP_PKEY* subject_key, seconds valid_for) {
  X509Ptr cert(X509_new());
  if (!cert) throw std::runtime_error("cannot create a certificate: " + ssl_reason("out of memory"));
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1)
    throw std::runtime_error("cannot draw a serial number: " + ssl_reason("no randomness"));
  serial[0] &= 0x7f;  // a DER INTEGER's top bit is its sign; serials must be positive
  BnPtr bn(BN_bin2bn(serial, sizeof serial, nullptr));
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1 || !bn ||
      !BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get())) ||
      !X509_gmtime_adj(X509_getm_notBefore(cert.get()),
                       -std::chrono::duration_cast<seconds>(kBackdate).count()) ||
      !X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(valid_for.count())) ||
      X509_set_pubkey(cert.get(), subject_key) != 1)
    throw std::runtime_error("cannot fill in a certificate: " + ssl_reason("out of memory"));
  return cert;
}

void sign(X509* cert, EVP_PKEY* issuer_key) {
  if (X509_sign(cert, issuer_key, EVP_sha256()) <= 0)
    throw std::runtime_error("cannot sign a certificate: " + ssl_reason("unknown error"));
}

struct Issued {
  X509Ptr cert;
  PkeyPtr key;
};

Issued make_ca(seconds valid_for) {
  Issued ca{nullptr, new_key()};
  ca.cert = new_certificate(ca.key.get(), valid_for);
  X509_NAME* name = X509_get_subject_name(ca.cert.get());
  add_name_entry(name, "O", "rproxy development CA");
  add_name_entry(name, "CN", ca_common_name());
  if (X509_set_issuer_name(ca.cert.get(), name) != 1)
    throw std::runtime_error("cannot set the CA's issuer: " + ssl_reason("out of memory"));
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, ca.cert.get(), ca.cert.get(), nullptr, nullptr, 0);
  add_extension(ca.cert.get(), &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
  add_extension(ca.cert.get(), &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
  add_extension(ca.cert.get(), &ctx, NID_subject_key_identifier, "hash");
  add_extension(ca.cert.get(), &ctx, NID_name_constraints, kCaNameConstraints);
  sign(ca.cert.get(), ca.key.get());
  return ca;
}

Issued make_leaf(X509* ca_cert, EVP_PKEY* ca_key, seconds valid_for, const std::string& subject_alt_name) {
  Issued leaf{nullptr, new_key()};
  leaf.cert = new_certificate(leaf.key.get(), valid_for);
  add_name_entry(X509_get_subject_name(leaf.cert.get()), "CN", "localhost");
  if (X509_set_issuer_name(leaf.cert.get(), X509_get_subject_name(ca_cert)) != 1)
    throw std::runtime_error("cannot set the leaf's issuer: " + ssl_reason("out of memory"));
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, ca_cert, leaf.cert.get(), nullptr, nullptr, 0);
  add_extension(leaf.cert.get(), &ctx, NID_basic_constraints, "critical,CA:FALSE");
  add_extension(leaf.cert.get(), &ctx, NID_key_usage, "critical,digitalSignature");
  add_extension(leaf.cert.get(), &ctx, NID_ext_key_usage, "serverAuth");
  add_extension(leaf.cert.get(), &ctx, NID_subject_key_identifier, "hash");
  add_extension(leaf.cert.get(), &ctx, NID_authority_key_identifier, "keyid");
  add_extension(leaf.cert.get(), &ctx, NID_subject_alt_name, subject_alt_name.c_str());
  sign(leaf.cert.get(), ca_key);
  return leaf;
}

// FileLock holds an exclusive flock on path until destroyed. flock (unlike fcntl locks) belongs to the
// open file description, so it also keeps out other threads of this process that open the file.
class FileLock {
 public:
  explicit FileLock(const std::string& path) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd_ < 0) throw std::runtime_error("cannot open the lock file " + path + ": " + errno_text(errno));
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      ::close(fd_);
      throw std::runtime_error("cannot lock " + path + ": " + errno_text(error));
    }
  }
  ~FileLock() { ::close(fd_); }  // closing releases the lock
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

// State is what inspect found in the data directory.
struct State {
  X509Ptr ca;
  PkeyPtr ca_key;
  std::string ca_pem;
  X509Ptr leaf;
  bool ca_ok = false;  // present, with its key, not expiring
  bool leaf_ok = false;
  bool bundle_ok = false;
  std::string system_bundle;

  bool complete() const { return ca_ok && leaf_ok && bundle_ok; }
};

std::string find_system_bundle() {
  for (const char* path : kSystemBundles)
    if (::access(path, R_OK) == 0) return path;
  return "";
}

// bundle_text: the system bundle, then our CA under a comment naming it (PEM readers skip such lines).
std::string bundle_text(const std::string& system_bundle, const std::string& system_text,
                        const std::string& ca_pem, const X509* ca) {
  std::string out = system_text;
  if (!out.empty() && out.back() != '\n') out += '\n';
  out += "\n# rproxy local CA: " + format_name(X509_get_subject_name(ca)) + "\n";
  out += "# (added to " + (system_bundle.empty() ? std::string("no system bundle") : system_bundle) + ")\n";
  out += ca_pem;
  return out;
}

std::string expected_bundle(State& s) {
  s.system_bundle = find_system_bundle();
  std::string system_text, error;
  if (!s.system_bundle.empty() && !read_text(s.system_bundle, system_text, error)) s.system_bundle.clear();
  return bundle_text(s.system_bundle, system_text, s.ca_pem, s.ca.get());
}

// current_leaf returns the leaf when it is readable, its key matches, signed by this CA, valid for more than
// kRenewBefore and carrying exactly the expected names.
X509Ptr current_leaf(const Files& f, X509* ca) {
  std::string cert_text, key_text, error;
  if (!read_text(f.cert, cert_text, error) || !read_text(f.key, key_text, error)) return nullptr;
  auto leaf = parse_cert(cert_text);
  auto key = parse_key(key_text);
  const bool current = leaf && key && X509_check_private_key(leaf.get(), key.get()) == 1 &&
                       X509_check_issued(ca, leaf.get()) == X509_V_OK &&
                       X509_verify(leaf.get(), X509_get0_pubkey(ca)) == 1 &&
                       !expires_within(leaf.get(), detail::kRenewBefore) && !not_yet_valid(leaf.get()) &&
                       same_names(subject_alt_names(leaf.get()), split_names(detail::kLeafSubjectAltName));
  ERR_clear_error();  // a failed check is an answer here, not an error for a later message to report
  return current ? std::move(leaf) : nullptr;
}

// inspect reads the data directory. A CA that is there but unusable (corrupt, without its key) is an
// error rather than something to replace: the user may have trusted it, and a silent new CA would break
// every client that did.
State inspect(const Files& f) {
  State s;
  std::string key_text, error;
  if (!read_text(f.ca_cert, s.ca_pem, error)) {
    if (!error.empty()) throw std::runtime_error("cannot read " + f.ca_cert + ": " + error);
    return s;  // no CA yet (a key without a certificate was never trusted and is replaced)
  }
  const std::string remedy = "; to start over with a new local CA, run `rproxy ca untrust` and remove " +
                             f.ca_cert + " and " + f.ca_key;
  ERR_clear_error();
  s.ca = parse_cert(s.ca_pem);
  if (!s.ca)
    throw std::runtime_error(f.ca_cert + " is not a PEM certificate (" + ssl_reason("no certificate found") +
                             ")" + remedy);
  if (X509_check_ca(s.ca.get()) == 0)
    throw std::runtime_error(f.ca_cert + " is not a CA certificate" + remedy);
  if (!read_text(f.ca_key, key_text, error))
    throw std::runtime_error("cannot read the CA key " + f.ca_key + ": " +
                             (error.empty() ? errno_text(ENOENT) : error) + remedy);
  s.ca_key = parse_key(key_text);
  if (!s.ca_key)
    throw std::runtime_error(f.ca_key + " is not a PEM private key (" + ssl_reason("no key found") + ")" +
                             remedy);
  if (X509_check_private_key(s.ca.get(), s.ca_key.get()) != 1)
    throw std::runtime_error(f.ca_key + " does not belong to " + f.ca_cert + " (" +
                             ssl_reason("key values mismatch") + ")" + remedy);
  ERR_clear_error();
  s.ca_ok = !expires_within(s.ca.get(), detail::kRenewBefore);
  if (!s.ca_ok) return s;
  s.leaf = current_leaf(f, s.ca.get());
  s.leaf_ok = s.leaf != nullptr;
  std::string bundle;
  s.bundle_ok = read_text(f.bundle, bundle, error) && bundle == expected_bundle(s);
  return s;
}

void write_ca(const Files& f, seconds valid_for) {
  auto ca = make_ca(valid_for);
  // Key first: a crash in between leaves a key without a certificate, which inspect replaces, rather than
  // a certificate without its key, which it refuses.
  detail::write_file_atomically(f.ca_key, to_pem(ca.key.get()), 0600);
  detail::write_file_atomically(f.ca_cert, to_pem(ca.cert.get()), 0644);
}

X509Ptr write_leaf(const Files& f, X509* ca, EVP_PKEY* ca_key, seconds valid_for, const std::string& san) {
  auto leaf = make_leaf(ca, ca_key, valid_for, san);
  // A reader between the two renames sees a key that does not match the certificate and waits for the
  // lock, behind which this writer has finished.
  detail::write_file_atomically(f.key, to_pem(leaf.key.get()), 0600);
  detail::write_file_atomically(f.cert, to_pem(leaf.cert.get()), 0644);
  return std::move(leaf.cert);
}

// load_ca_for_issuing is inspect's CA half for the detail:: helpers.
State load_ca_for_issuing(const Files& f) {
  State s = inspect(f);
  if (!s.ca) throw std::runtime_error("no CA in " + f.dir + " to sign with");
  return s;
}

}  // namespace

std::string default_data_dir() {
  if (const char* dir = std::getenv("RPROXY_DATA_DIR"); dir && *dir) return dir;
  // The XDG base directory spec: a relative XDG_DATA_HOME is invalid and ignored.
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg && *xdg == '/') return std::string(xdg) + "/rproxy";
  if (const char* home = std::getenv("HOME"); home && *home)
    return std::string(home) + "/.local/share/rproxy";
  throw std::runtime_error(
      "cannot find a data directory for the local CA: set RPROXY_DATA_DIR, XDG_DATA_HOME or HOME");
}

LocalCertificates ensure_local_certificates(const std::string& dir) {
  const Files f = files_in(dir);
  LocalCertificates out;
  out.dir = f.dir;
  out.ca_cert = f.ca_cert;
  out.ca_key = f.ca_key;
  out.cert = f.cert;
  out.key = f.key;
  out.bundle = f.bundle;
  make_private_dirs(f.dir);

  // Usually everything is in place: check without the lock, so a read-only directory with current files
  // works and concurrent starts do not queue.
  State s;
  std::string unlocked_error;
  try {
    s = inspect(f);
  } catch (const std::runtime_error& e) {
    // A writer may be between its two renames (a new key beside the old certificate); the answer under
    // the lock is the one that counts.
    unlocked_error = e.what();
  }
  if (!s.complete()) {
    std::optional<FileLock> lock;
    try {
      lock.emplace(f.lock);
    } catch (const std::runtime_error&) {
      // Without the lock (a read-only directory) the reason the files are unusable is the better message.
      if (!unlocked_error.empty()) throw std::runtime_error(unlocked_error);
      throw;
    }
    s = inspect(f);  // another process may have done the work while we waited
    if (!s.ca_ok) {
      write_ca(f, kCaValidity);
      out.created_ca = true;
      s = inspect(f);
      if (!s.ca_ok) throw std::runtime_error("the CA just written to " + f.ca_cert + " does not read back");
    }
    if (!s.leaf_ok) {
      s.leaf = write_leaf(f, s.ca.get(), s.ca_key.get(), kLeafValidity, detail::kLeafSubjectAltName);
      out.issued_leaf = true;
    }
    if (!s.bundle_ok) detail::write_file_atomically(f.bundle, expected_bundle(s), 0644);
  }
  out.ca_subject = format_name(X509_get_subject_name(s.ca.get()));
  out.leaf_not_after = format_time(X509_get0_notAfter(s.leaf.get()), "%Y-%m-%d");
  out.system_bundle = s.system_bundle;
  return out;
}

std::string certificate_fingerprint(const std::string& pem_path) {
  return fingerprint(load_cert(pem_path).get());
}

std::string describe_certificate(const std::string& pem_path) {
  auto cert = load_cert(pem_path);
  const X509* c = cert.get();
  std::string out;
  auto line = [&out](const std::string& label, const std::string& value) {
    out += label + ":" + std::string(label.size() < 18 ? 18 - label.size() : 1, ' ') + value + "\n";
  };
  line("subject", format_name(X509_get_subject_name(c)));
  line("issuer", format_name(X509_get_issuer_name(c)));
  if (auto names = subject_alt_names(c); !names.empty()) {
    std::string joined;
    for (const auto& n : names) joined += (joined.empty() ? "" : ", ") + n;
    line("subject alt names", joined);
  }
  BasicPtr basic(
      static_cast<BASIC_CONSTRAINTS*>(X509_get_ext_d2i(c, NID_basic_constraints, nullptr, nullptr)));
  if (basic && basic->ca) {
    const long pathlen = basic->pathlen ? ASN1_INTEGER_get(basic->pathlen) : -1;
    line("CA", pathlen >= 0 ? "yes, path length " + std::to_string(pathlen) : "yes");
  } else {
    line("CA", "no");
  }
  ConstraintsPtr nc(
      static_cast<NAME_CONSTRAINTS*>(X509_get_ext_d2i(c, NID_name_constraints, nullptr, nullptr)));
  if (nc) {
    std::string joined;
    auto add = [&joined](const char* kind, STACK_OF(GENERAL_SUBTREE) * trees) {
      for (int i = 0; i < sk_GENERAL_SUBTREE_num(trees); ++i)
        joined += std::string(joined.empty() ? "" : ", ") + kind +
                  format_general_name(sk_GENERAL_SUBTREE_value(trees, i)->base, true);
    };
    add("permitted ", nc->permittedSubtrees);
    add("excluded ", nc->excludedSubtrees);
    line("name constraints", joined);
  }
  line("not before", format_time(X509_get0_notBefore(c), "%Y-%m-%d %H:%M:%S UTC"));
  line("not after", format_time(X509_get0_notAfter(c), "%Y-%m-%d %H:%M:%S UTC"));
  line("SHA-256", fingerprint(c));
  return out;
}

namespace detail {

void issue_leaf(const std::string& dir, std::chrono::seconds valid_for, const std::string& subject_alt_name) {
  const Files f = files_in(dir);
  auto s = load_ca_for_issuing(f);
  write_leaf(f, s.ca.get(), s.ca_key.get(), valid_for, subject_alt_name);
}

}  // namespace detail

LeafPem issue_leaf_for(const std::string& dir, const std::string& dns_name) {
  auto is_label_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
  };
  const std::string suffix = ".localhost";
  if (dns_name.size() <= suffix.size() || dns_name.size() > 253 ||
      dns_name.compare(dns_name.size() - suffix.size(), suffix.size(), suffix) != 0 ||
      !std::all_of(dns_name.begin(), dns_name.end(), is_label_char) ||
      dns_name.find("..") != std::string::npos || dns_name.front() == '.' || dns_name.front() == '-')
    throw std::runtime_error("the local CA issues certificates for names under localhost only, not \"" +
                             dns_name + "\"");
  const Files f = files_in(dir);
  auto s = load_ca_for_issuing(f);
  auto leaf = make_leaf(s.ca.get(), s.ca_key.get(), kLeafValidity, "DNS:" + dns_name);
  return LeafPem{to_pem(leaf.cert.get()), to_pem(leaf.key.get())};
}

namespace detail {

void issue_ca(const std::string& dir, std::chrono::seconds valid_for) {
  const Files f = files_in(dir);
  make_private_dirs(f.dir);
  write_ca(f, valid_for);
}

void write_file_atomically(const std::string& path, const std::string& content, unsigned mode) {
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  unsigned char random[8];
  if (RAND_bytes(random, sizeof random) != 1)
    throw std::runtime_error("cannot write " + path + ": no randomness for a temporary name");
  std::string suffix;
  for (unsigned char b : random) suffix += "0123456789abcdef"[b >> 4], suffix += "0123456789abcdef"[b & 15];
  const std::string tmp = (dir == "/" ? "" : dir) + "/." + base + ".tmp-" + suffix;

  // O_EXCL with the final mode: the file never exists with wider permissions, even for a moment.
  const int fd =
      ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, static_cast<mode_t>(mode));
  if (fd < 0) throw std::runtime_error("cannot write " + path + ": " + errno_text(errno));
  auto fail = [&](int error) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw std::runtime_error("cannot write " + path + ": " + errno_text(error));
  };
  for (std::size_t done = 0; done < content.size();) {
    const auto n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(errno);
    done += static_cast<std::size_t>(n);
  }
  // fsync before rename: after a crash the name points at the whole new content or at the old file.
  if (::fsync(fd) != 0) fail(errno);
  if (::close(fd) != 0) {
    const int error = errno;
    ::unlink(tmp.c_str());
    throw std::runtime_error("cannot write " + path + ": " + errno_text(error));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int error = errno;
    ::unlink(tmp.c_str());
    throw std::runtime_error("cannot write " + path + ": " + errno_text(error));
  }
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);  // makes the rename itself durable; best effort
    ::close(dfd);
  }
}

}  // namespace detail

}  // namespace rproxy::tls
