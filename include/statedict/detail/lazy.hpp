#pragma once
// Tensors made only when their bytes are needed: a tensor stored in pieces (the chunks of a DCP
// tensor) is assembled on first use, and a slice of it touches only the pieces it overlaps. Lists
// statedict makes for itself (matching, convert, inspect) carry a LazyTensor and a placeholder of
// the right shape and dtype, so that a rank's load or a convert holds about one tensor at a time.
#include <statedict/detail/dtypes.hpp>
#include <statedict/detail/io/file_tensor.hpp>

#include <ATen/ATen.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace statedict::detail {

/// Runs a function once, as std::call_once, except that one that throws (a file that changed) may
/// run again at the next call, portably: a mutex and a flag, not pthread_once.
class Once {
public:
  template <class F> void operator()(F&& f) {
    if (done_.load(std::memory_order_acquire)) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (done_.load(std::memory_order_relaxed)) return;
    f();
    done_.store(true, std::memory_order_release);
  }
  bool done() const { return done_.load(std::memory_order_acquire); }

private:
  std::mutex mu_;
  std::atomic<bool> done_{false};
};

/// A tensor of `size` stored as disjoint pieces that together cover it (checked by the reader).
struct Pieces {
  struct Piece {
    std::vector<std::int64_t> offsets, sizes;
    at::Tensor data;  // the piece as read (a view of its file, read with readable()); raw dtypes as bytes
  };
  std::string key;  // the tensor's name, for errors
  Dtype dtype = nullptr;
  std::vector<std::int64_t> size;
  std::vector<Piece> parts;

  /// The region [start, start+len) along `dim` (dim < 0: the whole tensor): a view of one piece
  /// when one piece holds the region, else a new tensor filled from the pieces that overlap it.
  at::Tensor slice(std::int64_t dim, std::int64_t start, std::int64_t len) const {
    if (at::Tensor v = view(dim, start, len); v.defined()) return readable(v, key);
    const std::size_t n = size.size();
    const auto [lo, hi] = bounds(dim, start, len);
    std::vector<std::int64_t> shape(n);
    for (std::size_t d = 0; d < n; ++d) shape[d] = hi[d] - lo[d];
    at::Tensor out = empty_of(dtype, shape);
    for (const auto& p : parts) {
      at::Tensor dst = out, src = p.data;
      bool overlaps = true;
      for (std::size_t d = 0; d < n && overlaps; ++d) {
        const std::int64_t a = std::max(lo[d], p.offsets[d]), b = std::min(hi[d], p.offsets[d] + p.sizes[d]);
        overlaps = a < b;
        if (!overlaps) break;
        dst = dst.narrow(static_cast<std::int64_t>(d), a - lo[d], b - a);
        src = src.narrow(static_cast<std::int64_t>(d), a - p.offsets[d], b - a);
      }
      if (overlaps) dst.copy_(readable(src, key));
    }
    return out;
  }

  /// The region as a view of the one piece that holds it, its bytes not read (a view of its file);
  /// an undefined tensor when the region spans several pieces.
  at::Tensor view(std::int64_t dim, std::int64_t start, std::int64_t len) const {
    const std::size_t n = size.size();
    const auto [lo, hi] = bounds(dim, start, len);
    for (const auto& p : parts) {
      bool holds = true;
      for (std::size_t d = 0; d < n && holds; ++d) holds = p.offsets[d] <= lo[d] && hi[d] <= p.offsets[d] + p.sizes[d];
      if (!holds) continue;
      at::Tensor v = p.data;
      for (std::size_t d = 0; d < n; ++d) v = v.narrow(static_cast<std::int64_t>(d), lo[d] - p.offsets[d], hi[d] - lo[d]);
      return v;
    }
    return {};
  }

  /// The region's first index and end along each dim.
  std::pair<std::vector<std::int64_t>, std::vector<std::int64_t>> bounds(std::int64_t dim, std::int64_t start, std::int64_t len) const {
    std::vector<std::int64_t> lo(size.size(), 0), hi = size;
    if (dim >= 0) {
      lo[static_cast<std::size_t>(dim)] = start;
      hi[static_cast<std::size_t>(dim)] = start + len;
    }
    return {std::move(lo), std::move(hi)};
  }

  /// The whole tensor, assembled once and kept (what Value::tensor() returns).
  const at::Tensor& whole() const {
    once_([this] { whole_ = slice(-1, 0, 0); });
    return whole_;
  }
  /// Whether whole() has been asked for: the caller may hold that tensor, and may have changed it.
  bool assembled() const { return once_.done(); }

private:
  mutable Once once_;
  mutable at::Tensor whole_;
};

/// How to make a tensor when its bytes are needed: a region of pieces or of a tensor, then a cast.
struct LazyTensor {
  std::shared_ptr<const Pieces> pieces = nullptr;  // or
  at::Tensor base = {};
  std::int64_t dim = -1, start = 0, len = 0;
  std::optional<c10::ScalarType> cast = std::nullopt;

  at::Tensor get() const {
    at::Tensor t = pieces ? pieces->slice(dim, start, len) : readable(dim < 0 ? base : base.narrow(dim, start, len), "tensor");
    return cast ? t.to(*cast) : t;
  }
  /// What get() makes, as a view of its file with no byte read, when nothing is cast and one piece
  /// (or the base) holds it; else an undefined tensor. A load reads such a view straight into the
  /// parameter, as it reads any other view of a file.
  at::Tensor view() const {
    if (cast) return {};
    return pieces ? pieces->view(dim, start, len) : dim < 0 ? base : base.narrow(dim, start, len);
  }
};

/// A tensor with no bytes of its own that has the given shape and dtype (a raw dtype: uint8 with the
/// element-size dimension), standing in for a lazy tensor wherever only its shape and dtype are read.
inline at::Tensor placeholder(Dtype dt, std::vector<std::int64_t> shape) {
  if (native(dt)) return at::empty({}, at::TensorOptions().dtype(dt->type)).expand(shape);
  shape.push_back(static_cast<std::int64_t>(dt->size));
  return at::empty({static_cast<std::int64_t>(dt->size)}, at::TensorOptions().dtype(at::kByte)).expand(shape);
}

}  // namespace statedict::detail
