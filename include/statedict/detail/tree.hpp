#pragma once
// The storage behind statedict::Value: every object a file holds is one Node in an arena, children
// are indices. An arena (rather than shared pointers) makes cycles a pickle can build harmless.
#include <statedict/detail/dtypes.hpp>
#include <statedict/detail/lazy.hpp>

#include <ATen/ATen.h>

#include <cstdint>
#include <deque>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace statedict {

/// What a node of a checkpoint's tree holds.
enum class Kind {
  none,
  boolean,
  integer,  // int64; larger Python ints keep their hex digits in as_string()
  floating,
  complex,
  string,
  bytes,
  list,
  tuple,
  set,
  dict,  // insertion-ordered; keys are any value (strings and ints in practice)
  tensor,
  object,  // an inert instance of a class statedict does not interpret (argparse.Namespace, ...)
};

/// The kind's name: "none", "boolean", ..., "object" (the enumerator's own spelling).
inline const char* kind_name(Kind k) {
  static const char* const names[] = {"none", "boolean", "integer", "floating", "complex", "string", "bytes",
                                      "list", "tuple",   "set",     "dict",     "tensor",  "object"};
  const auto i = static_cast<std::size_t>(k);
  return i < sizeof(names) / sizeof(names[0]) ? names[i] : "unknown";
}
inline std::ostream& operator<<(std::ostream& os, Kind k) { return os << kind_name(k); }

namespace detail {

inline constexpr std::uint32_t npos = UINT32_MAX;

// unreadable: a tensor-like object statedict cannot represent (a quantized tensor, a numpy array of
// strings, ...); `pending` indexes CheckpointData::reasons, which says why.
enum class Internal : std::uint8_t { value, global, storage, numpy_dtype, numpy_array, unreadable };

struct Node {
  Kind kind = Kind::none;
  Internal internal = Internal::value;
  bool b = false;
  bool big = false;  // integer wider than 64 bits
  std::int64_t i = 0;
  double f = 0.0, f_imag = 0.0;
  std::string s;                                            // string, bytes, big-int hex, object class / global "module.name"
  std::vector<std::uint32_t> items;                         // list, tuple, set, object APPENDs
  std::vector<std::pair<std::uint32_t, std::uint32_t>> kv;  // dict, object SETITEMs
  std::uint32_t args = npos, state = npos;                  // object
  std::uint32_t pending = npos;                             // tensor: index of its spec until materialized; storage: spec
  at::Tensor tensor;
  Dtype raw = nullptr;  // tensor: a dtype this LibTorch lacks; `tensor` then holds its bytes (see raw_view)
  // tensor stored in pieces, assembled when first needed; `tensor` is then a placeholder of its shape and dtype
  std::shared_ptr<const Pieces> pieces;
};

/// A tensor node's bytes (assembling a tensor stored in pieces on first use).
inline const at::Tensor& tensor_of(const Node& n) { return n.pieces ? n.pieces->whole() : n.tensor; }

struct Tree {
  // A deque: growing never moves the nodes already made (a vector of 1.7M nodes, the tree of 100k
  // tensors, spent a third of the read reallocating and briefly held three copies).
  std::deque<Node> nodes;
  std::uint32_t add(Node n) {
    nodes.push_back(std::move(n));
    return static_cast<std::uint32_t>(nodes.size() - 1);
  }
  std::uint32_t add(Kind k) {
    Node n;
    n.kind = k;
    return add(std::move(n));
  }
};

}  // namespace detail
}  // namespace statedict
