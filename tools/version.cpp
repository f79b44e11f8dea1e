// --version: rproxy's version and what it was built with, so a bug report says which libraries were in play.
#include <brotli/decode.h>
#include <httplib.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>
#include <zlib.h>

#include <CLI/Version.hpp>
#include <asio/version.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "cli.hpp"

namespace rproxy::cli {

namespace {

std::string dotted(unsigned major, unsigned minor, unsigned patch) {
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

std::string compiler() {
#if defined(__clang__)
  return "clang " __clang_version__;
#elif defined(__GNUC__)
  return "GCC " __VERSION__;
#else
  return "unknown compiler";
#endif
}

}  // namespace

std::string version_text() {
  // Brotli packs its version as major << 24 | minor << 12 | patch.
  const auto brotli = BrotliDecoderVersion();
  std::string text = std::string("rproxy ") + RPROXY_VERSION + "\n";
  text += "built with:\n";
  text += std::string("  OpenSSL ") + OPENSSL_FULL_VERSION_STR + " (running " +
          OpenSSL_version(OPENSSL_VERSION) + ")\n";
  text += std::string("  zlib ") + ZLIB_VERSION + " (running " + zlibVersion() + ")\n";
  text += "  brotli " + dotted(brotli >> 24, (brotli >> 12) & 0xFFF, brotli & 0xFFF) + "\n";
  text += std::string("  cpp-httplib ") + CPPHTTPLIB_VERSION + "\n";
  text += "  Asio " + dotted(ASIO_VERSION / 100000, ASIO_VERSION / 100 % 1000, ASIO_VERSION % 100) + "\n";
  text += "  nlohmann json " +
          dotted(NLOHMANN_JSON_VERSION_MAJOR, NLOHMANN_JSON_VERSION_MINOR, NLOHMANN_JSON_VERSION_PATCH) +
          "\n";
  text += std::string("  CLI11 ") + CLI11_VERSION + "\n";
  text += std::string("build: ") + RPROXY_BUILD_TYPE + ", " + compiler();
  return text;
}

}  // namespace rproxy::cli
