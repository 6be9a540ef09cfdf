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

/// A view a layout transform takes of a tensor (transforms.hpp): a transpose, a part of a split
/// (narrow), one of an unstack (select), a reshape of size-1 dims. No byte is read or copied.
struct ViewOp {
  enum class Kind { transpose, narrow, select, reshape } kind;
  std::int64_t dim = 0, start = 0, len = 0;
  std::vector<std::int64_t> shape = {};  // reshape

  at::Tensor apply(const at::Tensor& t) const {
    switch (kind) {
    case Kind::transpose:
      return t.t();
    case Kind::narrow:
      return t.narrow(dim, start, len);
    case Kind::select:
      return t.select(dim, start);
    case Kind::reshape:
      return t.view(shape);
    }
    return t;
  }
  /// The shape apply() gives a tensor of `in`'s shape.
  std::vector<std::int64_t> shape_of(std::vector<std::int64_t> in) const {
    const auto d = static_cast<std::size_t>(dim);
    switch (kind) {
    case Kind::transpose:
      std::reverse(in.begin(), in.end());
      return in;
    case Kind::narrow:
      in[d] = len;
      return in;
    case Kind::select:
      in.erase(in.begin() + static_cast<std::ptrdiff_t>(d));
      return in;
    case Kind::reshape:
      return shape;
    }
    return in;
  }
};

struct LazyTensor;
/// A tensor made of several (a merge or a stack): each part is placed in turn along `dim`, so a
/// load writes the parts straight into the parameter and holds one part at a time.
struct Joined {
  struct Part {
    at::Tensor tensor;                       // a view of a file, or a placeholder when `lazy` is set
    std::shared_ptr<const LazyTensor> lazy;  // made when needed
    std::string key;                         // for errors
  };
  bool stacked = false;  // torch.stack (each part is one index along dim) or torch.cat
  std::int64_t dim = 0;
  std::vector<Part> parts;
  c10::ScalarType dtype = c10::ScalarType::Float;
  std::vector<std::int64_t> shape;

  /// Where part i goes in the whole.
  at::Tensor place(at::Tensor whole, std::size_t i) const {
    if (stacked) return whole.select(dim, static_cast<std::int64_t>(i));
    std::int64_t at = 0;
    for (std::size_t j = 0; j < i; ++j) at += parts[j].tensor.size(dim);
    return whole.narrow(dim, at, parts[i].tensor.size(dim));
  }
  /// Part i's bytes.
  at::Tensor part(std::size_t i) const;
  /// Writes every part into its place in `out` (a tensor of `shape`; the parts are cast to its dtype).
  void write_into(at::Tensor out) const {
    for (std::size_t i = 0; i < parts.size(); ++i) place(out, i).copy_(part(i));
  }
  at::Tensor make() const {
    at::Tensor out = at::empty(shape, at::TensorOptions().dtype(dtype));
    write_into(out);
    return out;
  }
};

/// How to make a tensor when its bytes are needed: a region of pieces or of a tensor (or a joined
/// tensor), then the views of `ops`, then a cast.
struct LazyTensor {
  std::shared_ptr<const Pieces> pieces = nullptr;  // or
  at::Tensor base = {};
  std::int64_t dim = -1, start = 0, len = 0;
  std::optional<c10::ScalarType> cast = std::nullopt;
  std::vector<ViewOp> ops = {};
  std::shared_ptr<const Joined> joined = nullptr;  // or (instead of pieces and base)

  at::Tensor get() const {
    at::Tensor t = joined   ? joined->make()
                   : pieces ? pieces->slice(dim, start, len)
                            : readable(dim < 0 ? base : base.narrow(dim, start, len), "tensor");
    for (const auto& op : ops) t = op.apply(t);
    return cast ? t.to(*cast) : t;
  }
  /// What get() makes, as a view of its file with no byte read, when nothing is cast or joined and
  /// one piece (or the base) holds it; else an undefined tensor. A load reads such a view straight
  /// into the parameter, as it reads any other view of a file.
  at::Tensor view() const {
    if (cast || joined) return {};
    at::Tensor t = pieces ? pieces->view(dim, start, len) : dim < 0 ? base : base.narrow(dim, start, len);
    if (!t.defined()) return t;
    for (const auto& op : ops) t = op.apply(t);
    return t;
  }
  /// The same tensor narrowed to [start, start + len) along `d` (a tensor-parallel rank's slice).
  LazyTensor narrowed(std::int64_t d, std::int64_t s, std::int64_t n) const {
    LazyTensor l = *this;
    if (ops.empty() && !joined && !cast && dim < 0) {
      l.dim = d;
      l.start = s;
      l.len = n;
    } else {
      l.ops.push_back({ViewOp::Kind::narrow, d, s, n});
    }
    return l;
  }
};

inline at::Tensor Joined::part(std::size_t i) const {
  const Part& p = parts[i];
  return p.lazy ? p.lazy->get() : readable(p.tensor, p.key);
}

/// A tensor with no bytes of its own that has the given shape and dtype (a raw dtype: uint8 with the
/// element-size dimension), standing in for a lazy tensor wherever only its shape and dtype are read.
inline at::Tensor placeholder(Dtype dt, std::vector<std::int64_t> shape) {
  if (native(dt)) return at::empty({}, at::TensorOptions().dtype(dt->type)).expand(shape);
  shape.push_back(static_cast<std::int64_t>(dt->size));
  return at::empty({static_cast<std::int64_t>(dt->size)}, at::TensorOptions().dtype(at::kByte)).expand(shape);
}

}  // namespace statedict::detail
