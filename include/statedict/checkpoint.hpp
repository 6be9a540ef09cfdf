#pragma once
// statedict::Checkpoint: what a file holds, as a tree of values, with dotted-path navigation and a
// flat, ordered view of its tensors.
#include <statedict/detail/tree.hpp>
#include <statedict/kind.hpp>
#include <statedict/error.hpp>

#include <ATen/ATen.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace statedict {

/// The container a checkpoint came in.
enum class Format {
  torch_zip,     ///< torch.save, PyTorch >= 1.6
  torch_legacy,  ///< torch.save before 1.6 or with _use_new_zipfile_serialization=False
  torchscript,   ///< torch.jit.save archive (parameters and buffers only)
  safetensors,
  sharded_safetensors,  ///< *.safetensors.index.json
  sharded_torch,        ///< pytorch_model.bin.index.json
  dcp,                  ///< a torch.distributed.checkpoint folder (.metadata + *.distcp)
  pt2,                  ///< a torch.export.save archive (.pt2): the exported program's state dict
  aoti_package,         ///< an AOTInductor package (.pt2) whose constants are files beside the .so
  pickle,               ///< a plain pickle.dump of numpy arrays (a detectron2 model-zoo .pkl), no torch.save container
};

/// Short stable name of a format: "torch_zip", "torch_legacy", "torchscript", "safetensors",
/// "sharded_safetensors", "sharded_torch", "dcp", "pt2", "aoti_package", "pickle".
inline const char* format_name(Format f) {
  switch (f) {
  case Format::torch_zip:
    return "torch_zip";
  case Format::torch_legacy:
    return "torch_legacy";
  case Format::torchscript:
    return "torchscript";
  case Format::safetensors:
    return "safetensors";
  case Format::sharded_safetensors:
    return "sharded_safetensors";
  case Format::sharded_torch:
    return "sharded_torch";
  case Format::dcp:
    return "dcp";
  case Format::pt2:
    return "pt2";
  case Format::aoti_package:
    return "aoti_package";
  case Format::pickle:
    return "pickle";
  }
  return "unknown";
}

/// A tensor with its dotted key.
struct NamedTensor {
  std::string key;
  at::Tensor tensor;
  /// PyTorch's name of a dtype the LibTorch statedict was built with lacks (float8_* or uint16-64
  /// before LibTorch 2.3), else nullptr. `tensor` then holds the raw bytes: uint8, with one more
  /// trailing dimension of the element size. Such tensors are listed and converted; loading one fails.
  const char* raw_dtype = nullptr;
  /// Set only in lists statedict makes for itself (detail::lazy_tensors): `tensor` is then a
  /// placeholder with the shape and dtype, and lazy->get() makes the bytes. Lists from tensors() never have it.
  std::shared_ptr<const detail::LazyTensor> lazy = nullptr;

  /// PyTorch's dtype name ("float32", "float8_e4m3fn", ...).
  std::string dtype() const;
  /// The tensor's shape (without the byte dimension of a raw tensor).
  std::vector<std::int64_t> shape() const {
    auto v = tensor.sizes().vec();
    if (raw_dtype != nullptr && !v.empty()) v.pop_back();
    return v;
  }
};

/// A value that looks like a tensor but cannot be one here (a quantized tensor, a numpy array of
/// strings or objects, ...): listed so that nothing vanishes without a word.
struct UnreadableValue {
  std::string key;
  std::string type;    ///< the Python class, e.g. "numpy.ndarray"
  std::string reason;  ///< why it is not a tensor
};

inline std::string NamedTensor::dtype() const {
  return raw_dtype != nullptr ? std::string(raw_dtype) : detail::dtype_name(tensor.scalar_type());
}

class Value;
class Checkpoint;

namespace detail {
/// The tensors of a pread-only file (statedict::read's default), described rather than made: an
/// at::Tensor and the storage view under it cost two allocations and ~350 bytes, a description 32
/// bytes here and its dimensions. A described node has no `tensor`; its Node::pending is its index
/// in `tensors`. ReadTensors makes the tensors when they are asked for.
struct FileTensors {
  struct Stored {  // a storage's bytes in the file
    std::uint64_t offset = 0, nbytes = 0;
  };
  struct Described {
    std::uint32_t storage = 0;  // index into storages
    std::uint32_t dim = 0;
    std::uint64_t dims_at = 0;  // its sizes, then its strides, in dims
    Dtype dtype = nullptr;
    std::int64_t offset = 0;  // in elements
  };
  std::unique_ptr<FileViews> views;  // the file; storage views made of it hold it
  std::vector<Stored> storages;
  std::vector<Described> tensors;
  std::vector<std::int64_t> dims;

