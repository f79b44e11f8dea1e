#include "core/runtime.hpp"

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
    rt->routes.push_back(std::move(rr));
  }
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
