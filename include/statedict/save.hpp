#pragma once
// statedict::save: tensors to a torch.save zip that Python reads with torch.load(weights_only=True),
// or to safetensors; optionally sharded with an index; always written atomically.
#include <statedict/checkpoint.hpp>
#include <statedict/detail/config.hpp>
#include <statedict/error.hpp>
#include <statedict/load.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace statedict {

/// Options for statedict::save, in LibTorch's fluent style.
class SaveOptions {
public:
  enum class Format { from_extension, torch, safetensors };
  /// torch zip or safetensors; by default ".safetensors" picks safetensors, anything else torch.
  SaveOptions& format(Format f) {
    format_ = f;
    return *this;
  }
  /// safetensors __metadata__ entry (ignored for torch files).
  SaveOptions& metadata(const std::string& key, const std::string& value) {
    metadata_[key] = value;
    return *this;
  }
  /// Split into shards of at most this many bytes (a larger tensor gets a shard of its own) plus a
  /// PATH.index.json naming the shard of every tensor; 0 (the default) writes one file.
  SaveOptions& max_shard_size(std::uint64_t bytes) {
    max_shard_ = bytes;
    return *this;
  }
  /// Called as bytes are written: (done, total).
  SaveOptions& progress(std::function<void(std::uint64_t, std::uint64_t)> f) {
    progress_ = std::move(f);
    return *this;
  }

  Format format() const { return format_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::uint64_t max_shard_size() const { return max_shard_; }
  const std::function<void(std::uint64_t, std::uint64_t)>& progress() const { return progress_; }

private:
  Format format_ = Format::from_extension;
  std::map<std::string, std::string> metadata_;
  std::uint64_t max_shard_ = 0;
  std::function<void(std::uint64_t, std::uint64_t)> progress_;
};
/// Saves named tensors (in order) to `path`: safetensors for ".safetensors", otherwise a torch.save
/// zip that PyTorch 1.13 and newer read with torch.load(path, weights_only=True) as an OrderedDict.
/// With max_shard_size, writes shards and PATH.index.json instead. Throws statedict::Error.
STATEDICT_FUNC void save(const std::vector<NamedTensor>& tensors, const std::string& path, const SaveOptions& options = {});

/// Saves a module's parameters and buffers (its state dict).
template <class M, std::enable_if_t<detail::is_module<std::remove_reference_t<M>>::value, int> = 0>
void save(M&& module, const std::string& path, const SaveOptions& options = {}) {
  save(state_dict(module), path, options);
}

/// Saves tensors in the layout of the checkpoint that `layout` loads: its transforms undone (each
/// one's inverse, in reverse order) and then its key rules (a regex rename has no inverse:
/// options.not_invertible). Loading the file with `layout` gives the same tensors back. select,
/// submodule and the policies play no part; a strip_prefix is taken to have applied to every key.
STATEDICT_FUNC void save(const std::vector<NamedTensor>& tensors, const std::string& path, const LoadOptions& layout,
                         const SaveOptions& options = {});
template <class M, std::enable_if_t<detail::is_module<std::remove_reference_t<M>>::value, int> = 0>
void save(M&& module, const std::string& path, const LoadOptions& layout, const SaveOptions& options = {}) {
  save(state_dict(module), path, layout, options);
}

}  // namespace statedict

#if STATEDICT_DEFINITIONS
#include <statedict/detail/dtypes.hpp>
#include <statedict/detail/write/layout.hpp>
#include <statedict/detail/write/writer.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <set>

namespace statedict {

namespace detail {

/// A protocol-2 pickle of OrderedDict{key: _rebuild_tensor_v2(...)} with _metadata, as torch.save
/// writes for a state dict.
class StateDictPickler {
public:
  std::string out;

