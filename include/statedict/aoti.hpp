#pragma once
// AOTInductor packages as load/diff targets: a torch::inductor::AOTIModelPackageLoader (what runs a
// .pt2 from torch._inductor.aoti_compile_and_package in C++) is loaded like a module. Its targets are
// the package's updatable constants (get_constant_fqns(), with the shapes and dtypes of the runner's
// constants map). A checkpoint tensor the package cannot take, because AOTInductor compiled it into
// the package's code at export, is unexpected, and the report says why. The load writes the
// package's inactive constant buffer and swaps it in only when every check passed and every copy
// succeeded: a failed load leaves the constants the package runs with bit for bit unchanged, and
// runs on other threads see the old constants or the new ones, never a mix.
//
// Only where the LibTorch has AOTInductor's package loader (LibTorch 2.14 here; 2.6's runner cannot
// list its constants' shapes). Not included by <statedict/statedict.hpp>: include it yourself.
#include <statedict/detail/compat.hpp>

// clang-format off
#if !__has_include(<torch/csrc/inductor/aoti_package/model_package_loader.h>)
#error "statedict/aoti.hpp needs LibTorch's AOTInductor package loader (torch/csrc/inductor/aoti_package/model_package_loader.h), which this LibTorch does not have; AOTI packages as load targets need LibTorch 2.14 or newer"
#elif !STATEDICT_TORCH_AT_LEAST(2, 14)
#error "statedict/aoti.hpp needs LibTorch 2.14 or newer (the version its AOTI support is tested with; 2.6's runner cannot list its constants' shapes); this LibTorch is older"
#else
// clang-format on
// (The rest only where it compiles: the #error above is then the one message a user sees.)

#include <statedict/load.hpp>

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <algorithm>
#include <exception>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace statedict {