  std::uint32_t add_storage(std::uint64_t offset, std::uint64_t nbytes) {
    storages.push_back({offset, nbytes});
    return static_cast<std::uint32_t>(storages.size() - 1);
  }
  std::uint32_t describe(std::uint32_t storage, Dtype dtype, std::int64_t offset, at::IntArrayRef sizes, at::IntArrayRef strides) {
    tensors.push_back({storage, static_cast<std::uint32_t>(sizes.size()), dims.size(), dtype, offset});
    dims.insert(dims.end(), sizes.begin(), sizes.end());
    dims.insert(dims.end(), strides.begin(), strides.end());
    return static_cast<std::uint32_t>(tensors.size() - 1);
  }
  MappedFile& file() const { return *(*views)->get(); }
  at::IntArrayRef sizes(const Described& d) const { return {dims.data() + d.dims_at, d.dim}; }
  at::IntArrayRef strides(const Described& d) const { return {dims.data() + d.dims_at + d.dim, d.dim}; }
  /// The tensor `d` over `s` (its storage's bytes, wherever they are).
  at::Tensor on(const at::Storage& s, const Described& d) const { return tensor_on(s, d.dtype, d.offset, sizes(d), strides(d)); }
  /// Storage `i` as a view of the file's mapping, as a reader that makes tensors makes it.
  at::Storage view(std::uint32_t i) const {
    const Stored& s = storages[i];
    return c10::Storage(c10::Storage::use_byte_size_t(), static_cast<std::size_t>(s.nbytes), views->view(file().mutable_data() + s.offset),
                        nullptr, false);
  }
  /// Storage `i` read into memory with pread: readable() of its view (a storage read alone, by get()
  /// or as a large one; tensors() packs the small ones without making views).
  at::Storage read(std::uint32_t i, const std::string& key) const { return readable(view(i), key); }
};

/// The tensors of a pread-only file that the caller asked for, each storage read with pread on
/// first use and kept: memory holds what was used, tensors that share a storage in the file (tied
/// weights, views) share one in memory, and the file's pages are never touched through the mapping.
/// A tensor is either described (FileTensors: torch.save, legacy and safetensors files) or a view
/// of the file's mapping (a sharded checkpoint's merged tree, DCP). One slot a node (a deque
/// indexed by node id, grown on demand to the largest id asked for, 8 bytes a node: its elements
/// never move) and one storage for each of the file's storages, each set once under the lock; the
/// reading runs outside it. A storage read by itself is read once, whoever asks (the others wait
/// for it: a large storage read by eight threads at once is not eight copies). A small storage that
/// tensors() packs with others may be read a second time by a get() or another tensors() running at
/// the same moment; the first copy published wins, so the tensors of a storage still share one.
class ReadTensors {
public:
  FileTensors files;  // set by the reader, then never changed

  /// Whether node `n` (a tensor) is described in `files` rather than made.
  bool described(const Node& n) const { return n.kind == Kind::tensor && n.pending != npos; }
  /// A tensor node's number of dimensions, shape (without a raw tensor's byte dimension) and dtype
  /// name, without making or reading it (a tensor in pieces has a placeholder of its shape and dtype).
  std::int64_t dim(const Node& n) const {
    return described(n) ? files.tensors[n.pending].dim : n.tensor.dim() - (n.raw() != nullptr ? 1 : 0);
  }
  std::vector<std::int64_t> shape(const Node& n) const {
    if (described(n)) return files.sizes(files.tensors[n.pending]).vec();
    std::vector<std::int64_t> v = n.tensor.sizes().vec();
    if (n.raw() != nullptr && !v.empty()) v.pop_back();
    return v;
  }
  std::string dtype_text(const Node& n) const {
    if (n.raw() != nullptr) return n.raw()->torch;
    return dtype_name(described(n) ? files.tensors[n.pending].dtype->type : n.tensor.scalar_type());
  }
  /// Node `n`'s tensor as the file holds it, not read: a view of the file's mapping for a described
  /// tensor (its storage's view made once in `views`, which the caller keeps for one list, so that
  /// tensors of one storage share it there), else the node's tensor.
  at::Tensor as_read(const Node& n, std::vector<at::Storage>& views) const {
    if (!described(n)) return tensor_of(n);
    const FileTensors::Described& d = files.tensors[n.pending];
    if (views.size() <= d.storage) views.resize(std::size_t{d.storage} + 1);  // as far as this list reaches
    at::Storage& s = views[d.storage];
    if (!s) s = files.view(d.storage);
    return files.on(s, d);
  }

  /// Node `id`'s tensor, fit to read: one on a pread-only file is read now (once).
  const at::Tensor& get(std::uint32_t id, const Node& n, const std::string& key = "tensor") const {
    const std::optional<Where> w = where(n);
    if (!w) return tensor_of(n);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (const at::Tensor* done = held(id)) return *done;
    }
    const at::Storage bytes = read_alone(w->key, n, key);
    std::lock_guard<std::mutex> lock(mu_);
    return publish(id, bytes, n);
  }

  /// One tensor wanted by tensors(): out[at] is node `node`'s entry.
  struct Want {
    std::size_t at;
    std::uint32_t node;
  };
  /// get() for every entry of a whole list at once, as tensors() asks (100k small tensors are
  /// common): one lock to look up and one to publish, each file checked for changes once, and the
  /// storages no larger than `small` that lie near each other in the file read with one pread of
  /// at most `span` bytes and packed into one block of memory that they share (AlignedBytes), not
  /// one allocation each. Sets out[w.at].tensor. Works through `wants` in batches of `batch`, so
  /// that its bookkeeping (~80 bytes a tensor) is held for one batch, not for 100k tensors at once.
  void get_many(const Tree& tree, const std::vector<Want>& wants, std::vector<NamedTensor>& out) const {
    for (std::size_t from = 0; from < wants.size(); from += batch)
      get_batch(tree, wants.data() + from, wants.data() + std::min(wants.size(), from + batch), out);
  }

  /// What the caller holds of node `id`'s bytes (and may have changed): the tensor get() read for
  /// it, or a view of its storage that get() read for another node (a tied weight); else nullopt.
  std::optional<at::Tensor> find(std::uint32_t id, const Node& n) const {
    if (!any_.load(std::memory_order_acquire) || n.pieces()) return std::nullopt;
    if (!described(n) && !n.tensor.defined()) return std::nullopt;
    std::lock_guard<std::mutex> lock(mu_);
    if (const at::Tensor* done = held(id)) return *done;
    if (const at::Storage* s = stored(key_of(n))) return shaped(*s, n);
    return std::nullopt;
  }

private:
  static constexpr std::size_t small = 64 << 10;  // storages read together with their neighbours
  static constexpr std::uint64_t gap = 4 << 10;   // bytes between two such storages read and dropped
  static constexpr std::uint64_t span = 1 << 20;  // one pread's most
  static constexpr std::size_t batch = 8192;      // tensors get_many reads at a time
  static std::size_t round64(std::size_t n) { return (n + 63) / 64 * 64; }

