#include "core/runtime.hpp"

#include <algorithm>

#include "tls/local_ca.hpp"

namespace rproxy {

namespace {
std::vector<std::unique_ptr<Stage>> build_stages(const std::vector<StageSpec>& specs, const std::string& path,
                                                 const StageContext& context, std::vector<std::string>& problems) {
  std::vector<std::unique_ptr<Stage>> out;
  const auto& registry = builtin_stage_registry();
  for (std::size_t i = 0; i < specs.size(); ++i) {
    auto p = path + "[" + std::to_string(i) + "]";
    const auto* info = registry.find(specs[i].type);
    if (!info) continue;  // validate_scenario already reported it
    if (auto stage = info->factory(specs[i].params, p + ".params", context, problems)) out.push_back(std::move(stage));
  }
  return out;
}

// The listeners' certificate: the user's, or one from the local CA (created on first use).
void build_server_tls(Runtime& rt, std::vector<std::string>& problems) {
  const auto& s = rt.scenario;
  if (std::none_of(s.listeners.begin(), s.listeners.end(), [](const auto& l) { return l.tls; })) return;
  std::string cert = s.tls.cert;
  std::string key = s.tls.key;
  std::string local_ca_dir;
  if (cert.empty()) {
    try {
      auto local = tls::ensure_local_certificates(tls::default_data_dir());
      cert = local.cert;
      key = local.key;
      local_ca_dir = local.dir;
      if (local.created_ca)
        rt.notices.push_back("created a local CA: " + local.ca_cert +
                             "; trust it with `rproxy ca trust`, or per shell with eval \"$(rproxy ca env)\"");
      rt.notices.push_back("HTTPS certificate for localhost, 127.0.0.1, ::1 and every *.localhost name from the local CA " +
                           local.ca_cert + " (valid until " + local.leaf_not_after + ")");
    } catch (const std::exception& e) {
      problems.push_back(std::string("tls: cannot set up the local CA: ") + e.what());
      return;
    }
  }
  try {
    rt.server_tls = tls::make_server_context(cert, key, local_ca_dir);
  } catch (const std::exception& e) {
    problems.push_back(std::string(s.tls.cert.empty() ? "tls" : "tls.cert") + ": " + e.what());
  }
}

void build_upstream_tls(RouteRuntime& rr, const std::string& path, std::vector<std::string>& problems,
                        std::vector<std::string>& notices) {
  const auto& route = *rr.spec;
  if (std::none_of(route.upstreams.begin(), route.upstreams.end(),
                   [](const UpstreamSpec& u) { return u.url.scheme == "https"; }))
    return;
  try {
    rr.upstream_tls = tls::make_client_context(route.upstream_tls.ca, route.upstream_tls.insecure);
  } catch (const std::exception& e) {
    problems.push_back(path + ".upstream_tls.ca: " + e.what());
  }
  if (route.upstream_tls.insecure)
    notices.push_back("warning: route " + route.name +
                      ": upstream certificates are NOT verified (--insecure); anyone on the path can impersonate "
                      "the upstream");
}
}  // namespace

std::shared_ptr<const Runtime> build_runtime(Scenario scenario) {
  fill_default_names(scenario);  // scenarios built in code get the same names as loaded ones
  auto problems = validate_scenario(scenario);
  if (!problems.empty()) throw ConfigError(std::move(problems));
  auto rt = std::make_shared<Runtime>();
  rt->scenario = std::move(scenario);
  const auto& s = rt->scenario;
  rt->stages = build_stages(s.stages, "stages", StageContext{s, nullptr}, problems);
  for (std::size_t i = 0; i < s.routes.size(); ++i) {
    RouteRuntime rr;
    rr.spec = &s.routes[i];
    rr.stages = build_stages(s.routes[i].stages, "routes[" + std::to_string(i) + "].stages",
                             StageContext{s, &s.routes[i]}, problems);
    std::vector<unsigned> weights;
    for (const auto& u : s.routes[i].upstreams) weights.push_back(u.weight);
    rr.balancer = std::make_unique<Balancer>(s.routes[i].balance, std::move(weights), s.seed + i);
    rr.health = std::make_unique<UpstreamHealth>(s.routes[i]);
    build_upstream_tls(rr, "routes[" + std::to_string(i) + "]", problems, rt->notices);
    rt->routes.push_back(std::move(rr));
  }
  build_server_tls(*rt, problems);
  if (!problems.empty()) throw ConfigError(std::move(problems));
  rt->router = std::make_unique<Router>(s.routes);
  std::vector<Stage*> global;
  for (const auto& st : rt->stages) global.push_back(st.get());
  rt->pipelines.push_back(global);
  for (const auto& rr : rt->routes) {
    auto p = global;
    for (const auto& st : rr.stages) p.push_back(st.get());
    rt->pipelines.push_back(std::move(p));
  }
  rt->all_stages = global;
  for (const auto& rr : rt->routes)
    for (const auto& st : rr.stages) rt->all_stages.push_back(st.get());
  return rt;
}

}  // namespace rproxy
