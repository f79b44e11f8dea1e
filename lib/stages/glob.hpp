// glob_match, shared by the stages that match paths and origins with "*" patterns.
#pragma once

#include <string_view>

namespace rproxy::stages {

// glob_match: '*' matches any run of bytes (including '/' and none); everything else matches itself.
bool glob_match(std::string_view pattern, std::string_view text);

}  // namespace rproxy::stages