  void get_batch(const Tree& tree, const Want* first, const Want* last, std::vector<NamedTensor>& out) const {
    struct Job : Where {
      const Node* n;
      std::size_t at;
      std::uint32_t node;
    };
    std::vector<Job> jobs;
    jobs.reserve(static_cast<std::size_t>(last - first));
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const Want* it = first; it != last; ++it) {
        const Want& w = *it;
        const Node& n = tree.nodes[w.node];
        const std::optional<Where> wh = where(n);
        if (!wh) {
          out[w.at].tensor = tensor_of(n);
        } else if (const at::Tensor* done = held(w.node)) {
          out[w.at].tensor = *done;
        } else if (const at::Storage* s = stored(wh->key)) {
          out[w.at].tensor = publish(w.node, *s, n);
        } else {
          jobs.push_back({*wh, &n, w.at, w.node});
        }
      }
    }
    if (jobs.empty()) return;
    // Each storage once, by file and offset.
    std::vector<const Job*> order;
    order.reserve(jobs.size());
    for (const Job& j : jobs) order.push_back(&j);
    const auto before = [](const Job* x, const Job* y) {
      if (x->f != y->f) return std::less<const MappedFile*>()(x->f, y->f);
      return x->offset != y->offset ? x->offset < y->offset : x->key < y->key;
    };
    if (!std::is_sorted(order.begin(), order.end(), before))
      std::sort(order.begin(), order.end(), before);  // usually in file order already
    order.erase(std::unique(order.begin(), order.end(), [](const Job* x, const Job* y) { return x->key == y->key; }), order.end());
    auto packable = [](const Job& j) { return j.nbytes > 0 && j.nbytes <= small && !j.f->protected_copy(); };
    std::vector<std::pair<Key, at::Storage>> read;
    read.reserve(order.size());
    const MappedFile* checked = nullptr;  // order is by file: the last file checked is the only one to remember
    std::unique_ptr<std::uint8_t[]> buf;  // not a vector: the pread fills it, zeroing it first would be wasted
    std::size_t buf_size = 0;
    for (std::size_t i = 0; i < order.size();) {
      const Job& head = *order[i];
      const std::string& key = out[head.at].key;
      if (!packable(head)) {  // a large (or empty) storage, read alone into its own memory (which checks the file)
        read.emplace_back(head.key, read_alone(head.key, *head.n, key));
        ++i;
        continue;
      }
      std::uint64_t end = head.offset + head.nbytes;
      std::size_t packed = round64(head.nbytes);
      std::size_t k = i + 1;
      for (; k < order.size() && order[k]->f == head.f && packable(*order[k]) && order[k]->offset <= end + gap; ++k) {
        const std::uint64_t e = order[k]->offset + order[k]->nbytes;
        if (e - head.offset > span) break;
        end = std::max(end, e);
        packed += round64(order[k]->nbytes);
      }
      if (checked != head.f) {
        check_unchanged(*head.f, key);
        checked = head.f;
      }
      const auto want = static_cast<std::size_t>(end - head.offset);
      if (want > buf_size) {
        buf.reset(new std::uint8_t[want]);
        buf_size = want;
      }
      read_or_throw(*head.f, buf.get(), want, head.offset, key);
      const SharedHold<AlignedBytes> block(packed);  // each storage made below holds it too
      std::size_t at = 0;
      for (; i < k; ++i) {
        const Job& j = *order[i];
        std::memcpy(block->bytes + at, buf.get() + (j.offset - head.offset), j.nbytes);
        read.emplace_back(j.key, c10::Storage(c10::Storage::use_byte_size_t(), j.nbytes, block.view(block->bytes + at), nullptr, false));
        at += round64(j.nbytes);
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& r : read) store(r.first, std::move(r.second));  // another call's may be there first: it wins
    for (const Job& j : jobs) out[j.at].tensor = publish(j.node, *stored(j.key), *j.n);
  }
  // A storage's key: a described one's index * 2 + 1; a view's, the address of its StorageImpl (even).
  using Key = std::uintptr_t;
  Key key_of(const Node& n) const {
    if (described(n)) return Key{files.tensors[n.pending].storage} * 2 + 1;
    return reinterpret_cast<Key>(n.tensor.storage().unsafeGetStorageImpl());
  }
  /// Where a tensor on a pread-only file has its storage's bytes.
  struct Where {
    const MappedFile* f;
    Key key;
    std::uint64_t offset;  // of the storage's first byte in the file
    std::size_t nbytes;
  };
  std::optional<Where> where(const Node& n) const {
    if (described(n)) {
      const FileTensors::Stored& s = files.storages[files.tensors[n.pending].storage];
      return Where{&files.file(), key_of(n), s.offset, static_cast<std::size_t>(s.nbytes)};
    }
    const at::Tensor& t = tensor_of(n);
    const MappedFile* f = n.pieces() ? nullptr : mapped_file_of(t);
    if (f == nullptr || !f->pread_only()) return std::nullopt;
    const auto* first = static_cast<const std::uint8_t*>(t.storage().data_ptr().get());
    return Where{f, key_of(n), static_cast<std::uint64_t>(first - f->data()), t.storage().nbytes()};
  }
  /// Node `n`'s tensor over `s`, its storage's bytes in memory.
  at::Tensor shaped(const at::Storage& s, const Node& n) const {
    if (described(n)) return files.on(s, files.tensors[n.pending]);
    const at::Tensor& like = n.tensor;
    return tensor_over(s, like.scalar_type(), like.storage_offset(), like.sizes(), like.strides());
  }
  /// The storage `key` (node n's) read into memory, once: the first caller reads it (outside the
  /// lock) while later ones wait on its Once; if the read throws, the next waiter tries again.
  at::Storage read_alone(Key key, const Node& n, const std::string& what) const {
    std::shared_ptr<Once> once;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (const at::Storage* s = stored(key)) return *s;
      auto& reading = reading_[key];
      if (!reading) reading = std::make_shared<Once>();
      once = reading;
    }
    (*once)([&] {
      at::Storage bytes = described(n) ? files.read(files.tensors[n.pending].storage, what) : readable(n.tensor.storage(), what);
      std::lock_guard<std::mutex> lock(mu_);
      store(key, std::move(bytes));
      reading_.erase(key);
    });
    std::lock_guard<std::mutex> lock(mu_);
    return *stored(key);
  }
  // All with mu_ held.
  const at::Storage* stored(Key key) const {
    if (key & 1) {
      const std::size_t i = key / 2;
      return i < by_index_.size() && by_index_[i] ? &by_index_[i] : nullptr;
    }
    const auto it = by_impl_.find(key);
    return it == by_impl_.end() ? nullptr : &it->second;
  }
  void store(Key key, at::Storage s) const {  // the first stored stays
    if (key & 1) {
      if (by_index_.empty()) by_index_.resize(files.storages.size());
      at::Storage& slot = by_index_[key / 2];
      if (!slot) slot = std::move(s);
    } else {
      by_impl_.try_emplace(key, std::move(s));
    }
  }
  const at::Tensor* held(std::uint32_t id) const { return id < slots_.size() && slots_[id].defined() ? &slots_[id] : nullptr; }
  const at::Tensor& publish(std::uint32_t id, const at::Storage& s, const Node& n) const {
    if (id >= slots_.size()) slots_.resize(std::size_t{id} + 1);  // a deque grown at its end keeps its elements in place
    at::Tensor& slot = slots_[id];
    if (!slot.defined()) slot = shaped(s, n);
    any_.store(true, std::memory_order_release);
    return slot;
  }
  mutable std::mutex mu_;
  mutable std::deque<at::Tensor> slots_;
  mutable std::vector<at::Storage> by_index_;                       // described storages read, by index
  mutable std::unordered_map<Key, at::Storage> by_impl_;            // views' storages read
  mutable std::unordered_map<Key, std::shared_ptr<Once>> reading_;  // storages being read alone
  mutable std::atomic<bool> any_{false};
};

