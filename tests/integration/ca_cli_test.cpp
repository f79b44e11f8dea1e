// Integration tests: `rproxy ca path|env|trust|untrust|info` run as the real binary (RPROXY_BINARY), with
// RPROXY_DATA_DIR, HOME and the trust store overrides pointed at temporary directories, so no test reads
// the user's CA or touches the system trust store.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/proxy_fixture.hpp"
#include "support/subprocess.hpp"

using namespace rproxy::test;

namespace {

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// CaSandbox: a data directory, a HOME without an NSS database and a trust directory whose update
// command only records that it ran.
struct CaSandbox {
  TempDir tmp;
  std::string data = tmp.file("data dir");  // a space, to check the quoting of every path
  std::string home = tmp.file("home");
  std::string trust = tmp.file("trust");
  std::string updated = tmp.file("updated");

  CaSandbox() {
    std::filesystem::create_directories(home);
    std::filesystem::create_directories(trust);
  }

  std::vector<std::string> env() const {
    return {"RPROXY_DATA_DIR=" + data, "HOME=" + home, "RPROXY_CA_TRUST_DIR=" + trust,
            "RPROXY_CA_UPDATE_COMMAND=touch '" + updated + "'"};
  }

  // ca runs `rproxy ca ARGS...` under env() plus extra variables.
  RunResult ca(std::vector<std::string> args, const std::vector<std::string>& extra_env = {}) const {
    std::vector<std::string> argv{"env"};
    for (const auto& v : env()) argv.push_back(v);
    for (const auto& v : extra_env) argv.push_back(v);
    argv.push_back(rproxy_binary());
    argv.push_back("ca");
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(std::move(argv), std::chrono::seconds(20));
  }
};

}  // namespace

