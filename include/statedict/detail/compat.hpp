#pragma once
// The one place that knows which LibTorch statedict is compiled against (1.13 to 2.x). Everything
// else asks these macros and helpers instead of testing versions itself.
#include <c10/core/ScalarType.h>
#include <c10/core/Storage.h>
#include <torch/version.h>

#include <cstdint>

#define STATEDICT_TORCH_AT_LEAST(major, minor)                                                                                             \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

// c10::ScalarType gained float8_e5m2/e4m3fn in 2.1, their fnuz variants in 2.2, uint16-64 in 2.3.
#define STATEDICT_HAS_FLOAT8 STATEDICT_TORCH_AT_LEAST(2, 1)
#define STATEDICT_HAS_FLOAT8_FNUZ STATEDICT_TORCH_AT_LEAST(2, 2)
#define STATEDICT_HAS_UINT16_64 STATEDICT_TORCH_AT_LEAST(2, 3)
// float8_e8m0fnu and float4_e2m1fn_x2 came after 2.6 (LibTorch 2.14 has both). Each came with a
// header of its own, which says so more exactly than a version number would.
#if STATEDICT_TORCH_AT_LEAST(2, 7) && __has_include(<c10/util/Float8_e8m0fnu.h>)
#define STATEDICT_HAS_FLOAT8_E8M0 1
#else
#define STATEDICT_HAS_FLOAT8_E8M0 0
#endif
#if STATEDICT_TORCH_AT_LEAST(2, 7) && __has_include(<c10/util/Float4_e2m1fn_x2.h>)
#define STATEDICT_HAS_FLOAT4 1
#else
#define STATEDICT_HAS_FLOAT4 0
#endif

namespace statedict::detail {

/// Writable bytes of a storage statedict itself allocated (2.x made Storage::data() const).
inline std::uint8_t* storage_bytes(c10::Storage& s) {
#if STATEDICT_TORCH_AT_LEAST(2, 1)
  return static_cast<std::uint8_t*>(s.mutable_data());
#else
  return static_cast<std::uint8_t*>(s.data());
#endif
}

}  // namespace statedict::detail
