// `rproxy ca path|env|trust|untrust|info`: the local CA behind `rproxy serve --tls`, and getting clients to
// trust it: per shell through environment variables, or system-wide and in the NSS database browsers use.
#include <fcntl.h>
#include <pwd.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "cli.hpp"
#include "tls/local_ca.hpp"

extern char** environ;

namespace rproxy::cli {
namespace {

// The CA's file name in the system store. Debian's update-ca-certificates only picks up *.crt files.
constexpr const char* kTrustFileName = "rproxy-local-ca.crt";
// The CA's nickname in NSS databases, used to add it and to find it again for untrust.
constexpr const char* kNssNickname = "rproxy local CA";
// certutil -D removes one certificate per run; a CA trusted, renewed and trusted again is there twice.
constexpr int kMaxNssRemovals = 16;

struct CaFlags {
  std::string dir;  // empty = default_data_dir()
  std::string shell = "sh";
};

bool is_dir(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

bool on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');)
    if (!dir.empty() && ::access((dir + "/" + program).c_str(), X_OK) == 0) return true;
  return false;
}

// sh_quote: one single-quoted word for sh, bash and zsh ('\'' closes, escapes and reopens).
std::string sh_quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// fish_quote: inside fish's single quotes only \ and ' are special, and both are escaped with \.
std::string fish_quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

// run_program runs argv (searched in PATH) with our stdin and, unless quiet, our stdout and stderr;
// returns its exit code, 128+N when killed by signal N, or -1 when it cannot be started.
int run_program(const std::vector<std::string>& argv, bool quiet) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (quiet) {
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  }
  std::cout.flush();  // the program's output must come after ours, not before
  std::cerr.flush();
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return -1;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string describe_exit(int code) {
  return code < 0 ? "could not be started" : "exited with status " + std::to_string(code);
}

// TrustStore is where the system keeps extra CAs and the command that rebuilds its bundle from them.
struct TrustStore {
  std::string dir;
  std::string update_command;  // a shell command
  std::string file() const { return dir + "/" + kTrustFileName; }
};

// find_trust_store: Debian/Ubuntu's /usr/local/share/ca-certificates, else Fedora/RHEL's anchors;
// RPROXY_CA_TRUST_DIR and RPROXY_CA_UPDATE_COMMAND replace either part (tests point them at a temporary
// directory and `true`, so no test touches the real store).
std::optional<TrustStore> find_trust_store() {
  std::optional<TrustStore> store;
  if (is_dir("/usr/local/share/ca-certificates") || exists("/usr/sbin/update-ca-certificates"))
    store = TrustStore{"/usr/local/share/ca-certificates", "update-ca-certificates"};
  else if (is_dir("/etc/pki/ca-trust/source/anchors"))
    store = TrustStore{"/etc/pki/ca-trust/source/anchors", "update-ca-trust"};
  const char* dir = std::getenv("RPROXY_CA_TRUST_DIR");
  const char* command = std::getenv("RPROXY_CA_UPDATE_COMMAND");
  if (dir && *dir) {
    if (!store) store = TrustStore{"", "update-ca-certificates"};
    store->dir = dir;
  }
  if (store && command && *command) store->update_command = command;
  return store;
}

// Nss is the shared NSS database Chrome and Chromium (and other NSS clients) use on Linux.
struct Nss {
  std::string db;  // "sql:$HOME/.pki/nssdb"
};

std::optional<Nss> find_nss() {
  const char* home = std::getenv("HOME");
  if (!home || !*home || !on_path("certutil")) return std::nullopt;
  const std::string dir = std::string(home) + "/.pki/nssdb";
  if (!is_dir(dir)) return std::nullopt;
  return Nss{"sql:" + dir};
}

bool running_in_wsl() {
  std::string version = read_text("/proc/version");
  std::transform(version.begin(), version.end(), version.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return version.find("microsoft") != std::string::npos;
}

// resolve_dir: --dir, or the default data directory; false (exit 2) when there is none.
bool resolve_dir(const CaFlags& flags, std::string& dir, CliState& state) {
  if (!flags.dir.empty()) {
    dir = flags.dir;
    return true;
  }
  try {
    dir = tls::default_data_dir();
    return true;
  } catch (const std::exception& e) {
    std::cerr << "rproxy: error: " << e.what() << ", or give --dir\n";
    state.exit_code = kExitUsage;
    return false;
  }
}

// ensure creates or renews what is missing and says so on stderr, so stdout stays usable in $(...).
std::optional<tls::LocalCertificates> ensure(const CaFlags& flags, CliState& state) {
  std::string dir;
  if (!resolve_dir(flags, dir, state)) return std::nullopt;
  try {
    auto certs = tls::ensure_local_certificates(dir);
    if (certs.created_ca)
      std::cerr << "rproxy: created a local CA: " << certs.ca_cert << " (" << certs.ca_subject
                << "); trust it with `rproxy ca trust`, or per shell with eval \"$(rproxy ca env)\"\n";
    if (certs.issued_leaf)
      std::cerr << "rproxy: issued " << certs.cert
                << " for localhost, *.localhost, 127.0.0.1 and ::1 (valid until " << certs.leaf_not_after
                << ")\n";
    return certs;
  } catch (const std::exception& e) {
    std::cerr << "rproxy: error: " << e.what() << "\n";
    state.exit_code = kExitRuntime;
    return std::nullopt;
  }
}

// sudo_note: under sudo, HOME is usually root's, so the CA at hand is root's own and not the one the
// user's `rproxy serve --tls` uses; say so before installing it.
void sudo_note(const CaFlags& flags, const std::string& dir) {
  const char* sudo_user = std::getenv("SUDO_USER");
  if (::geteuid() != 0 || !sudo_user || !*sudo_user || !flags.dir.empty()) return;
  const passwd* pw = ::getpwnam(sudo_user);
  if (!pw || !pw->pw_dir || dir.rfind(std::string(pw->pw_dir) + "/", 0) == 0) return;
  std::cerr << "rproxy: note: under sudo this is the CA in " << dir << ", not " << sudo_user
            << "'s; run `rproxy ca trust` as " << sudo_user
            << " (it prints the sudo commands), or pass --dir\n";
}

int run_path(const CaFlags& flags, CliState& state) {
  auto certs = ensure(flags, state);
  if (!certs) return state.exit_code;
  std::cout << certs->ca_cert << "\n";
  return kExitOk;
}

int run_env(const CaFlags& flags, CliState& state) {
  auto certs = ensure(flags, state);
  if (!certs) return state.exit_code;
  const bool fish = flags.shell == "fish";
  auto quote = fish ? fish_quote : sh_quote;
  const std::string dir_flag = flags.dir.empty() ? "" : " --dir " + quote(flags.dir);
  if (fish)
    std::cout << "# Trust the rproxy local CA in this shell: rproxy ca env --shell fish" << dir_flag
              << " | source\n";
  else
    std::cout << "# Trust the rproxy local CA in this shell: eval \"$(rproxy ca env" << dir_flag << ")\"\n";
  if (certs->system_bundle.empty())
    std::cout << "# warning: no system CA bundle was found, so " << certs->bundle
              << " holds only the rproxy CA and other HTTPS sites will fail in this shell\n";
  // Node adds NODE_EXTRA_CA_CERTS to its bundle; the other three replace the default bundle, so they
  // name the combined one (system bundle + our CA).
  const std::pair<const char*, const std::string*> vars[] = {{"NODE_EXTRA_CA_CERTS", &certs->ca_cert},
                                                             {"SSL_CERT_FILE", &certs->bundle},
                                                             {"REQUESTS_CA_BUNDLE", &certs->bundle},
                                                             {"CURL_CA_BUNDLE", &certs->bundle}};
  for (const auto& [name, value] : vars) {
    if (fish)
      std::cout << "set -gx " << name << " " << quote(*value) << ";\n";
    else
      std::cout << "export " << name << "=" << quote(*value) << "\n";
  }
  return kExitOk;
}

// browser_hints: NSS (Chrome/Chromium on Linux) when certutil and ~/.pki/nssdb exist, else how to do it
// by hand; and, under WSL, the Windows store that Windows browsers use.
void browser_hints(const std::string& ca_cert, bool& failed) {
  if (auto nss = find_nss()) {
    const int rc =
        run_program({"certutil", "-d", nss->db, "-A", "-t", "C,,", "-n", kNssNickname, "-i", ca_cert}, false);
    if (rc == 0) {
      std::cout << "rproxy: added the CA to the NSS database " << nss->db << " as \"" << kNssNickname
                << "\" (Chrome and Chromium; restart them)\n";
    } else {
      std::cerr << "rproxy: error: certutil -A on " << nss->db << " " << describe_exit(rc) << "\n";
      failed = true;
    }
  } else {
    std::cout
        << "rproxy: hint: browsers keep their own stores: for Chrome/Chromium install certutil "
           "(libnss3-tools) and run `rproxy ca trust` again once ~/.pki/nssdb exists; in Firefox import "
        << ca_cert
        << " under Settings > Privacy & Security > Certificates > View Certificates > Authorities, or set "
           "security.enterprise_roots.enabled to true in about:config\n";
  }
  if (running_in_wsl())
    std::cout
        << "rproxy: hint: this is WSL: Windows browsers use the Windows store; import the CA there with\n"
        << "  certutil.exe -addstore -user Root \"$(wslpath -w " << sh_quote(ca_cert) << ")\"\n";
}

int run_trust(const CaFlags& flags, CliState& state) {
  auto certs = ensure(flags, state);
  if (!certs) return state.exit_code;
  sudo_note(flags, certs->dir);
  bool failed = false;
  auto store = find_trust_store();
  if (!store) {
    std::cerr
        << "rproxy: error: no system trust store found (neither /usr/local/share/ca-certificates with "
           "update-ca-certificates nor /etc/pki/ca-trust/source/anchors with update-ca-trust); give clients "
        << certs->ca_cert << " yourself, or use eval \"$(rproxy ca env)\"\n";
    failed = true;
  } else if (::access(store->dir.c_str(), W_OK) != 0) {
    const int error = errno;
    std::cerr << "rproxy: error: cannot write to " << store->dir << " ("
              << std::system_category().message(error) << "): the system store needs root. Run:\n"
              << "  sudo install -m 0644 " << sh_quote(certs->ca_cert) << " " << sh_quote(store->file())
              << "\n"
              << "  sudo " << store->update_command << "\n";
    failed = true;
  } else {
    const auto pem = read_text(certs->ca_cert);
    if (read_text(store->file()) == pem) {
      std::cout << "rproxy: " << store->file() << " already holds this CA\n";
    } else {
      try {
        tls::detail::write_file_atomically(store->file(), pem, 0644);
      } catch (const std::exception& e) {
        std::cerr << "rproxy: error: " << e.what() << "\n";
        return kExitRuntime;
      }
      std::cout << "rproxy: copied " << certs->ca_cert << " to " << store->file() << "\n";
    }
    const int rc = run_program({"/bin/sh", "-c", store->update_command}, false);
    if (rc != 0) {
      std::cerr << "rproxy: error: `" << store->update_command << "` " << describe_exit(rc) << "; "
                << store->file() << " is in place but the system bundle was not rebuilt\n";
      return kExitRuntime;
    }
    std::cout
        << "rproxy: ran `" << store->update_command << "`"
        << ": the system store trusts the rproxy local CA (curl, wget, Python, Go, OpenSSL-based tools)\n";
  }
  browser_hints(certs->ca_cert, failed);
  return failed ? kExitRuntime : kExitOk;
}

int run_untrust(const CaFlags& flags, CliState& state) {
  std::string dir;
  if (!resolve_dir(flags, dir, state)) return state.exit_code;
  bool failed = false;
  auto store = find_trust_store();
  if (!store) {
    std::cout << "rproxy: no system trust store found: nothing to remove there\n";
  } else if (!exists(store->file())) {
    std::cout << "rproxy: " << store->file() << " does not exist: the system store holds no rproxy CA\n";
  } else if (::access(store->dir.c_str(), W_OK) != 0) {
    const int error = errno;
    std::cerr << "rproxy: error: cannot write to " << store->dir << " ("
              << std::system_category().message(error) << "): the system store needs root. Run:\n"
              << "  sudo rm -f " << sh_quote(store->file()) << "\n"
              << "  sudo " << store->update_command << "\n";
    failed = true;
  } else {
    // Removed whichever rproxy CA it holds; saying which helps when the CA in DIR was renewed since.
    const bool this_ca = read_text(store->file()) == read_text(dir + "/ca.pem");
    if (::unlink(store->file().c_str()) != 0) {
      std::cerr << "rproxy: error: cannot remove " << store->file() << ": "
                << std::system_category().message(errno) << "\n";
      return kExitRuntime;
    }
    std::cout << "rproxy: removed " << store->file()
              << (this_ca ? " (the CA in " + dir + ")" : " (an older rproxy CA)") << "\n";
    const int rc = run_program({"/bin/sh", "-c", store->update_command}, false);
    if (rc != 0) {
      std::cerr << "rproxy: error: `" << store->update_command << "` " << describe_exit(rc)
                << "; the system bundle may still hold the CA until it is rebuilt\n";
      return kExitRuntime;
    }
    std::cout << "rproxy: ran `" << store->update_command << "`: the system store no longer trusts it\n";
  }
  if (auto nss = find_nss()) {
    int removed = 0;
    while (removed < kMaxNssRemovals &&
           run_program({"certutil", "-d", nss->db, "-D", "-n", kNssNickname}, true) == 0)
      ++removed;
    if (removed)
      std::cout << "rproxy: removed \"" << kNssNickname << "\" from the NSS database " << nss->db << " ("
                << removed << (removed == 1 ? " certificate)\n" : " certificates)\n");
    else
      std::cout << "rproxy: the NSS database " << nss->db << " holds no \"" << kNssNickname << "\"\n";
  }
  if (running_in_wsl())
    std::cout
        << "rproxy: hint: this is WSL: remove the CA from the Windows store in certmgr.msc (Trusted Root "
           "Certification Authorities), if you imported it there\n";
  return failed ? kExitRuntime : kExitOk;
}

std::string indent(const std::string& text) {
  std::string out;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) out += "  " + line + "\n";
  return out;
}

int run_info(const CaFlags& flags, CliState& state) {
  auto certs = ensure(flags, state);
  if (!certs) return state.exit_code;
  try {
    std::cout << "data directory:    " << certs->dir << "\n"
              << "CA certificate:    " << certs->ca_cert << "\n"
              << "CA key:            " << certs->ca_key << "\n"
              << "certificate:       " << certs->cert << "\n"
              << "key:               " << certs->key << "\n"
              << "bundle:            " << certs->bundle << " ("
              << (certs->system_bundle.empty() ? "no system bundle found" : certs->system_bundle)
              << " + the CA)\n";
    if (auto store = find_trust_store()) {
      std::string status = "not installed (rproxy ca trust)";
      if (exists(store->file()))
        status = read_text(store->file()) == read_text(certs->ca_cert)
                     ? "installed as " + store->file()
                     : store->file() + " holds another rproxy CA";
      std::cout << "system store:      " << status << "\n";
    }
    std::cout << "\nCA\n"
              << indent(tls::describe_certificate(certs->ca_cert)) << "\nlocalhost certificate\n"
              << indent(tls::describe_certificate(certs->cert));
  } catch (const std::exception& e) {
    std::cerr << "rproxy: error: " << e.what() << "\n";
    return kExitRuntime;
  }
  return kExitOk;
}

}  // namespace

void setup_ca(CLI::App& app, CliState& state) {
  auto* ca = app.add_subcommand(
      "ca", "The local CA behind `serve --tls`: print its paths, export it to a shell, trust it system-wide");
  ca->require_subcommand(1);
  ca->footer(
      "Examples:\n"
      "  rproxy ca info\n"
      "  curl --cacert \"$(rproxy ca path)\" https://localhost:8443/\n"
      "  eval \"$(rproxy ca env)\"\n"
      "  sudo rproxy ca trust\n");
  const std::string dir_help =
      "data directory of the CA (default: $RPROXY_DATA_DIR, $XDG_DATA_HOME/rproxy or ~/.local/share/rproxy)";
  auto add = [&](const char* name, const char* help, int (*run)(const CaFlags&, CliState&)) {
    auto flags = std::make_shared<CaFlags>();
    auto* cmd = ca->add_subcommand(name, help);
    cmd->add_option("--dir", flags->dir, dir_help)->type_name("DIR");
    cmd->footer(std::string("Examples:\n  rproxy ca ") + name + "\n  rproxy ca " + name +
                " --dir /tmp/rproxy-ca\n");
    cmd->callback([flags, run, &state] { state.exit_code = run(*flags, state); });
    return std::make_pair(cmd, flags);
  };
  add("path",
      "Print the CA certificate's path (creating the CA if needed): curl --cacert \"$(rproxy ca path)\"",
      run_path);
  auto [env, env_flags] = add(
      "env",
      "Print shell lines that make Node, Python, curl and OpenSSL trust the CA: eval \"$(rproxy ca env)\"",
      run_env);
  env->add_option("--shell", env_flags->shell, "syntax of the lines: sh (also bash, zsh) or fish")
      ->check(CLI::IsMember({"sh", "fish"}))
      ->capture_default_str();
  add("trust", "Install the CA in the system trust store (needs root) and in the NSS database browsers use",
      run_trust);
  add("untrust", "Remove what `rproxy ca trust` installed", run_untrust);
  add("info", "Show the CA's and the localhost certificate's names, validity and fingerprints", run_info);
}

}  // namespace rproxy::cli