  void proto() { out += "\x80\x02"; }
  void global(const std::string& module, const std::string& name) {
    auto it = memo_.find(module + "." + name);
    if (it != memo_.end()) {
      get(it->second);
      return;
    }
    out += 'c';
    out += module + "\n" + name + "\n";
    put(module + "." + name);
  }
  void text(const std::string& s, bool memoize = false) {
    if (memoize) {
      auto it = memo_.find("str:" + s);
      if (it != memo_.end()) {
        get(it->second);
        return;
      }
    }
    out += 'X';
    put32(out, static_cast<std::uint32_t>(s.size()));
    out += s;
    if (memoize) put("str:" + s);
  }
  void integer(std::int64_t v) {
    if (v >= 0 && v < 256) {
      out += 'K';
      out += static_cast<char>(v);
    } else if (v >= 0 && v < 65536) {
      out += 'M';
      put16(out, static_cast<std::uint16_t>(v));
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      out += 'J';
      put32(out, static_cast<std::uint32_t>(static_cast<std::int32_t>(v)));
    } else {
      out += "\x8a\x08";
      put64(out, static_cast<std::uint64_t>(v));
    }
  }
  void int_tuple(at::IntArrayRef v) {
    if (v.empty()) {
      out += ')';
      return;
    }
    if (v.size() > 3) out += '(';
    for (auto x : v) integer(x);
    out += v.size() == 1 ? "\x85" : v.size() == 2 ? "\x86" : v.size() == 3 ? "\x87" : "t";
  }
  void empty_ordered_dict() {
    global("collections", "OrderedDict");
    out += ")R";
  }

private:
  void put(const std::string& key) {
    const auto idx = static_cast<std::uint32_t>(memo_.size());
    memo_[key] = idx;
    if (idx < 256) {
      out += 'q';
      out += static_cast<char>(idx);
    } else {
      out += 'r';
      put32(out, idx);
    }
  }
  void get(std::uint32_t idx) {
    if (idx < 256) {
      out += 'h';
      out += static_cast<char>(idx);
    } else {
      out += 'j';
      put32(out, idx);
    }
  }
  std::map<std::string, std::uint32_t> memo_;
};

inline std::uint64_t tensor_bytes(const NamedTensor& t) { return tensor_bytes(t.tensor); }

/// A lazy tensor's bytes, contiguous on the CPU, checked against the size its header promised.
inline at::Tensor made(const LazyTensor& lazy, std::uint64_t nbytes) {
  at::Tensor c = lazy.get().contiguous();
  if (!c.device().is_cpu()) c = c.cpu();
  if (tensor_bytes(c) != nbytes)
    throw Error("save.layout", "", "",
                "a tensor made while writing has " + std::to_string(tensor_bytes(c)) + " bytes, not " + std::to_string(nbytes));
  return c;
}

/// The dtype a tensor is saved as: its own, or for a raw tensor the one it stands for.
inline Dtype saved_dtype(const NamedTensor& t) {
  return t.raw_dtype != nullptr ? dtype_from_torch(t.raw_dtype) : find_dtype(t.tensor.scalar_type());
}
/// Sizes, strides and storage offset in elements of the saved dtype (a raw tensor drops its byte dimension).
struct ElementView {
  std::vector<std::int64_t> sizes, strides;
  std::int64_t offset = 0;
};
inline ElementView element_view(const NamedTensor& t, Dtype dt) {
  if (t.lazy) {  // made when written, contiguous in a storage of its own
    ElementView v{t.shape(), std::vector<std::int64_t>(t.shape().size(), 1), 0};
    for (std::size_t d = v.sizes.size(); d-- > 1;) v.strides[d - 1] = v.strides[d] * v.sizes[d];
    return v;
  }
  ElementView v{t.tensor.sizes().vec(), t.tensor.strides().vec(), t.tensor.storage_offset()};
  if (t.raw_dtype != nullptr) {
    v.sizes.pop_back();
    v.strides.pop_back();
    for (auto& st : v.strides) st /= dt->size;
    v.offset /= dt->size;
  }
  return v;
}

inline std::vector<NamedTensor> to_cpu(const std::vector<NamedTensor>& tensors) {
  std::vector<NamedTensor> r;
  r.reserve(tensors.size());
  std::set<std::string> seen;
  for (const auto& t : tensors) {
    if (!t.tensor.defined()) throw Error("save.undefined", "", t.key, "tensor is undefined");
    if (!seen.insert(t.key).second) throw Error("save.duplicate", "", t.key, "two tensors have this name");
    const Dtype dt = saved_dtype(t);
    if (dt == nullptr || c10::isQIntType(dt->type))
      throw Error("format.unsupported_dtype", "", t.key, "dtype " + t.dtype() + " cannot be saved");
    at::Tensor c = t.tensor.detach();
    if (!c.device().is_cpu() && !t.lazy) c = c.cpu();
    if (c.is_sparse() || c.is_quantized() || c.is_mkldnn())
      throw Error("save.layout", "", t.key, "only dense strided tensors can be saved");
    if (t.raw_dtype != nullptr && (c.scalar_type() != at::kByte || c.dim() == 0 || c.size(-1) != dt->size || c.stride(-1) != 1))
      throw Error("save.layout", "", t.key, "a raw " + t.dtype() + " tensor must be uint8 with a last dimension of its element size");
    r.push_back({t.key, c, t.raw_dtype, t.lazy});
  }
  return r;
}

inline void write_torch_zip(const std::string& path, const std::vector<NamedTensor>& tensors, const SaveOptions& opts) {
  // Storages: one record per distinct storage, so tensors that share one still share it in Python.
  struct StorageRec {
    const void* impl;
    Dtype dtype;
    at::Storage storage;
    std::string key;
    std::shared_ptr<const LazyTensor> lazy;  // a tensor made when written (storage then unset)
    std::uint64_t nbytes = 0;
  };
  std::vector<StorageRec> storages;
  std::map<std::pair<const void*, int>, std::size_t> index;
  StateDictPickler p;
  p.proto();
  p.empty_ordered_dict();
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    if (i % 1000 == 0) p.out += '(';
    const at::Tensor& t = tensors[i].tensor;
    const Dtype dt = saved_dtype(tensors[i]);
    const ElementView v = element_view(tensors[i], dt);
    const auto& lazy = tensors[i].lazy;
    const void* impl = lazy ? static_cast<const void*>(lazy.get()) : t.storage().unsafeGetStorageImpl();
    auto [it, fresh] = index.emplace(std::make_pair(impl, static_cast<int>(dt - dtype_table)), storages.size());
    if (fresh)
      storages.push_back({impl, dt, lazy ? at::Storage() : t.storage(), std::to_string(storages.size()), lazy,
                          lazy ? tensor_bytes(t) : t.storage().nbytes()});
    const StorageRec& s = storages[it->second];
    // Dtypes that have a torch.<X>Storage class are written as PyTorch 1.x-2.x do (typed storage,
    // _rebuild_tensor_v2); the newer ones as PyTorch 2.x does (untyped storage, _rebuild_tensor_v3).
    const bool v3 = dt->storage == nullptr;
    p.text(tensors[i].key);
    p.global("torch._utils", v3 ? "_rebuild_tensor_v3" : "_rebuild_tensor_v2");
    p.out += "((";
    p.text("storage", true);
    p.global(v3 ? "torch.storage" : "torch", v3 ? "UntypedStorage" : dt->storage);  // where torch.save names them
    p.text(s.key);
    p.text("cpu", true);
    p.integer(static_cast<std::int64_t>(v3 ? s.nbytes : s.nbytes / dt->size));
    p.out += "tQ";
    p.integer(v.offset);
    p.int_tuple(v.sizes);
    p.int_tuple(v.strides);
    p.out += '\x89';         // requires_grad False
    p.empty_ordered_dict();  // backward hooks
    if (v3) p.global("torch", dt->torch);
    p.out += "tR";
    if (i % 1000 == 999 || i + 1 == tensors.size()) p.out += 'u';
  }
  p.out += '}';
  p.text("_metadata");
  p.empty_ordered_dict();
  p.out += "sb.";

