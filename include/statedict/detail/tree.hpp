#pragma once
// The storage behind statedict::Value: every object a file holds is one Node in an arena, children
// are indices. An arena (rather than shared pointers) makes cycles a pickle can build harmless.
#include <statedict/detail/dtypes.hpp>
#include <statedict/kind.hpp>
#include <statedict/detail/lazy.hpp>

#include <ATen/ATen.h>

#include <cstdint>
#include <new>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace statedict {

namespace detail {
/// The Python type a value of the kind was: "None", "bool", "int", ..., "object".
inline const char* python_type(Kind k) {
  static const char* const names[] = {"None", "bool",  "int", "float", "complex", "str",   "bytes",
                                      "list", "tuple", "set", "dict",  "tensor",  "object"};
  return names[static_cast<int>(k)];
}

inline constexpr std::uint32_t npos = UINT32_MAX;

// unreadable: a tensor-like object statedict cannot represent (a quantized tensor, a numpy array of
// strings, ...); `pending` indexes CheckpointData::reasons, which says why.
enum class Internal : std::uint8_t { value, global, storage, numpy_dtype, numpy_array, unreadable };

/// The parts of a node that only dicts, objects, complex numbers and unusual tensors have, kept
/// apart: the common node (an int, a string, a tuple, a plain tensor) is 96 bytes instead of 160.
struct NodeMore {
  std::vector<std::pair<std::uint32_t, std::uint32_t>> kv;  // dict, object SETITEMs
  std::uint32_t args = npos, state = npos;                  // object
  double imag = 0.0;                                        // complex: the imaginary part
  Dtype raw = nullptr;  // tensor: a dtype this LibTorch lacks; `tensor` then holds its bytes (see raw_view)
  // tensor stored in pieces, assembled when first needed; `tensor` is then a placeholder of its shape and dtype
  std::shared_ptr<const Pieces> pieces;
};

struct Node {
  Kind kind = Kind::none;
  Internal internal = Internal::value;
  bool boolean = false;
  bool big = false;              // integer wider than 64 bits
  std::uint32_t pending = npos;  // tensor: index of its spec until materialized; storage: spec
  // int's value; for a global (Internal::global), its PickleGlobals::callables() entry + 1, or 0 if none
  std::int64_t integer = 0;
  double real = 0.0;                 // floating; complex: the real part
  std::string text;                  // string, bytes, big-int hex, object class / global "module.name"
  std::vector<std::uint32_t> items;  // list, tuple, set, object APPENDs
  at::Tensor tensor;

  // The rarer parts (NodeMore): read through a const node, an absent part reads as empty; written
  // through a non-const one, it is made.
  const std::vector<std::pair<std::uint32_t, std::uint32_t>>& kv() const { return more().kv; }
  std::vector<std::pair<std::uint32_t, std::uint32_t>>& kv() { return more().kv; }
  std::uint32_t args() const { return more().args; }
  std::uint32_t& args() { return more().args; }
  std::uint32_t state() const { return more().state; }
  std::uint32_t& state() { return more().state; }
  double imag() const { return more().imag; }
  double& imag() { return more().imag; }
  Dtype raw() const { return more().raw; }
  Dtype& raw() { return more().raw; }
  const std::shared_ptr<const Pieces>& pieces() const { return more().pieces; }
  std::shared_ptr<const Pieces>& pieces() { return more().pieces; }
  /// Whether any of the rarer parts was ever written (when not, they all read as empty).
  bool has_more() const noexcept { return more_ != nullptr; }

  Node() = default;
  Node(Node&&) noexcept = default;
  Node& operator=(Node&&) noexcept = default;
  Node(const Node& o)
      : kind(o.kind), internal(o.internal), boolean(o.boolean), big(o.big), pending(o.pending), integer(o.integer), real(o.real),
        text(o.text), items(o.items), tensor(o.tensor), more_(o.more_ ? std::make_unique<NodeMore>(*o.more_) : nullptr) {}
  Node& operator=(const Node& o) {
    if (this != &o) *this = Node(o);
    return *this;
  }

private:
  const NodeMore& more() const {
    static const NodeMore none;
    return more_ ? *more_ : none;
  }
  NodeMore& more() {
    if (!more_) more_ = std::make_unique<NodeMore>();
    return *more_;
  }
  std::unique_ptr<NodeMore> more_;
};
static_assert(sizeof(Node) <= 96, "a 100k-tensor file's tree has 900k nodes: keep them small");

/// A tensor node's bytes (assembling a tensor stored in pieces on first use).
inline const at::Tensor& tensor_of(const Node& n) { return n.pieces() ? n.pieces()->whole() : n.tensor; }

/// Node::pending of a node given back to the tree (Tree::release): a free slot, part of nothing.
inline constexpr std::uint32_t freed = npos - 1;

/// The tree's nodes: blocks of 1024 that never move once made (growing adds a block), so a node's
/// reference stays good while the tree grows. Indexing is a shift and a mask. (A std::deque of
/// 96-byte nodes holds 5 to a 512-byte block: a division on every access and a malloc every 5 nodes.)
class NodeArena {
public:
  NodeArena() = default;
  NodeArena(NodeArena&& o) noexcept : blocks_(std::move(o.blocks_)), size_(o.size_) { o.size_ = 0; }
  NodeArena& operator=(NodeArena&& o) noexcept {
    if (this != &o) {
      clear();
      blocks_ = std::move(o.blocks_);
      size_ = o.size_;
      o.size_ = 0;
    }
    return *this;
  }
  NodeArena(const NodeArena&) = delete;
  NodeArena& operator=(const NodeArena&) = delete;
  ~NodeArena() { clear(); }