namespace detail {

inline constexpr const char* kAotiName = "AOTInductor package";

/// The runner of a loader; LibTorch's loader always makes one, but a null one must not crash a load.
inline torch::inductor::AOTIModelContainerRunner& aoti_runner(torch::inductor::AOTIModelPackageLoader& loader) {
  torch::inductor::AOTIModelContainerRunner* runner = loader.get_runner();
  if (runner == nullptr) throw Error("aoti.package", "", "", "the AOTIModelPackageLoader has no model runner");
  return *runner;
}

/// The package's updatable constants in the active (or inactive) buffer, sorted by FQN (the runner
/// keeps them unordered). The tensors alias the buffer. Constants the runner folds from others at
/// run time are not among them: it computes them again after a swap.
inline std::vector<Target> aoti_targets(torch::inductor::AOTIModelPackageLoader& loader, bool use_inactive) {
  const auto map = aoti_runner(loader).extract_constants_map(use_inactive);
  std::vector<std::string> fqns = loader.get_constant_fqns();
  std::sort(fqns.begin(), fqns.end());
  fqns.erase(std::unique(fqns.begin(), fqns.end()), fqns.end());
  std::vector<Target> out;
  out.reserve(fqns.size());
  for (const auto& fqn : fqns) {
    const auto it = map.find(fqn);
    if (it != map.end() && it->second.defined()) out.push_back({fqn, it->second});
  }
  return out;
}

/// Says why each unexpected checkpoint key that failed (or was reported by) the load is one: the
/// package has no constant for it, so a new value cannot reach the compiled model. Where a plain
/// loop over get_constant_fqns() would leave the fine-tuned value out without a word, the report
/// names it, beside PyTorch's "Unexpected key(s)" line.
inline void explain_unexpected(LoadReport& r, const std::vector<Target>& targets) {
  const auto untolerated = [&r](const std::string& k) { return std::find(r.tolerated.begin(), r.tolerated.end(), k) == r.tolerated.end(); };
  // While a constant is missing too, the unexpected keys may be its tensors under other names (a
  // prefix, a rename): the suggestions say so, and this explanation waits until the names fit.
  if (std::any_of(r.missing.begin(), r.missing.end(), untolerated)) return;
  std::vector<std::string> keys;
  for (const auto& k : r.unexpected)
    if (untolerated(k)) keys.push_back(k);
  if (keys.empty()) return;
  std::vector<std::string> constants;
  for (const auto& t : targets) constants.push_back(t.key);
  const std::string why = "the AOTInductor package cannot take " + quoted_list(keys, true) + ": not among its " +
                          std::to_string(constants.size()) + " updatable constants (" + quoted_list(constants, true) +
                          "). AOTInductor folded such a tensor into the package's compiled code at export (or the exported "
                          "model has no such tensor), so its value here cannot be loaded: the package keeps the one it was "
                          "exported with. Export and compile the model again to change it; or, where the exported value is the one "
                          "wanted, leave these keys aside by name with ignore_unexpected.";
  auto after_unexpected = [&](std::vector<std::string>& lines) {
    const auto it = std::find_if(lines.begin(), lines.end(), [](const std::string& l) { return l.rfind("Unexpected key(s)", 0) == 0; });
    if (it == lines.end()) return false;
    lines.insert(it + 1, why);
    return true;
  };
  if (!after_unexpected(r.errors) && !after_unexpected(r.warnings)) r.warnings.push_back(why);
}

/// A package's unexpected keys are, once the names fit, tensors it compiled into its code: a fix that
/// leaves them aside (ignore_unexpected, or a relaxed policy) makes the load pass while the package
/// runs on with the exported values, which are wrong wherever the checkpoint fine-tuned them. Such
/// fixes are not offered; the report's explanation names the keys and says how to keep them aside
/// on purpose.
inline void drop_ignores_of_unexpected(LoadReport& r, const LoadOptions& user) {
  auto& s = r.suggestions;
  s.erase(std::remove_if(s.begin(), s.end(),
                         [&](const Suggestion& x) {
                           return x.options && (x.options->ignore_unexpected().size() > user.ignore_unexpected().size() ||
                                                x.options->unexpected() != user.unexpected());
                         }),
          s.end());
}

/// load() and diff() into a package. A load plans against the active constants first (a dry run:
/// nothing is written when the checks fail), then fills the inactive buffer with the active
/// constants, writes the checkpoint's tensors into it and swaps it in.
inline LoadReport aoti_run(torch::inductor::AOTIModelPackageLoader& loader, const Checkpoint* ck, const std::string& path,
                           const LoadOptions& options, bool dry_run) {
  LoadReport r;
  r.module_name = kAotiName;
  r.dry_run = dry_run;
  r.file = ck != nullptr ? ck->path() : path;
  std::vector<Target> active;
  try {
    active = aoti_targets(loader, false);
  } catch (const Error& e) {
    r.error_id = e.id();
    r.error = e.what();
    return r;
  } catch (const std::exception& e) {
    r.error_id = "aoti.package";
    r.error = std::string("the package's constants could not be listed: ") + e.what();
    return r;
  }
  LoadOptions opts = options;
  std::string zero_copy_note;
  if (options.zero_copy()) {  // the package copies into its own buffer: there is nothing to alias
    opts.zero_copy(false);
    zero_copy_note = "zero_copy: an AOTInductor package keeps its constants in its own buffers; they were copied, not mapped.";
  }
  // Read once for both passes.
  std::optional<Checkpoint> owned;
  if (ck == nullptr) {
    try {
      owned = statedict::read(path, opts.read_options());
      ck = &*owned;
    } catch (const Error& e) {
      r.error_id = e.id();
      r.error = e.what();
      return r;
    }
  }
  LoadReport planned = run(active, kAotiName, ck, path, opts, /*dry_run=*/true);
  drop_ignores_of_unexpected(planned, opts);
  explain_unexpected(planned, active);
  if (!zero_copy_note.empty()) planned.warnings.push_back(zero_copy_note);
  if (dry_run || !planned.ok()) {
    planned.dry_run = dry_run;
    return planned;
  }

  // The inactive buffer starts as a copy of the active one (what the checkpoint does not cover stays
  // as it is); the checkpoint's tensors are then written straight into it.
  torch::inductor::AOTIModelContainerRunner* runner = nullptr;
  std::vector<Target> inactive;
  try {
    runner = &aoti_runner(loader);
    std::unordered_map<std::string, at::Tensor> current;
    for (const auto& t : active) current.emplace(t.key, t.tensor);
    loader.load_constants(current, /*use_inactive=*/true, /*check_full_update=*/true);
    inactive = aoti_targets(loader, true);
    if (inactive.size() != active.size())
      throw std::runtime_error("the inactive buffer holds " + std::to_string(inactive.size()) + " constants, the active one " +
                               std::to_string(active.size()));
    for (std::size_t i = 0; i < active.size(); ++i)
      if (inactive[i].key != active[i].key || !inactive[i].tensor.sizes().equals(active[i].tensor.sizes()) ||
          inactive[i].tensor.scalar_type() != active[i].tensor.scalar_type())
        throw std::runtime_error("the inactive buffer's " + inactive[i].key + " differs from the active one");
  } catch (const std::exception& e) {
    planned.dry_run = false;
    planned.loaded = 0;
    planned.error_id = "aoti.load_constants";
    planned.error = std::string("the package's inactive constant buffer could not be prepared (") + e.what() +
                    "); the package's constants are unchanged";
    return planned;
  }
  r = run(inactive, kAotiName, ck, path, opts, /*dry_run=*/false);
  drop_ignores_of_unexpected(r, opts);
  explain_unexpected(r, inactive);
  if (!zero_copy_note.empty()) r.warnings.push_back(zero_copy_note);
  if (!r.applied) {  // whatever was written went to the inactive buffer, which is not swapped in
    r.written.clear();
    r.loaded = 0;
    if (!r.error.empty()) r.error += "; the package's constants are unchanged (the copies went to its inactive buffer)";
    return r;
  }
  runner->swap_constant_buffer();  // under the runner's lock: a run sees the old constants or the new
  return r;
}

}  // namespace detail