  std::string top = std::filesystem::path(path).stem().string();
  for (char& c : top)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) c = '_';
  if (top.empty()) top = "archive";
  std::uint64_t total = p.out.size(), done = 0;
  for (const auto& s : storages) total += s.nbytes;
  AtomicFile f(path);
  ZipWriter z(f);
  z.add(top + "/data.pkl", p.out.data(), p.out.size());
  for (const auto& s : storages) {
    if (s.lazy) {
      const at::Tensor c = made(*s.lazy, s.nbytes);
      z.add(top + "/data/" + s.key, c.data_ptr(), s.nbytes);
      release_pieces(*s.lazy);  // a convert holds about one tensor, not the chunks' pages too
    } else {
      const at::Storage bytes = readable(s.storage, s.key);  // a file's: checked, or read with pread
      z.add(top + "/data/" + s.key, bytes.data_ptr().get(), s.nbytes);
    }
    done += s.nbytes;
    if (opts.progress()) opts.progress()(done, total);
  }
  z.add(top + "/version", "3\n", 2);
  z.add(top + "/byteorder", "little", 6);
  z.finish();
  f.commit();
}

inline void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors, const SaveOptions& opts) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!opts.metadata().empty()) header["__metadata__"] = opts.metadata();
  std::vector<std::pair<at::Tensor, std::shared_ptr<const LazyTensor>>> data;
  std::uint64_t offset = 0;
  for (const auto& t : tensors) {
    if (t.key == "__metadata__") throw Error("save.name", path, t.key, "a tensor cannot be named __metadata__ in safetensors");
    const Dtype dt = saved_dtype(t);
    // safetensors' own list of dtypes has no complex128 (statedict still reads "C128").
    if (dt->safetensors == nullptr || dt->type == c10::ScalarType::ComplexDouble)
      throw Error("format.unsupported_dtype", path, t.key, "safetensors has no " + std::string(dt->torch));
    // A lazy tensor is made when written, a view of a file read when written (readable()).
    at::Tensor c = t.lazy || mapped_file_of(t.tensor) != nullptr ? t.tensor : t.tensor.contiguous();
    const std::uint64_t n = tensor_bytes(c);
    std::vector<std::int64_t> shape = t.shape();
    if (packs_two(dt)) {  // safetensors counts the fp4 values, two a byte along the last dimension
      if (shape.empty() || shape.back() > INT64_MAX / 2)
        throw Error("format.unsupported_dtype", path, t.key,
                    "a " + std::string(dt->torch) + " tensor of shape " + shape_str(shape) + " has no safetensors F4 shape");
      shape.back() *= 2;
    }
    header[t.key] = {{"dtype", dt->safetensors}, {"shape", shape}, {"data_offsets", {offset, offset + n}}};
    offset += n;
    data.emplace_back(c, t.lazy);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  AtomicFile f(path);
  std::string len;
  put64(len, text.size());
  f.write(len);
  f.write(text);
  std::uint64_t done = 0;
  for (const auto& [placed, lazy] : data) {
    const std::uint64_t n = tensor_bytes(placed);
    const at::Tensor c =
        lazy ? made(*lazy, n) : readable(placed, "the tensor at byte " + std::to_string(done) + " of the data").contiguous();
    f.write(c.data_ptr(), static_cast<std::size_t>(n));
    if (lazy) release_pieces(*lazy);
    done += n;
    if (opts.progress()) opts.progress()(done, offset);
  }
  f.commit();
}

