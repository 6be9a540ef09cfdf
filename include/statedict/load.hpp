#pragma once
// statedict::load and statedict::diff: a checkpoint into a torch::nn::Module, checked first,
// applied only when the whole load is acceptable.
#include <statedict/checkpoint.hpp>
#include <statedict/detail/config.hpp>
#include <statedict/detail/match/target.hpp>
#include <statedict/options.hpp>
#include <statedict/read.hpp>
#include <statedict/report.hpp>

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <optional>
#include <type_traits>

namespace statedict {

namespace detail {

inline torch::nn::Module& as_module(torch::nn::Module& m) { return m; }
template <class T> torch::nn::Module& as_module(const std::shared_ptr<T>& p) { return *p; }
template <class T> torch::nn::Module& as_module(torch::nn::ModuleHolder<T>& h) { return *h.ptr(); }
template <class T> torch::nn::Module& as_module(const torch::nn::ModuleHolder<T>& h) { return *h.ptr(); }

template <class M> using if_not_checkpoint = std::enable_if_t<!std::is_same_v<std::decay_t<M>, Checkpoint>, int>;

/// A module's own parameters, read in place. named_parameters(false) returns a copy of them (an
/// OrderedDict with a hash index: 0.1 s for 100k parameters, half the matching budget). LibTorch keeps
/// them in the protected member parameters_, which a pointer to member formed in a derived class
/// may read from any module.
struct OwnParameters : torch::nn::Module {
  static const torch::OrderedDict<std::string, at::Tensor>& of(const torch::nn::Module& m) { return m.*(&OwnParameters::parameters_); }
};

/// The module's parameters and buffers in state_dict order: each module's own parameters, then
/// its buffers, depth first.
inline std::vector<Target> module_targets(torch::nn::Module& m) {
  std::vector<Target> out;
  auto own = [&out](const torch::nn::Module& mod, const std::string& prefix) {
    const auto& params = OwnParameters::of(mod);
    for (const auto& p : params)
      if (p.value().defined()) out.push_back({prefix + p.key(), p.value()});
    for (const auto& b : mod.named_buffers(/*recurse=*/false))
      if (b.value().defined()) out.push_back({prefix + b.key(), b.value()});
  };
  own(m, "");
  // include_self=false: a module on the stack is not in a shared_ptr, and LibTorch refuses it.
  for (const auto& item : m.named_modules("", /*include_self=*/false)) own(*item.value(), item.key() + ".");
  return out;
}

/// How load, diff, save and state_dict see a module type: `targets` lists its parameters and
/// buffers in state_dict order (aliases, written in place), `name` is its class for reports. A type
/// without a `targets` is not a module. statedict/jit.hpp adds torch::jit::Module.
template <class M, class = void> struct ModuleAccess {};
template <class M> struct ModuleAccess<M, std::void_t<decltype(as_module(std::declval<M&>()))>> {
  static std::vector<Target> targets(M& m) { return module_targets(as_module(m)); }
  static std::string name(M& m) { return module_display_name(as_module(m).name()); }
};

/// Whether load/diff accept an M as the module.
template <class M, class = void> struct is_module : std::false_type {};
template <class M>
struct is_module<M, std::void_t<decltype(ModuleAccess<std::remove_const_t<M>>::targets(std::declval<std::remove_const_t<M>&>()))>>
    : std::true_type {};
template <class M> using access_of = ModuleAccess<std::remove_const_t<std::remove_reference_t<M>>>;
#define STATEDICT_CHECK_MODULE(M)                                                                                                          \
  static_assert(::statedict::detail::is_module<std::remove_reference_t<M>>::value,                                                         \
                "statedict::load/diff/save/state_dict take a torch::nn::Module& (or a class derived from it), a TORCH_MODULE "             \
                "holder such as torch::nn::Linear, a std::shared_ptr to a module, or a torch::jit::Module (with "                          \
                "<statedict/jit.hpp> or <statedict/statedict.hpp> included); the source is a path or a statedict::Checkpoint")

/// Matches, checks and (unless a dry run) applies; the report says what happened. The body of
/// load() and diff() for every module type.
STATEDICT_FUNC LoadReport run(const std::vector<Target>& targets, std::string name, const Checkpoint* ck, const std::string& path,
                              const LoadOptions& opts, bool dry_run);

}  // namespace detail

/// A module's state dict: its parameters and buffers under their dotted names, in PyTorch's
/// state_dict order. The tensors alias the module's (writing to one writes to the module).
template <class M> std::vector<NamedTensor> state_dict(M&& module) {
  STATEDICT_CHECK_MODULE(M);
  std::vector<NamedTensor> out;
  for (auto& t : detail::access_of<M>::targets(module)) out.push_back({std::move(t.key), std::move(t.tensor)});
  return out;
}

/// Loads a checkpoint file into a module: a torch::nn::Module&, a TORCH_MODULE holder, a
/// std::shared_ptr to a module or a torch::jit::Module (statedict/jit.hpp). Never throws for file, key, shape or dtype problems: the report
/// says what went wrong, and a load that fails leaves the module bit-for-bit unchanged.
template <class M, detail::if_not_checkpoint<M> = 0> LoadReport load(M&& module, const std::string& path, const LoadOptions& options = {}) {
  STATEDICT_CHECK_MODULE(M);
  return detail::run(detail::access_of<M>::targets(module), detail::access_of<M>::name(module), nullptr, path, options, false);
}
/// Loads from a checkpoint already read.
template <class M, detail::if_not_checkpoint<M> = 0>
LoadReport load(M&& module, const Checkpoint& checkpoint, const LoadOptions& options = {}) {
  STATEDICT_CHECK_MODULE(M);
  return detail::run(detail::access_of<M>::targets(module), detail::access_of<M>::name(module), &checkpoint, checkpoint.path(), options,
                     false);
}

/// A dry run: the report load() would give, without touching the module.
template <class M, detail::if_not_checkpoint<M> = 0> LoadReport diff(M&& module, const std::string& path, const LoadOptions& options = {}) {
  STATEDICT_CHECK_MODULE(M);
  return detail::run(detail::access_of<M>::targets(module), detail::access_of<M>::name(module), nullptr, path, options, true);
}
template <class M, detail::if_not_checkpoint<M> = 0>
LoadReport diff(M&& module, const Checkpoint& checkpoint, const LoadOptions& options = {}) {
  STATEDICT_CHECK_MODULE(M);
  return detail::run(detail::access_of<M>::targets(module), detail::access_of<M>::name(module), &checkpoint, checkpoint.path(), options,
                     true);
}

/// The report of loading `source` into something whose state dict is `target` (another checkpoint):
/// what `statedict diff TARGET SOURCE` prints.
STATEDICT_FUNC LoadReport diff(const Checkpoint& target, const Checkpoint& source, const LoadOptions& options = {});

}  // namespace statedict

