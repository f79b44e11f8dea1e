// Unit tests for lib/tls/local_ca: creation and file modes, reuse, verification of the leaf against the CA
// (and the CA's name constraints), renewal rules, errors, concurrent first use and default_data_dir.
#include "tls/local_ca.hpp"

#include <doctest/doctest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <latch>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace rproxy;
using std::chrono::hours;

namespace {

constexpr hours kDay{24};

// ScratchDir is a fresh directory, removed with its contents at the end of the test. The CA's own
// directory is made inside it (scratch.file("data")), so the test sees it created with its mode.
class ScratchDir {
 public:
  ScratchDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/rproxy-ca-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void spill(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

unsigned mode_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

X509Ptr load(const std::string& path) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_file(path.c_str(), "r"), &BIO_free);
  REQUIRE(bio);
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  REQUIRE(cert);
  return cert;
}

// verify_leaf runs X509_verify_cert on the leaf with a store holding only the CA, for a TLS server named
// host (or at address ip); returns X509_V_OK or the verification error.
int verify_leaf(const std::string& ca_file, const std::string& leaf_file, const std::string& host,
                const std::string& ip = "") {
  auto ca = load(ca_file);
  auto leaf = load(leaf_file);
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), &X509_STORE_free);
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> ctx(X509_STORE_CTX_new(),
                                                                      &X509_STORE_CTX_free);
  REQUIRE(X509_STORE_add_cert(store.get(), ca.get()) == 1);
  REQUIRE(X509_STORE_CTX_init(ctx.get(), store.get(), leaf.get(), nullptr) == 1);
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  REQUIRE(X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER) == 1);
  if (!host.empty()) REQUIRE(X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0) == 1);
  if (!ip.empty()) REQUIRE(X509_VERIFY_PARAM_set1_ip_asc(param, ip.c_str()) == 1);
  if (X509_verify_cert(ctx.get()) == 1) return X509_V_OK;
  const int error = X509_STORE_CTX_get_error(ctx.get());
  return error == X509_V_OK ? -1 : error;
}

// days_left: whole days from now until the certificate's notAfter.
int days_left(const std::string& pem) {
  auto cert = load(pem);
  int days = 0, secs = 0;
  REQUIRE(ASN1_TIME_diff(&days, &secs, nullptr, X509_get0_notAfter(cert.get())) == 1);
  return days;
}

std::string error_of(const std::string& dir) {
  try {
    tls::ensure_local_certificates(dir);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "(no error)";
}

// EnvGuard sets or unsets environment variables and restores them all when it goes away.
class EnvGuard {
 public:
  EnvGuard() = default;
  ~EnvGuard() {
    for (const auto& [name, value] : saved_) {
      if (value)
        ::setenv(name.c_str(), value->c_str(), 1);
      else
        ::unsetenv(name.c_str());
    }
  }
  EnvGuard(const EnvGuard&) = delete;
  EnvGuard& operator=(const EnvGuard&) = delete;

  void set(const std::string& name, const std::string& value) {
    save(name);
    ::setenv(name.c_str(), value.c_str(), 1);
  }
  void unset(const std::string& name) {
    save(name);
    ::unsetenv(name.c_str());
  }

 private:
  void save(const std::string& name) {
    if (saved_.count(name)) return;
    const char* value = std::getenv(name.c_str());
    saved_[name] = value ? std::optional<std::string>(value) : std::nullopt;
  }
  std::map<std::string, std::optional<std::string>> saved_;
};

}  // namespace

