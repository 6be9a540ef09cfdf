#pragma once
// What a load writes to, as the module side and the matcher both see it.
#include <ATen/ATen.h>

#include <string>

namespace statedict::detail {

/// One tensor a load writes to: a module parameter or buffer, or (for CLI diffs) a checkpoint entry.
struct Target {
  std::string key;
  at::Tensor tensor;
  bool buffer = false;  // a module buffer (running statistics, inv_freq), not a parameter that training sets
};

/// A module class for reports: "Net" for "NetImpl" or "ns::Net".
inline std::string module_display_name(std::string name) {
  const auto colon = name.rfind("::");
  if (colon != std::string::npos) name = name.substr(colon + 2);
  if (name.size() > 4 && name.compare(name.size() - 4, 4, "Impl") == 0) name.resize(name.size() - 4);
  return name;
}

}  // namespace statedict::detail
