// statedict: safe state_dict loading for LibTorch.
#pragma once

// The one place the version lives; CMakeLists.txt reads these three lines.
#define STATEDICT_VERSION_MAJOR 0
#define STATEDICT_VERSION_MINOR 1
#define STATEDICT_VERSION_PATCH 0

#define STATEDICT_STRINGIFY_DETAIL(x) #x
#define STATEDICT_STRINGIFY(x) STATEDICT_STRINGIFY_DETAIL(x)
#define STATEDICT_VERSION_STRING                                                                                                           \
  STATEDICT_STRINGIFY(STATEDICT_VERSION_MAJOR)                                                                                             \
  "." STATEDICT_STRINGIFY(STATEDICT_VERSION_MINOR) "." STATEDICT_STRINGIFY(STATEDICT_VERSION_PATCH)

namespace statedict {
inline constexpr const char* version_string = STATEDICT_VERSION_STRING;
}  // namespace statedict