TEST_SUITE("ca") {
  TEST_CASE("ca cli: path creates the CA once and prints the path of ca.pem") {
    CaSandbox box;
    auto first = box.ca({"path"});
    CAPTURE(first.err);
    REQUIRE(first.exit_code == 0);
    CHECK(first.out == box.data + "/ca.pem\n");
    CHECK(std::filesystem::is_regular_file(box.data + "/ca.pem"));
    CHECK(std::filesystem::is_regular_file(box.data + "/localhost.pem"));
    CHECK(contains(first.err, "rproxy: created a local CA: " + box.data + "/ca.pem"));
    const auto ca_pem = read_file(box.data + "/ca.pem");

    auto second = box.ca({"path"});
    CHECK(second.exit_code == 0);
    CHECK(second.out == first.out);
    CHECK(second.err == "");
    CHECK(read_file(box.data + "/ca.pem") == ca_pem);

    auto other = box.ca({"path", "--dir", box.tmp.file("other")});
    CHECK(other.exit_code == 0);
    CHECK(other.out == box.tmp.file("other") + "/ca.pem\n");
  }

  TEST_CASE("ca cli: env prints the four variables with the right files for sh and fish") {
    CaSandbox box;
    const auto ca = box.data + "/ca.pem";
    const auto bundle = box.data + "/ca-bundle.pem";
    auto sh = box.ca({"env"});
    CAPTURE(sh.out);
    CAPTURE(sh.err);
    REQUIRE(sh.exit_code == 0);
    auto lines = lines_of(sh.out);
    REQUIRE(lines.size() >= 5);
    CHECK(lines[0].rfind("# ", 0) == 0);
    CHECK(contains(lines[0], "eval \"$(rproxy ca env)\""));
    CHECK(contains(sh.out, "\nexport NODE_EXTRA_CA_CERTS='" + ca + "'\n"));
    CHECK(contains(sh.out, "\nexport SSL_CERT_FILE='" + bundle + "'\n"));
    CHECK(contains(sh.out, "\nexport REQUESTS_CA_BUNDLE='" + bundle + "'\n"));
    CHECK(contains(sh.out, "\nexport CURL_CA_BUNDLE='" + bundle + "'\n"));

    // What a shell makes of it: the exact paths, and the bundle holds the CA.
    auto evaluated = run_command({"sh", "-c",
                                  "eval \"$1\" && printf '%s\\n' \"$NODE_EXTRA_CA_CERTS\" \"$SSL_CERT_FILE\" "
                                  "\"$REQUESTS_CA_BUNDLE\" \"$CURL_CA_BUNDLE\"",
                                  "sh", sh.out});
    CHECK(evaluated.exit_code == 0);
    CHECK(evaluated.out == ca + "\n" + bundle + "\n" + bundle + "\n" + bundle + "\n");
    CHECK(contains(read_file(bundle), read_file(ca)));

    auto fish = box.ca({"env", "--shell", "fish"});
    CAPTURE(fish.out);
    REQUIRE(fish.exit_code == 0);
    CHECK(fish.out.rfind("# ", 0) == 0);
    CHECK(contains(fish.out, "| source"));
    CHECK(contains(fish.out, "\nset -gx NODE_EXTRA_CA_CERTS '" + ca + "';\n"));
    CHECK(contains(fish.out, "\nset -gx SSL_CERT_FILE '" + bundle + "';\n"));
    CHECK(contains(fish.out, "\nset -gx REQUESTS_CA_BUNDLE '" + bundle + "';\n"));
    CHECK(contains(fish.out, "\nset -gx CURL_CA_BUNDLE '" + bundle + "';\n"));

    auto bad = box.ca({"env", "--shell", "tcsh"});
    CHECK(bad.exit_code == 2);
    CHECK(contains(bad.err, "rproxy: error: --shell"));
  }

  TEST_CASE("ca cli: env quotes a directory with a single quote for sh and fish") {
    CaSandbox box;
    const auto dir = box.tmp.file("it's here");
    auto sh = box.ca({"env", "--dir", dir});
    REQUIRE(sh.exit_code == 0);
    CHECK(contains(sh.out, "export SSL_CERT_FILE='" + box.tmp.path() + "/it'\\''s here/ca-bundle.pem'\n"));
    auto evaluated =
        run_command({"sh", "-c", "eval \"$1\" && printf '%s\\n' \"$SSL_CERT_FILE\"", "sh", sh.out});
    CHECK(evaluated.out == dir + "/ca-bundle.pem\n");
    auto fish = box.ca({"env", "--shell", "fish", "--dir", dir});
    REQUIRE(fish.exit_code == 0);
    CHECK(contains(fish.out, "set -gx SSL_CERT_FILE '" + box.tmp.path() + "/it\\'s here/ca-bundle.pem';\n"));
  }

  TEST_CASE("ca cli: trust copies the CA to the trust directory and untrust removes it") {
    CaSandbox box;
    const auto installed = box.trust + "/rproxy-local-ca.crt";
    auto trust = box.ca({"trust"});
    CAPTURE(trust.out);
    CAPTURE(trust.err);
    REQUIRE(trust.exit_code == 0);
    CHECK(read_file(installed) == read_file(box.data + "/ca.pem"));
    CHECK(contains(trust.out, "rproxy: copied " + box.data + "/ca.pem to " + installed));
    CHECK(contains(trust.out, "rproxy: ran `touch '" + box.updated + "'`"));
    CHECK(std::filesystem::exists(box.updated));
    CHECK(contains(trust.out, "rproxy: hint: browsers keep their own stores"));  // no NSS database in HOME

    auto info = box.ca({"info"});
    CHECK(contains(info.out, "system store:      installed as " + installed));

    std::filesystem::remove(box.updated);
    auto again = box.ca({"trust"});
    CHECK(again.exit_code == 0);
    CHECK(contains(again.out, installed + " already holds this CA"));
    CHECK(std::filesystem::exists(box.updated));  // the store is rebuilt anyway, in case that failed before

    std::filesystem::remove(box.updated);
    auto untrust = box.ca({"untrust"});
    CAPTURE(untrust.out);
    REQUIRE(untrust.exit_code == 0);
    CHECK_FALSE(std::filesystem::exists(installed));
    CHECK(contains(untrust.out, "rproxy: removed " + installed));
    CHECK(std::filesystem::exists(box.updated));

    auto nothing = box.ca({"untrust"});
    CHECK(nothing.exit_code == 0);
    CHECK(contains(nothing.out, installed + " does not exist"));
  }

  TEST_CASE("ca cli: a failing update command is an error with exit code 1") {
    CaSandbox box;
    auto trust = box.ca({"trust"}, {"RPROXY_CA_UPDATE_COMMAND=exit 3"});
    CHECK(trust.exit_code == 1);
    CHECK(contains(trust.err, "rproxy: error: `exit 3` exited with status 3"));
    auto untrust = box.ca({"untrust"}, {"RPROXY_CA_UPDATE_COMMAND=exit 3"});
    CHECK(untrust.exit_code == 1);
    CHECK(contains(untrust.err, "rproxy: error: `exit 3` exited with status 3"));
  }

  TEST_CASE("ca cli: trust without write access prints the sudo commands and exits 1") {
    if (::geteuid() == 0) {
      MESSAGE("skipped: root can write to any directory");
      return;
    }
    CaSandbox box;
    REQUIRE(::chmod(box.trust.c_str(), 0555) == 0);
    auto trust = box.ca({"trust"});
    ::chmod(box.trust.c_str(), 0755);
    CAPTURE(trust.err);
    CHECK(trust.exit_code == 1);
    CHECK(contains(trust.err, "  sudo install -m 0644 '" + box.data + "/ca.pem' '" + box.trust +
                                  "/rproxy-local-ca.crt'\n"));
    CHECK(contains(trust.err, "  sudo touch '" + box.updated + "'\n"));
    CHECK_FALSE(std::filesystem::exists(box.updated));
  }

  TEST_CASE("ca cli: info shows the paths and the SANs and the name constraint") {
    CaSandbox box;
    auto info = box.ca({"info"});
    CAPTURE(info.out);
    CAPTURE(info.err);
    REQUIRE(info.exit_code == 0);
    CHECK(contains(info.out, "CA certificate:    " + box.data + "/ca.pem\n"));
    CHECK(contains(info.out, "certificate:       " + box.data + "/localhost.pem\n"));
    CHECK(contains(info.out, "subject alt names: DNS:localhost, DNS:*.localhost, IP:127.0.0.1, IP:::1\n"));
    CHECK(contains(info.out, "name constraints:  permitted DNS:localhost, permitted IP:127.0.0.0/8"));
    CHECK(contains(info.out, "system store:      not installed"));
    CHECK(contains(info.out, "SHA-256:"));
  }

  TEST_CASE("ca cli: a corrupt CA or a missing subcommand or no data directory is reported") {
    CaSandbox box;
    std::filesystem::create_directories(box.data);
    { std::ofstream(box.data + "/ca.pem") << "garbage\n"; }
    auto corrupt = box.ca({"path"});
    CHECK(corrupt.exit_code == 1);
    CHECK(corrupt.out == "");
    CHECK(corrupt.err.rfind("rproxy: error: " + box.data + "/ca.pem is not a PEM certificate", 0) == 0);

    auto bare = box.ca({});
    CHECK(bare.exit_code == 2);
    CHECK(contains(bare.err, "rproxy: error:"));

    auto nowhere = run_command({"env", "-i", "PATH=/usr/bin:/bin", rproxy_binary(), "ca", "path"});
    CHECK(nowhere.exit_code == 2);
    CHECK(contains(nowhere.err, "set RPROXY_DATA_DIR, XDG_DATA_HOME or HOME, or give --dir"));
  }
}