struct CheckpointData {
  Tree tree;
  std::uint32_t root = npos;
  Format format = Format::torch_zip;
  std::string path;
  std::string module_class;  // set when the file is a whole pickled nn.Module
  std::map<std::string, std::string> metadata;
  std::vector<std::string> notes;    // Checkpoint::notes()
  std::vector<std::string> reasons;  // Internal::unreadable nodes point here
  std::size_t max_depth = 1000;
  ReadTensors handed;  // tensors handed to the caller, read on first use
};
Checkpoint make_checkpoint(std::shared_ptr<const CheckpointData> data);
std::vector<NamedTensor> lazy_tensors(const Value& v);
}  // namespace detail

/// A read-only handle to one value in a checkpoint. Cheap to copy; keeps the checkpoint alive.
class Value {
public:
  Kind kind() const { return n().kind; }
  bool is_none() const { return kind() == Kind::none; }
  bool is_dict() const { return kind() == Kind::dict; }
  bool is_tensor() const { return kind() == Kind::tensor; }
  bool is_sequence() const { return kind() == Kind::list || kind() == Kind::tuple || kind() == Kind::set; }

  /// Scalars: a Python bool/int/float, or a one-element tensor with no dimensions, which is what a
  /// numpy scalar (np.float64(0.5)) and torch 2.x's optimizer `step` (tensor(3.)) are read as.
  bool as_bool() const {
    if (const at::Tensor* t = scalar_tensor()) {
      if (t->scalar_type() != at::kBool) fail("value.type", "expected a bool, found a " + named().dtype() + " scalar tensor");
      return t->item<bool>();
    }
    expect(Kind::boolean, "a bool");
    return n().boolean;
  }
  /// The integer; throws for ints wider than 64 bits (see as_string() for their hex digits). A
  /// floating-point scalar tensor holding a whole number (an optimizer's step) is accepted.
  std::int64_t as_int() const {
    if (const at::Tensor* t = scalar_tensor()) {
      if (c10::isIntegralType(t->scalar_type(), /*includeBool=*/true)) return t->item<std::int64_t>();
      const double d = as_double();
      // The range check comes first: converting a double outside int64's range is undefined.
      if (!(d >= -9.2e18 && d <= 9.2e18) || d != static_cast<double>(static_cast<std::int64_t>(d)))
        fail("value.type", "expected an int, found the " + named().dtype() + " scalar " + std::to_string(d));
      return static_cast<std::int64_t>(d);
    }
    expect(Kind::integer, "an int");
    if (n().big) fail("value.type", "integer wider than 64 bits: " + n().text);
    return n().integer;
  }
  double as_double() const {
    if (const at::Tensor* t = scalar_tensor()) {
      if (t->is_complex()) fail("value.type", "expected a float, found a complex scalar tensor");
      return t->to(at::kDouble).item<double>();
    }
    if (kind() == Kind::integer) return static_cast<double>(as_int());
    if (kind() == Kind::boolean) return n().boolean ? 1.0 : 0.0;
    expect(Kind::floating, "a float");
    return n().real;
  }
  /// Whether as_double() works: an int, float or bool, or a real scalar tensor.
  bool is_number() const {
    if (const at::Tensor* t = scalar_tensor()) return !t->is_complex();
    return kind() == Kind::integer || kind() == Kind::floating || kind() == Kind::boolean;
  }
  /// Text of a string, bytes of a bytes value, hex of a big int, class name of an object.
  const std::string& as_string() const {
    if (kind() != Kind::string && kind() != Kind::bytes && kind() != Kind::object && !(kind() == Kind::integer && n().big))
      fail("value.type", "expected a string, found " + type_name());
    return n().text;
  }
  /// The tensor. Throws Error "format.unsupported_dtype" for a dtype this LibTorch lacks (see raw_dtype()).
  const at::Tensor& tensor() const {
    expect(Kind::tensor, "a tensor");
    if (n().raw() != nullptr)
      fail("format.unsupported_dtype",
           std::string("dtype ") + n().raw()->torch + " is not available in LibTorch " + TORCH_VERSION + "; raw_tensor() holds its bytes");
    return tensor_ref();
  }
  /// For a tensor whose dtype this LibTorch lacks: PyTorch's name of it; nullptr otherwise.
  const char* raw_dtype() const {
    expect(Kind::tensor, "a tensor");
    return n().raw() != nullptr ? n().raw()->torch : nullptr;
  }
  /// The tensor, or for a raw_dtype() its bytes (uint8, one more trailing dimension of the element size).
  const at::Tensor& raw_tensor() const {
    expect(Kind::tensor, "a tensor");
    return tensor_ref();
  }
  /// A tensor value with its key, as tensors() lists it (raw_dtype set for dtypes this LibTorch lacks).
  NamedTensor named(std::string key = {}) const {
    expect(Kind::tensor, "a tensor");
    return {std::move(key), tensor_ref(), n().raw() != nullptr ? n().raw()->torch : nullptr};
  }