TEST_CASE("local CA: first use creates a private directory with private keys and the bundle") {
  ScratchDir scratch;
  const auto dir = scratch.file("nested/rproxy");
  auto certs = tls::ensure_local_certificates(dir);
  CHECK(certs.created_ca);
  CHECK(certs.issued_leaf);
  CHECK(certs.dir == dir);
  CHECK(certs.ca_cert == dir + "/ca.pem");
  CHECK(certs.ca_key == dir + "/ca-key.pem");
  CHECK(certs.cert == dir + "/localhost.pem");
  CHECK(certs.key == dir + "/localhost-key.pem");
  CHECK(certs.bundle == dir + "/ca-bundle.pem");
  CHECK(mode_of(dir) == 0700);
  CHECK(mode_of(scratch.file("nested")) == 0700);
  CHECK(mode_of(certs.ca_key) == 0600);
  CHECK(mode_of(certs.key) == 0600);
  CHECK((mode_of(certs.ca_cert) & 022) == 0);
  CHECK((mode_of(certs.cert) & 022) == 0);
  CHECK(certs.ca_subject.find("CN=rproxy local CA ") != std::string::npos);
  CHECK(certs.ca_subject.find("O=rproxy development CA") != std::string::npos);
  CHECK(certs.leaf_not_after.size() == 10);  // YYYY-MM-DD
  CHECK(days_left(certs.cert) >= 364);
  CHECK(days_left(certs.cert) <= 397);
  CHECK(days_left(certs.ca_cert) >= 3649);

  // The bundle replaces a default bundle: the system's certificates first, then ours.
  const auto bundle = slurp(certs.bundle);
  const auto ca_pem = slurp(certs.ca_cert);
  CHECK(bundle.size() >= ca_pem.size());
  CHECK(bundle.compare(bundle.size() - ca_pem.size(), ca_pem.size(), ca_pem) == 0);
  if (!certs.system_bundle.empty()) CHECK(bundle.rfind(slurp(certs.system_bundle), 0) == 0);

  // No temporary file is left behind.
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    CAPTURE(entry.path().string());
    CHECK(entry.path().filename().string().find(".tmp-") == std::string::npos);
  }
}

TEST_CASE("local CA: a second call reuses the CA and the leaf") {
  ScratchDir scratch;
  auto first = tls::ensure_local_certificates(scratch.path());
  const auto ca_fingerprint = tls::certificate_fingerprint(first.ca_cert);
  const auto leaf = slurp(first.cert);
  const auto bundle = slurp(first.bundle);
  auto second = tls::ensure_local_certificates(scratch.path());
  CHECK_FALSE(second.created_ca);
  CHECK_FALSE(second.issued_leaf);
  CHECK(tls::certificate_fingerprint(second.ca_cert) == ca_fingerprint);
  CHECK(slurp(second.cert) == leaf);
  CHECK(slurp(second.bundle) == bundle);
  CHECK(second.ca_subject == first.ca_subject);
  CHECK(second.leaf_not_after == first.leaf_not_after);
}

TEST_CASE("local CA: the leaf verifies against the CA for localhost and loopback addresses only") {
  ScratchDir scratch;
  auto certs = tls::ensure_local_certificates(scratch.path());
  CHECK(verify_leaf(certs.ca_cert, certs.cert, "localhost") == X509_V_OK);
  CHECK(verify_leaf(certs.ca_cert, certs.cert, "LOCALHOST") == X509_V_OK);
  CHECK(verify_leaf(certs.ca_cert, certs.cert, "", "127.0.0.1") == X509_V_OK);
  CHECK(verify_leaf(certs.ca_cert, certs.cert, "", "::1") == X509_V_OK);
  CHECK(verify_leaf(certs.ca_cert, certs.cert, "example.com") == X509_V_ERR_HOSTNAME_MISMATCH);
  CHECK(verify_leaf(certs.ca_cert, certs.cert, "localhost.example.com") == X509_V_ERR_HOSTNAME_MISMATCH);
  CHECK(verify_leaf(certs.ca_cert, certs.cert, "", "127.0.0.2") == X509_V_ERR_IP_ADDRESS_MISMATCH);
  // The leaf carries DNS:*.localhost, but OpenSSL (like curl and Chrome) never lets a wildcard stand for
  // a label right below a top-level name, so foo.localhost is not asserted here; what the CA may sign
  // for it is checked in the next test.
}

