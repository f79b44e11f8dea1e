// Fuzz target: scenario_from_json, which reads files, admin PUT/PATCH bodies and hot reloads. Whatever the
// JSON holds, the loader's only way to refuse it is ConfigError (reported with paths, the running scenario
// kept); any other exception would take down a running proxy on reload, so it is left to crash here.
// A scenario that loads must survive scenario_to_json and load back equal, as the header promises: the admin
// GET /scenario and --print-scenario outputs are meant to be fed back in.
#include <nlohmann/json.hpp>
#include <string_view>

#include "fuzz_targets.hpp"
#include "rproxy/scenario.hpp"

namespace rproxy::fuzz {

int fuzz_scenario_loader(const std::uint8_t* data, std::size_t size) {
  nlohmann::json doc = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return 0;
  Scenario s;
  try {
    s = scenario_from_json(doc);
  } catch (const ConfigError& e) {
    fuzz_require(!e.problems().empty(), "ConfigError without problems");
    return 0;
  }
  fuzz_require(validate_scenario(s).empty(), "a loaded scenario does not validate");
  const nlohmann::json rendered = scenario_to_json(s);
  Scenario again;
  try {
    again = scenario_from_json(rendered);
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    fuzz_require(false, "scenario_to_json output does not load");
  }
  fuzz_require(again == s, "scenario_from_json(scenario_to_json(s)) != s");
  return 0;
}

}  // namespace rproxy::fuzz

#ifdef RPROXY_LIBFUZZER
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return rproxy::fuzz::fuzz_scenario_loader(data, size);
}
#endif