  std::size_t size() const noexcept { return size_; }
  Node& operator[](std::size_t i) noexcept { return block(i)[i & kMask]; }
  const Node& operator[](std::size_t i) const noexcept { return block(i)[i & kMask]; }
  // Walking every node in order (range-for): a forward iterator over the indices.
  template <class A, class N> struct Iter {
    A* arena;
    std::size_t i;
    N& operator*() const noexcept { return (*arena)[i]; }
    Iter& operator++() noexcept {
      ++i;
      return *this;
    }
    bool operator!=(const Iter& o) const noexcept { return i != o.i; }
  };
  Iter<NodeArena, Node> begin() noexcept { return {this, 0}; }
  Iter<NodeArena, Node> end() noexcept { return {this, size_}; }
  Iter<const NodeArena, const Node> begin() const noexcept { return {this, 0}; }
  Iter<const NodeArena, const Node> end() const noexcept { return {this, size_}; }
  /// A default node at the end.
  void emplace_back() {
    new (slot()) Node();
    ++size_;
  }

private:
  static constexpr std::size_t kShift = 10, kBlock = std::size_t{1} << kShift, kMask = kBlock - 1;
  struct Free {
    void operator()(Node* p) const noexcept { std::allocator<Node>().deallocate(p, kBlock); }
  };
  Node* block(std::size_t i) const noexcept { return blocks_[i >> kShift].get(); }
  void* slot() {  // where node size_ goes (its block made if need be)
    if ((size_ >> kShift) == blocks_.size()) {
      std::unique_ptr<Node, Free> b(std::allocator<Node>().allocate(kBlock));  // owned before the list grows (which may throw)
      blocks_.push_back(std::move(b));
    }
    return &block(size_)[size_ & kMask];
  }
  void clear() noexcept {
    for (std::size_t i = 0; i < size_; ++i) (*this)[i].~Node();
    size_ = 0;
    blocks_.clear();
  }
  std::vector<std::unique_ptr<Node, Free>> blocks_;  // only the first size_ nodes are constructed
  std::size_t size_ = 0;
};

struct Tree {
  NodeArena nodes;
  // Slots of nodes nothing refers to any more (the unpickler gives back the arguments of a tensor
  // rebuild it has consumed): add() fills these first, so a torch.save file of 100k tensors keeps
  // about 2 nodes a tensor instead of 9.
  std::vector<std::uint32_t> free;
  std::uint32_t add(Node n) {
    const std::uint32_t id = fresh();
    nodes[id] = std::move(n);
    return id;
  }
  /// Gives node `id` back: its contents are dropped and its slot is reused by a later add(). The
  /// caller guarantees nothing refers to it.
  void release(std::uint32_t id) {
    Node& n = nodes[id];
    // Destroyed and made anew, not assigned over: a string assigned a short one keeps its heap
    // buffer, which the node's next tenant (a dict key) would then carry (32 bytes each of 100k keys).
    n.~Node();
    new (&n) Node();
    n.pending = freed;
    free.push_back(id);
  }
  /// A new default node, made where it will stay (a free slot or the end), for the caller to fill
  /// through nodes[id]: no node built aside, moved in and destroyed.
  std::uint32_t fresh() {
    if (!free.empty()) {
      const std::uint32_t id = free.back();
      free.pop_back();
      nodes[id].pending = npos;  // release() left it default but for this mark
      return id;
    }
    nodes.emplace_back();
    return static_cast<std::uint32_t>(nodes.size() - 1);
  }
  std::uint32_t add(Kind k) {
    const std::uint32_t id = fresh();
    nodes[id].kind = k;
    return id;
  }
};

}  // namespace detail
}  // namespace statedict