TEST_CASE("local CA: the name constraint permits localhost names and loopback addresses and nothing else") {
  ScratchDir scratch;
  auto certs = tls::ensure_local_certificates(scratch.path());
  tls::detail::issue_leaf(scratch.path(), kDay, "DNS:foo.localhost,DNS:a.b.localhost,IP:127.1.2.3");
  CHECK(verify_leaf(certs.ca_cert, certs.cert, "foo.localhost") == X509_V_OK);
  CHECK(verify_leaf(certs.ca_cert, certs.cert, "a.b.localhost") == X509_V_OK);
  CHECK(verify_leaf(certs.ca_cert, certs.cert, "", "127.1.2.3") == X509_V_OK);
  // A CA key that leaks cannot be used for anyone else's names, whatever the leaf says.
  for (std::string names : {"DNS:example.com", "DNS:localhost.example.com", "DNS:notlocalhost",
                            "DNS:localhost,DNS:example.com", "IP:10.0.0.1", "IP:::2"}) {
    CAPTURE(names);
    tls::detail::issue_leaf(scratch.path(), kDay, names);
    CHECK(verify_leaf(certs.ca_cert, certs.cert, "") == X509_V_ERR_PERMITTED_VIOLATION);
  }
}

TEST_CASE("local CA: a leaf that expires within 30 days or has expired is reissued") {
  ScratchDir scratch;
  auto first = tls::ensure_local_certificates(scratch.path());
  const auto ca_fingerprint = tls::certificate_fingerprint(first.ca_cert);
  for (auto valid_for : {29 * kDay, hours(2), -kDay}) {
    CAPTURE(valid_for.count());
    tls::detail::issue_leaf(scratch.path(), valid_for);
    CHECK(days_left(first.cert) < 30);
    auto again = tls::ensure_local_certificates(scratch.path());
    CHECK(again.issued_leaf);
    CHECK_FALSE(again.created_ca);
    CHECK(days_left(again.cert) >= 364);
    CHECK(tls::certificate_fingerprint(again.ca_cert) == ca_fingerprint);
    CHECK(verify_leaf(again.ca_cert, again.cert, "localhost") == X509_V_OK);
  }
  // 31 days left is still fine.
  tls::detail::issue_leaf(scratch.path(), 31 * kDay + hours(2));
  CHECK_FALSE(tls::ensure_local_certificates(scratch.path()).issued_leaf);
}