inline bool wants_safetensors(const std::string& path, const SaveOptions& opts) {
  if (opts.format() != SaveOptions::Format::from_extension) return opts.format() == SaveOptions::Format::safetensors;
  return path.size() >= 12 && path.compare(path.size() - 12, 12, ".safetensors") == 0;
}

inline void write_one(const std::string& path, const std::vector<NamedTensor>& tensors, const SaveOptions& opts) {
  if (wants_safetensors(path, opts))
    write_safetensors(path, tensors, opts);
  else
    write_torch_zip(path, tensors, opts);
}

}  // namespace detail

STATEDICT_FUNC void save(const std::vector<NamedTensor>& tensors, const std::string& path, const SaveOptions& options) {
  try {
    const std::vector<NamedTensor> cpu = detail::to_cpu(tensors);
    std::uint64_t total = 0;
    for (const auto& t : cpu) total += detail::tensor_bytes(t.tensor);
    if (options.max_shard_size() == 0 || total <= options.max_shard_size()) {
      detail::write_one(path, cpu, options);
      return;
    }
    std::vector<std::vector<NamedTensor>> shards(1);
    std::uint64_t in_shard = 0;
    for (const auto& t : cpu) {
      const std::uint64_t n = detail::tensor_bytes(t.tensor);
      if (!shards.back().empty() && in_shard + n > options.max_shard_size()) {
        shards.emplace_back();
        in_shard = 0;
      }
      shards.back().push_back(t);
      in_shard += n;
    }
    const std::filesystem::path p(path);
    const std::string stem = p.stem().string(), ext = p.extension().string();
    nlohmann::ordered_json index;
    index["metadata"] = {{"total_size", total}};
    index["weight_map"] = nlohmann::ordered_json::object();
    char num[64];
    for (std::size_t i = 0; i < shards.size(); ++i) {
      std::snprintf(num, sizeof num, "-%05zu-of-%05zu", i + 1, shards.size());
      const std::string name = stem + num + ext;
      SaveOptions shard_opts = options;
      if (options.format() == SaveOptions::Format::from_extension)
        shard_opts.format(detail::wants_safetensors(path, options) ? SaveOptions::Format::safetensors : SaveOptions::Format::torch);
      detail::write_one((p.parent_path() / name).string(), shards[i], shard_opts);
      for (const auto& t : shards[i]) index["weight_map"][t.key] = name;
    }
    detail::AtomicFile f(path + ".index.json");
    f.write(index.dump(2) + "\n");
    f.commit();
  } catch (const Error& e) {
    if (!e.file().empty()) throw;
    throw Error(e.id(), path, e.where(), e.reason());
  }
}

STATEDICT_FUNC void save(const std::vector<NamedTensor>& tensors, const std::string& path, const LoadOptions& layout,
                         const SaveOptions& options) {
  save(detail::checkpoint_layout(tensors, layout, path, nullptr), path, options);
}

}  // namespace statedict
#endif  // STATEDICT_DEFINITIONS