  /// Number of elements of a list, tuple, set or dict.
  std::size_t size() const {
    if (is_dict()) return n().kv().size();
    if (is_sequence()) return n().items.size();
    fail("value.type", "expected a container, found " + type_name());
  }
  /// i-th element of a list, tuple or set.
  Value operator[](std::size_t i) const {
    if (!is_sequence()) fail("value.type", "expected a list or tuple, found " + type_name());
    if (i >= n().items.size())
      fail("value.index", "index " + std::to_string(i) + " out of range (size " + std::to_string(n().items.size()) + ")");
    return child(n().items[i]);
  }
  /// The (key, value) pairs of a dict, in file order.
  std::vector<std::pair<Value, Value>> items() const {
    if (!is_dict()) fail("value.type", "expected a dict, found " + type_name());
    std::vector<std::pair<Value, Value>> r;
    for (const auto& kv : n().kv()) r.emplace_back(child(kv.first), child(kv.second));
    return r;
  }
  /// Keys of a dict as text, in file order, each unique: strings as they are, ints in decimal,
  /// floats, bools and None as Python's repr, a class or function (old Lightning checkpoints key
  /// `callbacks` by the callback's class) by its qualified name "module.QualName", any other key (a
  /// tensor or object, as old optimizer state has) as "<type#i>" with i its position in the dict. A
  /// key whose text another key already spells gets "'" appended until it is unique.
  std::vector<std::string> keys() const {
    if (!is_dict()) fail("value.type", "expected a dict, found " + type_name());
    return key_texts(n().kv());
  }
  /// The dict entry whose key's text (as keys() gives it) equals `key`.
  std::optional<Value> find(std::string_view key) const {
    if (!is_dict()) return std::nullopt;
    const auto texts = key_texts(n().kv());
    for (std::size_t i = 0; i < texts.size(); ++i)
      if (texts[i] == key) return child(n().kv()[i].second);
    return std::nullopt;
  }
  /// Navigates by dotted path: "model", "model.fc.weight" (the longest matching key wins at each
  /// level, so keys that contain dots are found), "optimizer.param_groups.0.lr".
  Value at(std::string_view path) const;

  /// Objects: the Python class ("argparse.Namespace"), the constructor arguments, the state.
  const std::string& class_name() const {
    expect(Kind::object, "an object");
    return n().text;
  }
  std::optional<Value> object_state() const {
    expect(Kind::object, "an object");
    if (n().state() == detail::npos) return std::nullopt;
    return child(n().state());
  }
  std::optional<Value> object_args() const {
    expect(Kind::object, "an object");
    if (n().args() == detail::npos) return std::nullopt;
    return child(n().args());
  }

  /// The values one level down, each with the key tensors() gives it below this one, in the order
  /// tensors() walks them: a dict's entries under keys() texts, a list's, tuple's or set's items
  /// under their indices; for an object, what its pickled state holds (a dict state's entries by
  /// key; a state that is not a container under "", since tensors() lists it at the object's own
  /// path), then its dict items and list items. Empty for any other value, and for an object read
  /// as unreadable().
  std::vector<std::pair<std::string, Value>> children() const {
    std::vector<std::pair<std::string, Value>> out;
    std::vector<std::uint32_t> inlined;  // objects whose state is walked in place: a cycle stops here
    children_into(id_, out, inlined);
    return out;
  }
  /// Whether both handles name the same node of the same checkpoint (Python's `is`, not `==`).
  bool is(const Value& other) const { return data_ == other.data_ && id_ == other.id_; }

  /// This value as a dict key's text, without its dict: strings as they are, ints in decimal, anything
  /// else as repr(). Parent::keys() gives the unique texts a dict's keys are listed under.
  std::string key_text() const {
    if (kind() == Kind::string) return n().text;
    if (kind() == Kind::integer && !n().big) return std::to_string(n().integer);
    return repr(60);
  }
  /// Python-like one-line rendering, cut at max_len characters.
  std::string repr(std::size_t max_len = 80) const {
    std::string out;
    repr_into(out, max_len, 0);
    if (out.size() > max_len) out = out.substr(0, max_len > 3 ? max_len - 3 : 0) + "...";
    return out;
  }
  /// "dict", "tensor", "argparse.Namespace", ...
  std::string type_name() const {
    if (kind() == Kind::object) return n().text;
    return detail::python_type(kind());
  }