/// The package's updatable constants under their FQNs, sorted, as the package runs with them now
/// (its active buffer). The tensors alias the package's memory: read them, load into them with
/// statedict::load.
inline std::vector<NamedTensor> state_dict(torch::inductor::AOTIModelPackageLoader& loader) {
  std::vector<NamedTensor> out;
  for (auto& t : detail::aoti_targets(loader, false)) out.push_back({std::move(t.key), std::move(t.tensor)});
  return out;
}

/// Loads a checkpoint file into an AOTInductor package: its constants of the same FQN (after the
/// options' key rules), checked, cast and copied as for a module. Never throws for file, key, shape
/// or dtype problems: the report says what went wrong, and a load that fails leaves the package's
/// constants bit-for-bit unchanged. The previous constants stay in the package's inactive buffer
/// (get_runner()->swap_constant_buffer() goes back to them). One load into a package at a time;
/// other threads may run it meanwhile.
inline LoadReport load(torch::inductor::AOTIModelPackageLoader& loader, const std::string& path, const LoadOptions& options = {}) {
  return detail::aoti_run(loader, nullptr, path, options, false);
}
/// Loads from a checkpoint already read.
inline LoadReport load(torch::inductor::AOTIModelPackageLoader& loader, const Checkpoint& checkpoint, const LoadOptions& options = {}) {
  return detail::aoti_run(loader, &checkpoint, checkpoint.path(), options, false);
}

/// A dry run: the report load() would give, without touching the package.
inline LoadReport diff(torch::inductor::AOTIModelPackageLoader& loader, const std::string& path, const LoadOptions& options = {}) {
  return detail::aoti_run(loader, nullptr, path, options, true);
}
inline LoadReport diff(torch::inductor::AOTIModelPackageLoader& loader, const Checkpoint& checkpoint, const LoadOptions& options = {}) {
  return detail::aoti_run(loader, &checkpoint, checkpoint.path(), options, true);
}

}  // namespace statedict
#endif  // LibTorch has AOTInductor