TEST_CASE("local CA: a leaf signed by another CA is reissued") {
  ScratchDir mine;
  ScratchDir other;
  auto certs = tls::ensure_local_certificates(mine.path());
  auto foreign = tls::ensure_local_certificates(other.path());
  std::filesystem::copy_file(foreign.cert, certs.cert, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(foreign.key, certs.key, std::filesystem::copy_options::overwrite_existing);
  CHECK(verify_leaf(certs.ca_cert, certs.cert, "localhost") != X509_V_OK);
  auto again = tls::ensure_local_certificates(mine.path());
  CHECK(again.issued_leaf);
  CHECK_FALSE(again.created_ca);
  CHECK(verify_leaf(again.ca_cert, again.cert, "localhost") == X509_V_OK);
}

TEST_CASE("local CA: a leaf with other names or a mismatched key or a corrupt file is reissued") {
  ScratchDir scratch;
  auto certs = tls::ensure_local_certificates(scratch.path());
  for (std::string names :
       {"DNS:localhost,IP:127.0.0.1", "DNS:localhost,DNS:*.localhost,IP:127.0.0.1,IP:::1,DNS:x.localhost",
        "DNS:localhost,DNS:localhost,DNS:*.localhost,IP:127.0.0.1,IP:::1"}) {
    CAPTURE(names);
    tls::detail::issue_leaf(scratch.path(), 300 * kDay, names);
    CHECK(tls::ensure_local_certificates(scratch.path()).issued_leaf);
  }
  // The same names in another order are the same set: nothing to do.
  tls::detail::issue_leaf(scratch.path(), 300 * kDay, "IP:::1,IP:127.0.0.1,DNS:*.localhost,DNS:localhost");
  CHECK_FALSE(tls::ensure_local_certificates(scratch.path()).issued_leaf);

  const auto key = slurp(certs.key);
  tls::detail::issue_leaf(scratch.path(), 300 * kDay);
  spill(certs.key, key);  // the key of the previous leaf
  CHECK(tls::ensure_local_certificates(scratch.path()).issued_leaf);

  spill(certs.cert, "garbage\n");
  CHECK(tls::ensure_local_certificates(scratch.path()).issued_leaf);
  std::filesystem::remove(certs.key);
  auto again = tls::ensure_local_certificates(scratch.path());
  CHECK(again.issued_leaf);
  CHECK(mode_of(again.key) == 0600);
  CHECK(verify_leaf(again.ca_cert, again.cert, "localhost") == X509_V_OK);
}

TEST_CASE("local CA: a corrupt ca.pem or a missing CA key is an error naming the file") {
  ScratchDir scratch;
  auto certs = tls::ensure_local_certificates(scratch.path());
  const auto ca_pem = slurp(certs.ca_cert);
  spill(certs.ca_cert, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n");
  auto error = error_of(scratch.path());
  CAPTURE(error);
  CHECK(error.find(certs.ca_cert + " is not a PEM certificate") == 0);
  CHECK(error.find("remove " + certs.ca_cert) != std::string::npos);
  // Nothing was replaced: the user may have trusted the CA.
  CHECK(slurp(certs.ca_cert).find("not base64") != std::string::npos);

  spill(certs.ca_cert, ca_pem);
  std::filesystem::remove(certs.ca_key);
  error = error_of(scratch.path());
  CHECK(error.find("cannot read the CA key " + certs.ca_key + ": No such file or directory") == 0);

  // A CA key without its certificate was never trusted (a crash between the two writes): it is replaced.
  std::filesystem::remove(certs.ca_cert);
  spill(certs.ca_key, "stale\n");
  CHECK(tls::ensure_local_certificates(scratch.path()).created_ca);
}

TEST_CASE("local CA: a CA that expires within 30 days is renewed with its leaf and bundle") {
  ScratchDir scratch;
  auto first = tls::ensure_local_certificates(scratch.path());
  tls::detail::issue_ca(scratch.path(), 20 * kDay);
  tls::detail::issue_leaf(scratch.path(), 10 * kDay);
  const auto old_fingerprint = tls::certificate_fingerprint(first.ca_cert);
  auto renewed = tls::ensure_local_certificates(scratch.path());
  CHECK(renewed.created_ca);
  CHECK(renewed.issued_leaf);
  CHECK(tls::certificate_fingerprint(renewed.ca_cert) != old_fingerprint);
  CHECK(days_left(renewed.ca_cert) >= 3649);
  CHECK(verify_leaf(renewed.ca_cert, renewed.cert, "localhost") == X509_V_OK);
  CHECK(slurp(renewed.bundle).find(slurp(renewed.ca_cert)) != std::string::npos);
}

TEST_CASE("local CA: a missing or stale bundle is rewritten") {
  ScratchDir scratch;
  auto certs = tls::ensure_local_certificates(scratch.path());
  const auto bundle = slurp(certs.bundle);
  std::filesystem::remove(certs.bundle);
  auto again = tls::ensure_local_certificates(scratch.path());
  CHECK_FALSE(again.issued_leaf);
  CHECK(slurp(certs.bundle) == bundle);
  spill(certs.bundle, "old content\n");
  tls::ensure_local_certificates(scratch.path());
  CHECK(slurp(certs.bundle) == bundle);
}

TEST_CASE("local CA: concurrent first use on a fresh directory ends with one CA") {
  ScratchDir scratch;
  const auto dir = scratch.file("data");
  constexpr int kThreads = 6;
  std::latch start(kThreads);
  std::vector<tls::LocalCertificates> results(kThreads);
  std::vector<std::string> fingerprints(kThreads);
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      try {
        results[i] = tls::ensure_local_certificates(dir);
        fingerprints[i] = tls::certificate_fingerprint(results[i].ca_cert);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  int created = 0;
  for (int i = 0; i < kThreads; ++i) {
    CAPTURE(i);
    CHECK(errors[i] == "");
    CHECK(fingerprints[i] == fingerprints[0]);
    created += results[i].created_ca ? 1 : 0;
  }
  CHECK(created == 1);
  CHECK(tls::certificate_fingerprint(dir + "/ca.pem") == fingerprints[0]);
  CHECK(verify_leaf(dir + "/ca.pem", dir + "/localhost.pem", "localhost") == X509_V_OK);
}

TEST_CASE("local CA: default_data_dir honours RPROXY_DATA_DIR then XDG_DATA_HOME then HOME") {
  EnvGuard env;
  env.set("RPROXY_DATA_DIR", "/data/rp");
  env.set("XDG_DATA_HOME", "/xdg");
  env.set("HOME", "/home/u");
  CHECK(tls::default_data_dir() == "/data/rp");
  env.set("RPROXY_DATA_DIR", "");
  CHECK(tls::default_data_dir() == "/xdg/rproxy");
  env.unset("RPROXY_DATA_DIR");
  CHECK(tls::default_data_dir() == "/xdg/rproxy");
  env.set("XDG_DATA_HOME", "relative/dir");  // invalid per the XDG spec: ignored
  CHECK(tls::default_data_dir() == "/home/u/.local/share/rproxy");
  env.unset("XDG_DATA_HOME");
  CHECK(tls::default_data_dir() == "/home/u/.local/share/rproxy");
  env.set("HOME", "");
  CHECK_THROWS_AS(tls::default_data_dir(), std::runtime_error);
  env.unset("HOME");
  CHECK_THROWS_WITH(tls::default_data_dir(), doctest::Contains("set RPROXY_DATA_DIR, XDG_DATA_HOME or HOME"));
}

TEST_CASE("local CA: describe_certificate shows names and constraints and validity and fingerprint") {
  ScratchDir scratch;
  auto certs = tls::ensure_local_certificates(scratch.path());
  auto leaf = tls::describe_certificate(certs.cert);
  CAPTURE(leaf);
  CHECK(leaf.find("subject:           CN=localhost\n") != std::string::npos);
  CHECK(leaf.find("issuer:            " + certs.ca_subject + "\n") != std::string::npos);
  CHECK(leaf.find("subject alt names: DNS:localhost, DNS:*.localhost, IP:127.0.0.1, IP:::1\n") !=
        std::string::npos);
  CHECK(leaf.find("CA:                no\n") != std::string::npos);
  CHECK(leaf.find("not after:         " + certs.leaf_not_after + " ") != std::string::npos);
  CHECK(leaf.find("SHA-256:           " + tls::certificate_fingerprint(certs.cert) + "\n") !=
        std::string::npos);
  CHECK(tls::certificate_fingerprint(certs.cert).size() == 32 * 3 - 1);
  auto ca = tls::describe_certificate(certs.ca_cert);
  CAPTURE(ca);
  CHECK(ca.find("CA:                yes, path length 0\n") != std::string::npos);
  CHECK(ca.find(
            "name constraints:  permitted DNS:localhost, permitted IP:127.0.0.0/8, permitted IP:::1/128\n") !=
        std::string::npos);
  CHECK_THROWS_WITH(tls::describe_certificate(scratch.file("missing.pem")),
                    doctest::Contains(scratch.file("missing.pem").c_str()));
}

TEST_CASE("local CA: write_file_atomically creates files with their final mode and replaces them whole") {
  ScratchDir scratch;
  const auto path = scratch.file("secret.pem");
  const mode_t old_mask = ::umask(0);  // even with no umask, the key is never readable by others
  tls::detail::write_file_atomically(path, "one", 0600);
  ::umask(old_mask);
  CHECK(mode_of(path) == 0600);
  CHECK(slurp(path) == "one");
  tls::detail::write_file_atomically(path, "two", 0600);
  CHECK(slurp(path) == "two");
  CHECK(std::distance(std::filesystem::directory_iterator(scratch.path()),
                      std::filesystem::directory_iterator()) == 1);
  CHECK_THROWS_WITH(
      tls::detail::write_file_atomically(scratch.file("no/such/dir/x"), "x", 0600),
      doctest::Contains((scratch.file("no/such/dir/x") + ": No such file or directory").c_str()));
}
