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
      if (b.value().defined()) out.push_back({prefix + b.key(), b.value(), true});
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
#include <statedict/detail/apply/apply.hpp>
#include <statedict/detail/match/plan.hpp>

namespace statedict {

namespace detail {

STATEDICT_FUNC LoadReport run(const std::vector<Target>& targets, std::string name, const Checkpoint* ck, const std::string& path,
                              const LoadOptions& opts, bool dry_run) {
  LoadReport r;
  r.module_name = std::move(name);
  r.dry_run = dry_run;
  r.file = ck != nullptr ? ck->path() : path;
  std::optional<Checkpoint> owned;
  const bool have = ck != nullptr || recorded(r, [&] {
                      ReadOptions ro = opts.read_options();
                      ro.alias_misaligned(true);  // its bytes are read with pread below, never through a misaligned pointer
                      if (opts.zero_copy()) ro.map_tensors(true);  // parameters alias the file's pages: asked for
                      owned = statedict::read(path, ro);
                      ck = &*owned;
                    });
  std::vector<Copy> copies;
  if (!have || !recorded(r, [&] { copies = plan(targets, *ck, opts, r); })) return r;
  if (opts.zero_copy()) {  // zero-copy maps CPU parameters only: say so for the others
    std::size_t elsewhere = 0;
    std::string device;
    for (const auto& c : copies)
      if (!targets[c.target].tensor.device().is_cpu()) {
        ++elsewhere;
        device = targets[c.target].tensor.device().str();
      }
    if (elsewhere > 0)
      r.warnings.push_back("zero_copy: " + std::to_string(elsewhere) + " of the module's tensors are not on the CPU (" + device +
                           "); they are copied, not mapped.");
  }
  if (!r.ok() || dry_run) return r;
  // The file must still be what was read: torch.save rewrites in place, and a shrunk file's pages
  // cannot be read (SIGBUS through a mapping). A file replaced by rename is fine: we hold the old one.
  const std::vector<const MappedFile*> files = files_of(copies);
  for (const MappedFile* f : files) {
    const std::string why = f->change();
    if (!why.empty()) {
      record(r, Error("file.changed", f->path(), "", why + "; the module was not changed"));
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
    apply(targets, copies, opts.zero_copy(), owned.has_value(), opts.threads(), opts.buffered_reads(), progress, written);
    // A change during the copies may have mixed old and new bytes (a mapped checkpoint's copies
    // read its pages, others read the file). Say so rather than report success.
    for (const MappedFile* f : files) {
      const std::string why = f->change();
      if (!why.empty()) throw Error("file.changed", f->path(), "", why + " while the load copied from it");
    }
    r.applied = true;
  } catch (const Error& e) { record(r, e); } catch (const std::exception& e) {
    record(r, "load.apply", e.what());
  }
  if (!r.applied) {  // what was written before the failure
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
  detail::recorded(r, [&] { detail::plan(targets, source, options, r); });
  return r;
}

}  // namespace statedict
#endif  // STATEDICT_DEFINITIONS

#undef STATEDICT_CHECK_MODULE