#if STATEDICT_DEFINITIONS
#include <statedict/detail/match/match.hpp>

namespace statedict {

namespace detail {

/// pread straight into the destination: one copy, from the page cache, without touching the mapping.
inline void pread_into(const MappedFile& f, const at::Tensor& src, at::Tensor& dst, const std::string& key) {
  read_or_throw(f, dst.data_ptr(), static_cast<std::size_t>(tensor_bytes(dst)), file_offset(f, src), key);
}

/// Gives back the mapped pages of the chunks a lazy tensor was made from (they stay valid: touched
/// again, they are read again from the file). Only for chunks nobody else sees.
inline void release_pieces(const LazyTensor& lazy) {
  if (!lazy.pieces) return;
  for (const auto& p : lazy.pieces->parts)
    if (const MappedFile* f = p.data.defined() && p.data.is_contiguous() ? mapped_file_of(p.data) : nullptr)
      f->release(static_cast<std::size_t>(static_cast<const std::uint8_t*>(p.data.data_ptr()) - f->data()),
                 static_cast<std::size_t>(p.data.numel()) * p.data.element_size());
}

/// While alive, the kernel reads ahead nothing on the file: a tensor-parallel slice is followed in the
/// file by the other ranks' parts (the rest of the tensor, or of each row), and readahead (8 MiB on
/// some disks) would read them too.
struct NoReadahead {
  int fd;
  explicit NoReadahead(int f) : fd(f) { ::posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM); }
  ~NoReadahead() { ::posix_fadvise(fd, 0, 0, POSIX_FADV_NORMAL); }
  NoReadahead(const NoReadahead&) = delete;
  NoReadahead& operator=(const NoReadahead&) = delete;
};

/// A strided view of the mapping (a slice along a dim other than 0), read run by run with pread:
/// only the slice's bytes reach the page cache, where touching the mapping would fault in, and read
/// ahead, whole rows. Used when each contiguous run is at least a page.
inline bool pread_runs(const MappedFile& f, const at::Tensor& src, at::Tensor& dst, const std::string& key) {
  const std::int64_t dims = src.dim();
  std::int64_t inner = dims, run = 1;  // dims [inner, dims) form contiguous runs of `run` elements
  while (inner > 0 && src.stride(inner - 1) == run) run *= src.size(--inner);
  const std::size_t run_bytes = static_cast<std::size_t>(run) * src.element_size();
  if (inner == 0 || run_bytes < 4096 || src.numel() == 0) return false;
  const auto* base = static_cast<const std::uint8_t*>(src.data_ptr());
  auto* out = static_cast<std::uint8_t*>(dst.data_ptr());
  std::vector<std::int64_t> idx(static_cast<std::size_t>(inner), 0);
  for (std::int64_t n = src.numel() / run; n > 0; --n) {
    std::int64_t at = 0;
    for (std::int64_t d = 0; d < inner; ++d) at += idx[static_cast<std::size_t>(d)] * src.stride(d);
    const std::uint8_t* p = base + at * static_cast<std::int64_t>(src.element_size());
    read_or_throw(f, out, run_bytes, static_cast<std::uint64_t>(p - f.data()), key);
    out += run_bytes;
    for (std::int64_t d = inner - 1; d >= 0; --d) {  // next outer index, last dim fastest
      if (++idx[static_cast<std::size_t>(d)] < src.size(d)) break;
      idx[static_cast<std::size_t>(d)] = 0;
    }
  }
  return true;
}

/// The mapped files the planned copies read from (a tensor's own, or its DCP chunks').
inline std::vector<const MappedFile*> files_of(const std::vector<Copy>& copies) {
  std::vector<const MappedFile*> out;
  auto add = [&out](const at::Tensor& t) {
    const MappedFile* f = t.defined() ? mapped_file_of(t) : nullptr;
    if (f != nullptr && std::find(out.begin(), out.end(), f) == out.end()) out.push_back(f);
  };
  for (const auto& c : copies) {
    if (!c.lazy) {
      add(c.source);
    } else if (c.lazy->pieces) {
      for (const auto& p : c.lazy->pieces->parts) add(p.data);
    } else {
      add(c.lazy->base);
    }
  }
  return out;
}

/// Writes the planned copies. Runs only after every check passed. `owns_source`: the checkpoint was
/// read by this load and nobody else holds it, so its bytes are the file's and may be read with
/// pread, and its mapping released as it is consumed.
/// Reports progress through the user's callback; one that throws is dropped, with a warning.
class ProgressSink {
public:
  ProgressSink(const std::function<void(std::uint64_t, std::uint64_t)>& f, std::vector<std::string>& warnings)
      : f_(f), warnings_(warnings) {}
  void operator()(std::uint64_t done, std::uint64_t total) {
    if (!f_ || failed_) return;
    try {
      f_(done, total);
    } catch (const std::exception& e) { drop(e.what()); } catch (...) {
      drop("an exception that is not a std::exception");
    }
  }

private:
  void drop(const std::string& what) {
    failed_ = true;
    warnings_.push_back("the progress callback threw (" + what + "); it was not called again, and the load went on.");
  }
  const std::function<void(std::uint64_t, std::uint64_t)>& f_;
  std::vector<std::string>& warnings_;
  bool failed_ = false;
};

/// `written` receives each module key once its tensor is written: if a copy throws (the file
/// changed under the load, a read failed), the caller reports which keys the module holds new.
inline void apply(const std::vector<Target>& targets, const std::vector<Copy>& copies, bool zero_copy, bool owns_source,
                  ProgressSink& progress, std::vector<std::string>& written) {
  torch::NoGradGuard no_grad;
  std::uint64_t total = 0, done = 0;
  for (const auto& c : copies) total += tensor_bytes(targets[c.target].tensor);
  progress(0, total);
  for (const auto& c : copies) {
    const std::uint64_t bytes = tensor_bytes(targets[c.target].tensor);
    struct Tick {  // after each copy, whichever way it ends
      ProgressSink& p;
      std::uint64_t &done, bytes, total;
      ~Tick() { p(done += bytes, total); }
    } tick{progress, done, bytes, total};
    const std::string& key = targets[c.target].key;
    at::Tensor dst = targets[c.target].tensor;
    const at::Tensor source = c.get();  // a lazy source reads its bytes here, one tensor at a time
    const bool same_layout =
        dst.device().is_cpu() && source.scalar_type() == dst.scalar_type() && source.is_contiguous() && source.sizes().equals(dst.sizes());
    const bool aligned = reinterpret_cast<std::uintptr_t>(source.data_ptr()) % std::min<std::size_t>(source.element_size(), 16) == 0;
    // A file's bytes are read with pread when this load read it, or when it was read pread-only
    // (statedict::read's default): a shrunk file is then an error, not SIGBUS.
    // A protected mapping is read as memory: the file may be another's now, the mapping stays ours.
    const MappedFile* file = mapped_file_of(source);
    if (file != nullptr && ((!owns_source && !file->pread_only()) || file->is_protected())) file = nullptr;
    if (zero_copy && same_layout && aligned && (file == nullptr || !file->pread_only())) {
      dst.set_data(source);
      written.push_back(key);
      continue;
    }
    std::optional<NoReadahead> exact;
    if (file != nullptr && c.slice) exact.emplace(file->fd());
    // A read straight into the parameter that fails half way leaves it partly new: it counts as
    // written from the moment the read starts.
    if (file != nullptr && same_layout && dst.is_contiguous()) {
      written.push_back(key);
      pread_into(*file, source, dst, key);
      continue;
    }
    if (file != nullptr && !source.is_contiguous() && dst.device().is_cpu() && source.scalar_type() == dst.scalar_type() &&
        source.sizes().equals(dst.sizes()) && dst.is_contiguous()) {
      written.push_back(key);
      if (pread_runs(*file, source, dst, key)) continue;
      written.pop_back();  // runs too short for pread: nothing was read; copied below
    }
    // A file's bytes are read with pread even here (a cast, another layout): through a buffer.
    dst.copy_(file != nullptr ? pread_copy(*file, source, key) : source);
    written.push_back(key);
    if (owns_source && c.lazy) release_pieces(*c.lazy);            // assembled from chunks: let their pages go as well
    if (owns_source && file != nullptr && source.is_contiguous())  // a strided shard shares its pages with other ranks' rows
      file->release(static_cast<std::size_t>(static_cast<const std::uint8_t*>(source.data_ptr()) - file->data()),
                    static_cast<std::size_t>(source.numel()) * source.element_size());
  }
}
STATEDICT_FUNC LoadReport run(const std::vector<Target>& targets, std::string name, const Checkpoint* ck, const std::string& path,
                              const LoadOptions& opts, bool dry_run) {
  LoadReport r;
  r.module_name = std::move(name);
  r.dry_run = dry_run;
  r.file = ck != nullptr ? ck->path() : path;
  std::optional<Checkpoint> owned;
  if (ck == nullptr) {
    try {
      ReadOptions ro = opts.read_options();
      ro.alias_misaligned(true);                   // its bytes are read with pread below, never through a misaligned pointer
      if (opts.zero_copy()) ro.map_tensors(true);  // parameters alias the file's pages: asked for
      owned = statedict::read(path, ro);
      ck = &*owned;
    } catch (const Error& e) {
      r.error = e.what();
      r.error_id = e.id();
      return r;
    }
  }
  std::vector<Copy> copies;
  try {
    copies = plan(targets, *ck, opts, r);
  } catch (const Error& e) {
    r.error = e.what();
    r.error_id = e.id();
    return r;
  }
  if (!r.ok() || dry_run) return r;
  // The file must still be what was read: torch.save rewrites in place, and a shrunk file's pages
  // cannot be read (SIGBUS through a mapping). A file replaced by rename is fine: we hold the old one.
  const std::vector<const MappedFile*> files = files_of(copies);
  for (const MappedFile* f : files) {
    const std::string why = f->change();
    if (!why.empty()) {
      const Error e("file.changed", f->path(), "", why + "; the module was not changed");
      r.error = e.what();
      r.error_id = e.id();
      return r;
    }
    if (f->replaced())
      r.warnings.push_back(f->path() + " names another file than when it was read (replaced); the file that was read was loaded.");
    if (opts.zero_copy() && f->pread_only())
      r.warnings.push_back("zero_copy: " + f->path() +
                           " was read without ReadOptions::map_tensors(true), so the parameters got copies of its bytes, not views.");
  }
  ProgressSink progress(opts.progress(), r.warnings);
  std::vector<std::string> written;
  try {
    apply(targets, copies, opts.zero_copy(), owned.has_value(), progress, written);
    // A change during the copies may have mixed old and new bytes (a mapped checkpoint's copies
    // read its pages, others read the file). Say so rather than report success.
    for (const MappedFile* f : files) {
      const std::string why = f->change();
      if (!why.empty()) throw Error("file.changed", f->path(), "", why + " while the load copied from it");
    }
    r.applied = true;
  } catch (const Error& e) {
    r.error = e.what();
    r.error_id = e.id();
    r.written = std::move(written);
    r.loaded = r.written.size();
  } catch (const std::exception& e) {
    r.error = e.what();
    r.error_id = "load.apply";
    r.written = std::move(written);
    r.loaded = r.written.size();
  }
  return r;
}

}  // namespace detail

STATEDICT_FUNC LoadReport diff(const Checkpoint& target, const Checkpoint& source, const LoadOptions& options) {
  LoadReport r;
  r.dry_run = true;
  r.module_name = target.path();
  std::vector<detail::Target> targets;
  for (auto& t : detail::lazy_tensors(target.root())) targets.push_back({t.key, t.tensor});  // shapes and dtypes only
  try {
    detail::plan(targets, source, options, r);
  } catch (const Error& e) {
    r.error = e.what();
    r.error_id = e.id();
  }
  return r;
}

}  // namespace statedict
#endif  // STATEDICT_DEFINITIONS

#undef STATEDICT_CHECK_MODULE