  /// Every tensor below this value with its dotted key, in file order.
  std::vector<NamedTensor> tensors() const {
    std::vector<NamedTensor> out;
    std::vector<char> on_path(data_->tree.nodes.size(), 0);
    std::string path;
    std::vector<detail::ReadTensors::Want> wants;
    if (id_ == data_->root) {  // room for every tensor node (100k entries grown by doubling held a third more)
      std::size_t n = 0;
      for (const detail::Node& x : data_->tree.nodes) n += x.kind == Kind::tensor ? 1 : 0;
      out.reserve(n);
      wants.reserve(n);
    }
    flatten(id_, path, out, nullptr, on_path, 0, nullptr, &wants);
    data_->handed.get_many(data_->tree, wants, out);
    return out;
  }
  /// Every tensor-like value below this one that could not be read as a tensor, with the reason.
  std::vector<UnreadableValue> unreadable() const {
    std::vector<NamedTensor> ignored;
    std::vector<UnreadableValue> out;
    std::vector<char> on_path(data_->tree.nodes.size(), 0);
    std::string path;
    flatten(id_, path, ignored, &out, on_path, 0);
    return out;
  }

private:
  friend class Checkpoint;
  friend std::vector<NamedTensor> detail::lazy_tensors(const Value&);
  Value(std::shared_ptr<const detail::CheckpointData> d, std::uint32_t id) : data_(std::move(d)), id_(id) {}
  const detail::Node& n() const { return data_->tree.nodes[id_]; }
  Value child(std::uint32_t id) const { return Value(data_, id); }
  /// The unique texts of a dict's keys (see keys()).
  std::vector<std::string> key_texts(const std::vector<std::pair<std::uint32_t, std::uint32_t>>& kvs) const {
    std::vector<std::string> texts;
    texts.reserve(kvs.size());
    bool all_strings = true;
    for (std::size_t i = 0; i < kvs.size(); ++i) {
      const detail::Node& k = data_->tree.nodes[kvs[i].first];
      switch (k.kind) {
      case Kind::string:
        texts.push_back(k.text);
        break;
      case Kind::integer:
      case Kind::floating:
      case Kind::boolean:
      case Kind::none:
        all_strings = false;
        texts.push_back(k.kind == Kind::integer && !k.big ? std::to_string(k.integer) : child(kvs[i].first).repr(200));
        break;
      default:
        all_strings = false;
        if (k.kind == Kind::object && k.internal == detail::Internal::global)
          texts.push_back(k.text);  // a class used as a key: named as Python (and Lightning) name it
        else
          texts.push_back("<" + child(kvs[i].first).type_name() + "#" + std::to_string(i) + ">");
      }
    }
    if (all_strings) return texts;  // a dict's string keys are already unique
    std::map<std::string, std::size_t> seen;
    for (std::size_t i = 0; i < texts.size(); ++i)
      if (data_->tree.nodes[kvs[i].first].kind == Kind::string) seen.emplace(texts[i], i);
    for (std::size_t i = 0; i < texts.size(); ++i) {
      if (data_->tree.nodes[kvs[i].first].kind == Kind::string) continue;
      while (!seen.emplace(texts[i], i).second) texts[i] += '\'';
    }
    return texts;
  }
  void children_into(std::uint32_t id, std::vector<std::pair<std::string, Value>>& out, std::vector<std::uint32_t>& inlined) const {
    const detail::Node& nd = data_->tree.nodes[id];
    auto by_keys = [&](const std::vector<std::pair<std::uint32_t, std::uint32_t>>& kvs) {
      const auto texts = key_texts(kvs);
      for (std::size_t i = 0; i < kvs.size(); ++i) out.emplace_back(texts[i], child(kvs[i].second));
    };
    auto by_index = [&] {
      for (std::size_t i = 0; i < nd.items.size(); ++i) out.emplace_back(std::to_string(i), child(nd.items[i]));
    };
    switch (nd.kind) {
    case Kind::dict:
      by_keys(nd.kv());
      break;
    case Kind::list:
    case Kind::tuple:
    case Kind::set:
      by_index();
      break;
    case Kind::object:
      if (nd.internal == detail::Internal::unreadable || std::find(inlined.begin(), inlined.end(), id) != inlined.end()) break;
      inlined.push_back(id);
      if (nd.state() != detail::npos) {
        const detail::Node& st = data_->tree.nodes[nd.state()];
        const bool container = st.kind == Kind::dict || st.kind == Kind::list || st.kind == Kind::tuple || st.kind == Kind::set ||
                               (st.kind == Kind::object && st.internal != detail::Internal::unreadable);
        if (container)
          children_into(nd.state(), out, inlined);
        else
          out.emplace_back("", child(nd.state()));
      }
      by_keys(nd.kv());
      by_index();
      break;
    default:
      break;
    }
  }
  [[noreturn]] void fail(const std::string& id, const std::string& why) const { throw Error(id, data_->path, "", why); }
  /// The tensor of a value that is a 0-dim tensor (a numpy or torch scalar), else nullptr.
  const at::Tensor* scalar_tensor() const {
    if (kind() != Kind::tensor || n().raw() != nullptr || n().pieces()) return nullptr;
    return data_->handed.dim(n()) == 0 ? &tensor_ref() : nullptr;
  }
  /// This tensor node's tensor, its bytes safe to read (see detail::ReadTensors).
  const at::Tensor& tensor_ref() const { return data_->handed.get(id_, n()); }
  void expect(Kind k, const char* what) const {
    if (kind() != k) fail("value.type", std::string("expected ") + what + ", found " + type_name());
  }

