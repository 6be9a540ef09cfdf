#pragma once
// statedict::load and statedict::diff: a checkpoint into a torch::nn::Module, checked first,
// applied only when the whole load is acceptable.
#include <statedict/checkpoint.hpp>
#include <statedict/detail/match.hpp>
#include <statedict/options.hpp>
#include <statedict/read.hpp>
#include <statedict/report.hpp>

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <type_traits>

namespace statedict {

namespace detail {

inline torch::nn::Module& as_module(torch::nn::Module& m) { return m; }
template <class T> torch::nn::Module& as_module(const std::shared_ptr<T>& p) { return *p; }
template <class T> torch::nn::Module& as_module(torch::nn::ModuleHolder<T>& h) { return *h.ptr(); }
template <class T> torch::nn::Module& as_module(const torch::nn::ModuleHolder<T>& h) { return *h.ptr(); }

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

/// The mapped file a tensor aliases, if it came from statedict::read's mapping.
inline const MappedFile* mapped_file_of(const at::Tensor& t) {
  const c10::DataPtr& dp = t.storage().data_ptr();
  if (dp.get_deleter() != &delete_file_ref) return nullptr;
  return static_cast<std::shared_ptr<MappedFile>*>(dp.get_context())->get();
}

/// pread straight into the destination: one copy, from the page cache, without touching the mapping.
inline bool pread_into(const MappedFile& f, const at::Tensor& src, at::Tensor& dst) {
  return f.read_at(dst.data_ptr(), static_cast<std::size_t>(dst.numel()) * dst.element_size(),
                   static_cast<std::uint64_t>(static_cast<const std::uint8_t*>(src.data_ptr()) - f.data()));
}

/// Writes the planned copies. Runs only after every check passed. `owns_source`: the checkpoint was
/// read by this load and nobody else holds it, so its bytes are the file's and may be read with
/// pread, and its mapping released as it is consumed.
inline void apply(const std::vector<Target>& targets, const std::vector<Copy>& copies, bool zero_copy, bool owns_source) {
  torch::NoGradGuard no_grad;
  for (const auto& c : copies) {
    at::Tensor dst = targets[c.target].tensor;
    const at::Tensor source = c.get();  // a lazy source reads its bytes here, one tensor at a time
    const bool same_layout =
        dst.device().is_cpu() && source.scalar_type() == dst.scalar_type() && source.is_contiguous() && source.sizes().equals(dst.sizes());
    const bool aligned = reinterpret_cast<std::uintptr_t>(source.data_ptr()) % std::min<std::size_t>(source.element_size(), 16) == 0;
    if (zero_copy && same_layout && aligned) {
      dst.set_data(source);
      continue;
    }
    const MappedFile* file = owns_source ? mapped_file_of(source) : nullptr;
    if (file != nullptr && same_layout && dst.is_contiguous() && pread_into(*file, source, dst)) continue;
    dst.copy_(source);
    if (file != nullptr && source.is_contiguous())  // a strided shard shares its pages with other ranks' rows
      file->release(static_cast<std::size_t>(static_cast<const std::uint8_t*>(source.data_ptr()) - file->data()),
                    static_cast<std::size_t>(source.numel()) * source.element_size());
  }
}

inline LoadReport run(torch::nn::Module& m, const Checkpoint* ck, const std::string& path, const LoadOptions& opts, bool dry_run) {
  LoadReport r;
  r.module_name = module_display_name(m.name());
  r.dry_run = dry_run;
  r.file = ck != nullptr ? ck->path() : path;
  std::optional<Checkpoint> owned;
  if (ck == nullptr) {
    try {
      ReadOptions ro = opts.read_options();
      ro.alias_misaligned(true);  // its bytes are read with pread below, never through a misaligned pointer
      owned = statedict::read(path, ro);
      ck = &*owned;
    } catch (const Error& e) {
      r.error = e.what();
      r.error_id = e.id();
      return r;
    }
  }
  const std::vector<Target> targets = module_targets(m);
  std::vector<Copy> copies;
  try {
    copies = plan(targets, *ck, opts, r);
  } catch (const Error& e) {
    r.error = e.what();
    r.error_id = e.id();
    return r;
  }
  if (r.ok() && !dry_run) {
    apply(targets, copies, opts.zero_copy(), owned.has_value());
    r.applied = true;
  }
  return r;
}

}  // namespace detail

/// Loads a checkpoint file into a module: a torch::nn::Module&, a TORCH_MODULE holder or a
/// std::shared_ptr to a module. Never throws for file, key, shape or dtype problems: the report says
/// what went wrong, and a load that fails leaves the module bit-for-bit unchanged.
template <class M> LoadReport load(M&& module, const std::string& path, const LoadOptions& options = {}) {
  return detail::run(detail::as_module(module), nullptr, path, options, false);
}
/// Loads from a checkpoint already read.
template <class M> LoadReport load(M&& module, const Checkpoint& checkpoint, const LoadOptions& options = {}) {
  return detail::run(detail::as_module(module), &checkpoint, checkpoint.path(), options, false);
}

/// A dry run: the report load() would give, without touching the module.
template <class M> LoadReport diff(M&& module, const std::string& path, const LoadOptions& options = {}) {
  return detail::run(detail::as_module(module), nullptr, path, options, true);
}
template <class M> LoadReport diff(M&& module, const Checkpoint& checkpoint, const LoadOptions& options = {}) {
  return detail::run(detail::as_module(module), &checkpoint, checkpoint.path(), options, true);
}

/// The report of loading `source` into something whose state dict is `target` (another checkpoint):
/// what `statedict diff TARGET SOURCE` prints.
inline LoadReport diff(const Checkpoint& target, const Checkpoint& source, const LoadOptions& options = {}) {
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
