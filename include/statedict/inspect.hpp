#pragma once
// Helpers to describe tensors the way PyTorch names them; used by the CLI and handy in apps.
#include <statedict/checkpoint.hpp>
#include <statedict/detail/dtypes.hpp>
#include <statedict/detail/sha256.hpp>
#include <statedict/detail/io/file_tensor.hpp>

#include <string>
#include <vector>

namespace statedict {

/// PyTorch's name of a dtype without "torch.": "float32", "bfloat16", "int64", "bool", ...
inline std::string dtype_name(c10::ScalarType t) { return detail::dtype_name(t); }

/// SHA-256 of a tensor's contiguous little-endian bytes (what `statedict inspect --hash` prints).
inline std::string tensor_sha256(const at::Tensor& t) {
  at::Tensor c = detail::readable(t, "tensor");  // a file that shrank: file.changed, not SIGBUS
  if (!c.is_contiguous()) c = c.contiguous();
  if (c.device().type() != c10::kCPU) c = c.cpu();
  detail::Sha256 h;
  h.update(c.data_ptr(), static_cast<std::size_t>(detail::tensor_bytes(c)));
  return h.hex();
}

/// Shape as "[4, 3, 7, 7]".
inline std::string shape_text(at::IntArrayRef sizes) { return detail::shape_str(sizes); }

/// Human-readable byte count: "512 B", "44.6 MB" (powers of 1000, as file managers show).
inline std::string bytes_text(std::uint64_t n) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1000 && u < 4) {
    v /= 1000;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

}  // namespace statedict