  /// Appends the tensors below `id`; `path` is its dotted key, extended and restored in place so
  /// that each key is built once.
  void flatten(std::uint32_t id, std::string& path, std::vector<NamedTensor>& out, std::vector<UnreadableValue>* unreadable,
               std::vector<char>& on_path, std::size_t depth, std::vector<at::Storage>* views = nullptr,
               std::vector<detail::ReadTensors::Want>* wants = nullptr) const {
    if (on_path[id]) return;  // a cycle: Python objects may refer to themselves
    if (depth > data_->max_depth)
      throw Error("limit.depth", data_->path, path, "values nested deeper than max_depth (" + std::to_string(data_->max_depth) + ")");
    const detail::Node& nd = data_->tree.nodes[id];
    const std::size_t len = path.size();
    auto descend = [&](std::uint32_t child_id, auto&& append_key) {
      if (len > 0) path += '.';
      append_key();
      flatten(child_id, path, out, unreadable, on_path, depth + 1, views, wants);
      path.resize(len);
    };
    auto by_keys = [&](const std::vector<std::pair<std::uint32_t, std::uint32_t>>& kvs) {
      bool all_strings = true;
      for (const auto& kv : kvs) all_strings = all_strings && data_->tree.nodes[kv.first].kind == Kind::string;
      if (all_strings) {  // the common case, hot for 100k keys: no text is built twice
        for (const auto& kv : kvs) descend(kv.second, [&] { path += data_->tree.nodes[kv.first].text; });
        return;
      }
      const auto texts = key_texts(kvs);
      for (std::size_t i = 0; i < kvs.size(); ++i) descend(kvs[i].second, [&] { path += texts[i]; });
    };
    auto by_index = [&](std::size_t i, std::uint32_t child_id) { descend(child_id, [&] { path += std::to_string(i); }); };
    on_path[id] = 1;
    switch (nd.kind) {
    case Kind::tensor:
      if (unreadable == nullptr) {
        const char* raw = nd.raw() != nullptr ? nd.raw()->torch : nullptr;
        if (!nd.pieces() && views != nullptr) {  // as read, unless the caller holds (and may have changed) it
          std::optional<at::Tensor> held = data_->handed.find(id, nd);
          out.push_back({path, held ? std::move(*held) : data_->handed.as_read(nd, *views), raw});
        } else if (!nd.pieces() && wants != nullptr) {  // read after the walk, all at once (ReadTensors::get_many)
          out.push_back({path, at::Tensor(), raw});
          wants->push_back({out.size() - 1, id});
        } else if (!nd.pieces()) {
          out.push_back({path, data_->handed.get(id, nd, path), raw});
        } else if (views != nullptr && !nd.pieces()->assembled())  // as read; else the tensor the caller holds
          out.push_back({path, nd.tensor, raw, std::make_shared<const detail::LazyTensor>(detail::LazyTensor{nd.pieces(), {}})});
        else
          out.push_back({path, nd.pieces()->whole(), raw});
      }
      break;
    case Kind::dict:
      by_keys(nd.kv());
      break;
    case Kind::list:
    case Kind::tuple:
    case Kind::set:
      for (std::size_t i = 0; i < nd.items.size(); ++i) by_index(i, nd.items[i]);
      break;
    case Kind::object:
      if (nd.internal == detail::Internal::unreadable) {
        if (unreadable != nullptr) unreadable->push_back({path, nd.text, data_->reasons[nd.pending]});
        break;
      }
      if (nd.state() != detail::npos) flatten(nd.state(), path, out, unreadable, on_path, depth + 1, views, wants);
      by_keys(nd.kv());
      for (std::size_t i = 0; i < nd.items.size(); ++i) by_index(i, nd.items[i]);
      break;
    default:
      break;
    }
    on_path[id] = 0;
  }

  void repr_into(std::string& out, std::size_t max_len, std::size_t depth) const {
    if (out.size() > max_len) return;
    if (depth > 8) {
      out += "...";
      return;
    }
    const detail::Node& nd = n();
    auto seq = [&](const char* open, const char* close) {
      out += open;
      for (std::size_t i = 0; i < nd.items.size() && out.size() <= max_len; ++i) {
        if (i) out += ", ";
        child(nd.items[i]).repr_into(out, max_len, depth + 1);
      }
      if (nd.kind == Kind::tuple && nd.items.size() == 1) out += ",";
      out += close;
    };
    switch (nd.kind) {
    case Kind::none:
      out += "None";
      break;
    case Kind::boolean:
      out += nd.boolean ? "True" : "False";
      break;
    case Kind::integer:
      out += nd.big ? nd.text : std::to_string(nd.integer);
      break;
    case Kind::floating:
      out += format_double(nd.real);
      break;
    case Kind::complex:
      out += "(" + format_double(nd.real) + (nd.imag() < 0 ? "" : "+") + format_double(nd.imag()) + "j)";
      break;
    case Kind::string:
      out += "'" + nd.text + "'";
      break;
    case Kind::bytes:
      out += "b<" + std::to_string(nd.text.size()) + " bytes>";
      break;
    case Kind::list:
      seq("[", "]");
      break;
    case Kind::tuple:
      seq("(", ")");
      break;
    case Kind::set:
      seq("{", "}");
      break;
    case Kind::dict: {
      out += "{";
      for (std::size_t i = 0; i < nd.kv().size() && out.size() <= max_len; ++i) {
        if (i) out += ", ";
        child(nd.kv()[i].first).repr_into(out, max_len, depth + 1);
        out += ": ";
        child(nd.kv()[i].second).repr_into(out, max_len, depth + 1);
      }
      out += "}";
      break;
    }
    case Kind::tensor: {
      out += "tensor(" + data_->handed.dtype_text(nd) + ", [";
      const std::vector<std::int64_t> shape = data_->handed.shape(nd);
      for (std::size_t d = 0; d < shape.size(); ++d) out += (d ? ", " : "") + std::to_string(shape[d]);
      out += "])";
      break;
    }
    case Kind::object: {
      out += nd.text;
      if (nd.internal == detail::Internal::global) break;  // a class or function used as a value
      out += "(";
      bool first = true;
      auto sep = [&] {
        if (!first) out += ", ";
        first = false;
      };
      if (nd.args() != detail::npos)
        for (auto a : data_->tree.nodes[nd.args()].items) {
          sep();
          child(a).repr_into(out, max_len, depth + 1);
        }
      if (!nd.items.empty()) {
        sep();
        out += "[";
        for (std::size_t i = 0; i < nd.items.size() && out.size() <= max_len; ++i) {
          if (i) out += ", ";
          child(nd.items[i]).repr_into(out, max_len, depth + 1);
        }
        out += "]";
      }
      if (nd.state() != detail::npos) {
        sep();
        child(nd.state()).repr_into(out, max_len, depth + 1);
      }
      out += ")";
      break;
    }
    }
  }
  static std::string format_double(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    // Shortest text that reads back to the same double, like Python's repr.
    for (int prec = 1; prec <= 17; ++prec) {
      char b2[32];
      std::snprintf(b2, sizeof b2, "%.*g", prec, v);
      if (std::strtod(b2, nullptr) == v) {
        std::snprintf(buf, sizeof buf, "%s", b2);
        break;
      }
    }
    std::string s = buf;
    if (s.find_first_of(".eni") == std::string::npos) s += ".0";
    return s;
  }

