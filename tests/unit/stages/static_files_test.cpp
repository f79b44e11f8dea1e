// Tests for the static stage: what is served (types, index, SPA fallback, ETag/304, ranges) and, above all,
// what never is (traversal with "..", encoded and double-encoded forms, symlinks out of the root).
#include "stages/static_files.hpp"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "rproxy/scenario.hpp"
#include "rproxy/stage.hpp"
#include "support/proxy_fixture.hpp"

using nlohmann::json;
using rproxy::Decision;
using rproxy::Exchange;
using rproxy::LocalResponse;
using rproxy::stages::StaticStage;
using rproxy::test::TempDir;

namespace {

struct Site {
  TempDir outside;  // a sibling directory with a secret: nothing here may ever be served
  TempDir dir;
  std::string root = dir.path() + "/www";
  Site() {
    ::mkdir(root.c_str(), 0755);
    ::mkdir((root + "/docs").c_str(), 0755);
    ::mkdir((root + "/empty").c_str(), 0755);
    write(root + "/index.html", "<h1>home</h1>");
    write(root + "/app.js", "console.log(1)");
    write(root + "/docs/index.html", "<h1>docs</h1>");
    write(root + "/data.bin", std::string("0123456789"));
    write(root + "/a b.txt", "space");
    write(outside.path() + "/secret.txt", "TOP SECRET");
    write(dir.path() + "/secret.txt", "TOP SECRET");
    REQUIRE(::symlink((outside.path() + "/secret.txt").c_str(), (root + "/leak.txt").c_str()) == 0);
    REQUIRE(::symlink(outside.path().c_str(), (root + "/leakdir").c_str()) == 0);
    REQUIRE(::symlink("app.js", (root + "/alias.js").c_str()) == 0);  // inside the root: fine
  }
  static void write(const std::string& path, const std::string& content) {
    std::ofstream(path, std::ios::binary) << content;
  }
  std::unique_ptr<rproxy::Stage> stage(json extra = json::object()) const {
    json params = {{"root", root}};
    params.update(extra);
    static const rproxy::Scenario scenario;
    std::vector<std::string> problems;
    auto s = StaticStage::create(params, "p", rproxy::StageContext{scenario, nullptr}, problems);
    REQUIRE(problems.empty());
    return s;
  }
};

LocalResponse get(rproxy::Stage& stage, const std::string& target, std::vector<rproxy::Header> headers = {},
                  const std::string& method = "GET") {
  Exchange ex;
  ex.request.method = method;
  ex.request.target = target;
  for (auto& h : headers) ex.request.headers.add(h.name, h.value);
  auto d = stage.on_request(ex);
  REQUIRE(d.kind == Decision::Kind::Respond);
  return *d.response;
}

std::string served(const LocalResponse& r) {
  if (r.body_file.empty()) return r.body;
  std::ifstream in(r.body_file, std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return all.substr(static_cast<std::size_t>(r.body_file_offset), static_cast<std::size_t>(r.body_file_size));
}

}  // namespace

TEST_CASE("static: traversal in every spelling never leaves the root") {
  Site site;
  auto stage = site.stage({{"spa", true}});
  for (std::string t :
       {"/../secret.txt", "/docs/../../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E/secret.txt",
        "/..%2fsecret.txt", "/%2e%2e%2fsecret.txt", "/docs/%2e%2e/%2e%2e/secret.txt",
        "/%252e%252e/secret.txt", "/..%5csecret.txt", "/leak.txt", "/leakdir/secret.txt", "/%00/index.html",
        "/index.html%00.js", "/..", "/%"}) {
    CAPTURE(t);
    auto r = get(*stage, t);
    CHECK(served(r).find("TOP SECRET") == std::string::npos);
    CHECK(r.body_file.find(site.outside.path()) == std::string::npos);
  }
  CHECK(get(*stage, "/leak.txt").status == 404);
  CHECK(get(*stage, "/%2e%2e/secret.txt").status == 404);
}

TEST_CASE("static: files get their type, ETag, Last-Modified and Accept-Ranges, index files and redirects") {
  Site site;
  auto stage = site.stage();
  auto js = get(*stage, "/app.js?v=3");
  CHECK(js.status == 200);
  CHECK(served(js) == "console.log(1)");
  CHECK(js.headers.get("Content-Type") == "text/javascript; charset=utf-8");
  CHECK(js.headers.get("Accept-Ranges") == "bytes");
  CHECK(js.headers.get("Cache-Control") == "no-cache");
  CHECK(js.headers.has("ETag"));
  CHECK(js.headers.has("Last-Modified"));
  CHECK(served(get(*stage, "/alias.js")) == "console.log(1)");  // a symlink inside the root is fine
  CHECK(served(get(*stage, "/a%20b.txt")) == "space");
  CHECK(served(get(*stage, "/")) == "<h1>home</h1>");
  CHECK(served(get(*stage, "/docs/")) == "<h1>docs</h1>");
  auto redirect = get(*stage, "/docs?x=1");
  CHECK(redirect.status == 301);
  CHECK(redirect.headers.get("Location") == "/docs/?x=1");
  CHECK(get(*stage, "/empty/").status == 404);
  CHECK(get(*stage, "/missing.js").status == 404);
  auto post = get(*stage, "/app.js", {}, "POST");
  CHECK(post.status == 405);
  CHECK(post.headers.get("Allow") == "GET, HEAD");
}

TEST_CASE("static: If-None-Match and If-Modified-Since give 304") {
  Site site;
  auto stage = site.stage();
  auto first = get(*stage, "/app.js");
  auto etag = std::string(*first.headers.get("ETag"));
  CHECK(get(*stage, "/app.js", {{"If-None-Match", etag}}).status == 304);
  CHECK(get(*stage, "/app.js", {{"If-None-Match", "\"other\", W/" + etag}}).status == 304);
  CHECK(get(*stage, "/app.js", {{"If-None-Match", "\"other\""}}).status == 200);
  auto lm = std::string(*first.headers.get("Last-Modified"));
  CHECK(get(*stage, "/app.js", {{"If-Modified-Since", lm}}).status == 304);
  CHECK(get(*stage, "/app.js", {{"If-Modified-Since", "Sat, 01 Jan 2000 00:00:00 GMT"}}).status == 200);
}

TEST_CASE("static: byte ranges give 206 with Content-Range, bad ones 416, If-Range mismatches the whole") {
  Site site;
  auto stage = site.stage();
  auto r = get(*stage, "/data.bin", {{"Range", "bytes=2-4"}});
  CHECK(r.status == 206);
  CHECK(served(r) == "234");
  CHECK(r.headers.get("Content-Range") == "bytes 2-4/10");
  CHECK(served(get(*stage, "/data.bin", {{"Range", "bytes=7-"}})) == "789");
  CHECK(served(get(*stage, "/data.bin", {{"Range", "bytes=-3"}})) == "789");
  CHECK(served(get(*stage, "/data.bin", {{"Range", "bytes=8-100"}})) == "89");
  auto bad = get(*stage, "/data.bin", {{"Range", "bytes=10-"}});
  CHECK(bad.status == 416);
  CHECK(bad.headers.get("Content-Range") == "bytes */10");
  CHECK(get(*stage, "/data.bin", {{"Range", "bytes=1-2,4-5"}}).status == 200);  // several: the whole file
  CHECK(get(*stage, "/data.bin", {{"Range", "bytes=2-4"}, {"If-Range", "\"stale\""}}).status == 200);
}

TEST_CASE("static: SPA fallback serves index.html for page-like paths only") {
  Site site;
  auto spa = site.stage({{"spa", true}});
  auto page = get(*spa, "/settings/profile");
  CHECK(page.status == 200);
  CHECK(served(page) == "<h1>home</h1>");
  CHECK(get(*spa, "/missing.js").status == 404);  // an asset that is missing stays missing
  CHECK(get(*spa, "/report.pdf", {{"Accept", "text/html"}}).status == 200);
  CHECK(get(*site.stage(), "/settings/profile").status == 404);  // without spa
}

TEST_CASE("static: params are checked with their paths") {
  static const rproxy::Scenario scenario;
  std::vector<std::string> problems;
  CHECK(StaticStage::create({{"root", "/nonexistent/dir"}, {"prefix", "assets"}, {"index", {"../x"}}}, "p",
                            rproxy::StageContext{scenario, nullptr}, problems) == nullptr);
  REQUIRE(problems.size() == 3);
  CHECK(problems[0].rfind("p.root: not a directory: /nonexistent/dir", 0) == 0);
  CHECK(problems[1] == "p.prefix: must start with \"/\", got \"assets\"");
  CHECK(problems[2] == "p.index[0]: must be a file name, got \"../x\"");
}