  std::shared_ptr<const detail::CheckpointData> data_;
  std::uint32_t id_;
};

inline Value Value::at(std::string_view path) const {
  Value cur = *this;
  std::string rest(path);
  std::string walked;
  while (!rest.empty()) {
    const detail::Node& nd = cur.n();
    std::optional<Value> next;
    std::size_t used = 0;
    if (nd.kind == Kind::dict || (nd.kind == Kind::object && (!nd.kv().empty() || nd.state() != detail::npos))) {
      const auto& kvs = nd.kind == Kind::dict ? nd.kv() : !nd.kv().empty() ? nd.kv() : data_->tree.nodes[nd.state()].kv();
      const auto texts = key_texts(kvs);
      for (std::size_t i = 0; i < kvs.size(); ++i) {
        const std::string& k = texts[i];
        if (k.size() > used && (rest == k || (rest.size() > k.size() && rest.compare(0, k.size(), k) == 0 && rest[k.size()] == '.'))) {
          used = k.size();
          next = cur.child(kvs[i].second);
        }
      }
    } else if (cur.is_sequence()) {
      const std::string head = rest.substr(0, rest.find('.'));
      char* end = nullptr;
      const unsigned long long idx = std::strtoull(head.c_str(), &end, 10);
      if (!head.empty() && end == head.c_str() + head.size() && idx < nd.items.size()) {
        next = cur.child(nd.items[idx]);
        used = head.size();
      }
    }
    if (!next) {
      std::string avail;
      if (cur.is_dict()) {
        auto ks = cur.keys();
        for (std::size_t i = 0; i < ks.size() && i < 20; ++i) avail += (i ? ", " : "") + std::string("'") + ks[i] + "'";
        if (ks.size() > 20) avail += ", ...";
        avail = "; available keys: " + avail;
      }
      throw Error("path.not_found", data_->path, walked.empty() ? "top level" : walked,
                  "no key '" + rest.substr(0, rest.find('.')) + "' in this " + cur.type_name() + avail);
    }
    walked += (walked.empty() ? "" : ".") + rest.substr(0, used);
    rest = used < rest.size() ? rest.substr(used + 1) : std::string();
    cur = *next;
  }
  return cur;
}

/// A checkpoint read from a file: the tree of values it holds and where it came from.
class Checkpoint {
public:
  Format format() const { return data_->format; }
  const std::string& path() const { return data_->path; }
  Value root() const { return Value(data_, data_->root); }
  /// Navigates by dotted path from the root; throws Error "path.not_found" listing the keys there.
  Value at(std::string_view path) const { return root().at(path); }
  /// The same as at(path): ck["epoch"].as_int(), ck["args.lr"].as_double().
  Value operator[](std::string_view path) const { return at(path); }
  /// Every tensor with its dotted key, in file order.
  std::vector<NamedTensor> tensors() const { return root().tensors(); }
  /// Every tensor-like value that could not be read as a tensor, with the reason.
  std::vector<UnreadableValue> unreadable() const { return root().unreadable(); }
  /// safetensors' __metadata__; for a torch.export archive, "pt2.constants": its constants' FQNs
  /// (comma-separated), which are not part of the state dict (see ReadOptions::pt2_constants).
  const std::map<std::string, std::string>& metadata() const { return data_->metadata; }
  /// For a whole pickled nn.Module (torch.save(model)): its Python class; otherwise empty.
  const std::string& module_class() const { return data_->module_class; }
  /// What statedict noticed about the file that needs no action, one sentence each: a name that
  /// says another format than the content it was read by ("named '.safetensors', but it is a
  /// torch.save zip (PyTorch 1.6 or later): read as that").
  const std::vector<std::string>& notes() const { return data_->notes; }

private:
  friend Checkpoint detail::make_checkpoint(std::shared_ptr<const detail::CheckpointData>);
  explicit Checkpoint(std::shared_ptr<const detail::CheckpointData> d) : data_(std::move(d)) {}
  std::shared_ptr<const detail::CheckpointData> data_;
};

namespace detail {
inline Checkpoint make_checkpoint(std::shared_ptr<const CheckpointData> data) { return Checkpoint(std::move(data)); }
/// tensors(), except that a tensor stored in pieces is not assembled: its entry has a placeholder
/// and a LazyTensor (see NamedTensor::lazy).
inline std::vector<NamedTensor> lazy_tensors(const Value& v) {
  std::vector<NamedTensor> out;
  std::vector<char> on_path(v.data_->tree.nodes.size(), 0);
  std::string path;
  std::vector<at::Storage> views;  // a described storage's view, shared by its tensors in this list
  v.flatten(v.id_, path, out, nullptr, on_path, 0, &views);
  return out;
}
/// Whether `v` is an optimizer's state_dict(): a dict of `state` (a dict: per-parameter buffers
/// such as momentum_buffer or exp_avg, keyed by parameter number) and `param_groups` (a list).
inline bool is_optimizer_state(const Value& v) {
  if (!v.is_dict() || v.size() > 4) return false;  // torch's has these two keys alone; a model's state dict is not looked through
  const std::optional<Value> state = v.find("state"), groups = v.find("param_groups");
  return state && groups && state->is_dict() && groups->is_sequence();
}
/// What an optimizer's state is, in words, for errors and notes.
inline const char* optimizer_state_words() {
  return "an optimizer's state_dict() (keys 'state' and 'param_groups'), not a model's: it holds the optimizer's per-parameter "
         "buffers (momentum_buffer, exp_avg, ...) keyed by parameter number, not the weights";
}
/// The bytes of an entry of such a list.
inline at::Tensor resolve(const NamedTensor& t) { return t.lazy ? t.lazy->get() : readable(t.tensor, t.key); }
}  // namespace detail

}  // namespace statedict
