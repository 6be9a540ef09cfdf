#pragma once
// statedict::LoadOptions: how checkpoint keys are matched to a module and what counts as a failure.
#include <statedict/detail/config.hpp>
#include <statedict/detail/match/regex.hpp>
#include <statedict/error.hpp>
#include <statedict/read_options.hpp>
#include <statedict/transforms.hpp>

#include <cstdint>
#include <functional>
#include <optional>

#include <string>
#include <utility>
#include <vector>

namespace statedict {

/// What to do about one kind of difference between checkpoint and module.
enum class Policy {
  error,   ///< the load fails and the module stays unchanged
  warn,    ///< reported; the load goes on (a mismatched tensor is skipped, a dtype is cast)
  ignore,  ///< as warn, but not flagged as a warning in the printed report
};

/// One key transformation, applied to checkpoint keys in the order the options were given.
struct KeyRule {
  enum class Kind { strip_prefix, add_prefix, rename, strip_segment } kind;
  std::string pattern;      // the prefix, the segment, or the regular expression (ECMAScript)
  std::string replacement;  // rename only
  /// rename only: what compiles `pattern` (std::regex, set by LoadOptions::rename). Unset in the
  /// literal renames statedict's suggestions make ("^" + an escaped key, optionally "$"), which are
  /// applied as plain string compares with the same result.
  detail::Rewrite (*compile)(const std::string& pattern, const std::string& replacement) = nullptr;
  /// The option as a user writes it: strip_prefix("module."), rename("^fc\\.", "head.").
  std::string text() const {
    switch (kind) {
    case Kind::strip_prefix:
      return "strip_prefix(\"" + pattern + "\")";
    case Kind::add_prefix:
      return "add_prefix(\"" + pattern + "\")";
    case Kind::rename:
      return "rename(\"" + pattern + "\", \"" + replacement + "\")";
    case Kind::strip_segment:
      return "strip_segment(\"" + pattern + "\")";
    }
    return {};
  }
};

/// Renames of the last component(s) of a key that go together on one parent (LayerNorm's legacy
/// gamma/beta for weight/bias). A family renames the keys of a parent only where the checkpoint
/// has every old name of the family under it and none of the new ones, and (in a load) only keys
/// that match no module key into keys the module has: a LayerScale parameter really named `gamma`
/// stays `gamma`.
struct RenameFamily {
  std::string name;                                          ///< for the report: "layer_norm"
  std::vector<std::pair<std::string, std::string>> renames;  ///< checkpoint's last component(s) -> the module's
  /// The built-in families legacy_names() adds: LayerNorm gamma/beta -> weight/bias; weight_norm's
  /// weight_g/weight_v -> parametrizations.weight.original0/original1 (torch 2.x), and back.
  static std::vector<RenameFamily> legacy() {
    return {{"layer_norm", {{"gamma", "weight"}, {"beta", "bias"}}},
            {"weight_norm", {{"weight_g", "parametrizations.weight.original0"}, {"weight_v", "parametrizations.weight.original1"}}},
            {"weight_norm_old", {{"parametrizations.weight.original0", "weight_g"}, {"parametrizations.weight.original1", "weight_v"}}}};
  }
};

class LoadOptions;
namespace detail {
inline void add_rule(LoadOptions& o, KeyRule rule);
}

/// Options for statedict::load and statedict::diff, with fluent setters in LibTorch's style:
///
///     statedict::LoadOptions{}.select("model").strip_prefix("module.").lenient()
///
/// The defaults are strict (every missing, unexpected, mis-shaped tensor fails the load), with two
/// exceptions that match what PyTorch users expect: dtypes are cast to the module's (each cast is
/// reported, lossy ones fail), and missing BatchNorm `num_batches_tracked` buffers are only listed.
class LoadOptions {
public:
  /// Take the tensors under this dotted path of the checkpoint ("model", "state_dict", "ema").
  LoadOptions& select(std::string path) {
    select_ = std::move(path);
    return *this;
  }
  /// Pick the sub-tree whose tensor keys best fit the module; the report says which.
  LoadOptions& auto_select(bool on = true) {
    auto_select_ = on;
    return *this;
  }
  /// Load one part of a larger model: only the checkpoint keys under this prefix ("backbone." or
  /// "backbone") take part, with the prefix removed; the others are left aside, not unexpected.
  /// Applies after select/auto_select and before the key rules; report keys are relative to it.
  LoadOptions& submodule(std::string prefix) {
    if (!prefix.empty() && prefix.back() != '.') prefix += '.';
    submodule_ = std::move(prefix);
    return *this;
  }
  /// Remove a prefix from checkpoint keys that have it ("module.", "_orig_mod."). Repeatable.
  LoadOptions& strip_prefix(std::string prefix) {
    rules_.push_back({KeyRule::Kind::strip_prefix, std::move(prefix), {}, nullptr});
    return *this;
  }
  /// Put a prefix in front of every checkpoint key ("backbone."). Repeatable.
  LoadOptions& add_prefix(std::string prefix) {
    rules_.push_back({KeyRule::Kind::add_prefix, std::move(prefix), {}, nullptr});
    return *this;
  }
  /// std::regex_replace on checkpoint keys (ECMAScript syntax), in order with the prefix rules.
  LoadOptions& rename(std::string regex, std::string replacement) {
    rules_.push_back({KeyRule::Kind::rename, std::move(regex), std::move(replacement), &detail::compile_regex});
    return *this;
  }
  /// Remove a path segment wherever it stands in checkpoint keys, at the start or after a dot
  /// ("_checkpoint_wrapped_module.", "_fsdp_wrapped_module.", "_orig_mod." of a compiled
  /// submodule). In order with the other key rules. Repeatable.
  LoadOptions& strip_segment(std::string segment) {
    if (!segment.empty() && segment.back() != '.') segment += '.';
    rules_.push_back({KeyRule::Kind::strip_segment, std::move(segment), {}, nullptr});
    return *this;
  }
  /// Renames that go together on one parent (see RenameFamily), applied after the key rules.
  LoadOptions& rename_family(RenameFamily family) {
    families_.push_back(std::move(family));
    return *this;
  }
  /// The well-known legacy parameter names as ready renames (RenameFamily::legacy()): LayerNorm
  /// gamma/beta, weight_norm's weight_g/weight_v <-> parametrizations.weight.original0/1.
  LoadOptions& legacy_names() {
    for (auto& f : RenameFamily::legacy()) families_.push_back(std::move(f));
    return *this;
  }
  /// Fill module key `module_key` from checkpoint tensor `checkpoint_key` (tied weights: a file that
  /// keeps one name of a shared tensor, such as `lm_head.weight` saved only as the input embedding
  /// `transformer.wte.weight`). `checkpoint_key` is the key after the key rules, or as it stands in
  /// the checkpoint (relative to select and submodule). The module key gets a copy of its own; the
  /// checkpoint tensor still fills the key it matches. The report's `rule` says tie(...). Repeatable.
  LoadOptions& tie(std::string module_key, std::string checkpoint_key) {
    ties_.push_back({std::move(module_key), std::move(checkpoint_key)});
    return *this;
  }
  /// Detect and reconcile a consistent prefix difference in either direction (strip, add or both).
  LoadOptions& auto_prefix(bool on = true) {
    auto_prefix_ = on;
    return *this;
  }

  /// Layout transforms (see transforms.hpp and docs/transforms.md), applied in the order given,
  /// after the key rules, to the keys those give. A 2-D tensor stored [in, out] (GPT-2's Conv1D).
  LoadOptions& transpose(std::string key_glob) { return transform({Transform::Kind::transpose, std::move(key_glob), {}, 0}); }
  /// One checkpoint tensor cut along `dim` into module tensors, in equal parts or `sizes`.
  LoadOptions& split(std::string key, std::vector<std::string> parts, std::int64_t dim, std::vector<std::int64_t> sizes = {}) {
    return transform({Transform::Kind::split, std::move(key), std::move(parts), dim, std::move(sizes)});
  }
  /// Checkpoint tensors joined along `dim` into one module tensor; `sizes` (optional, each part's
  /// size along dim) is checked, and lets save cut an uneven merge apart again.
  LoadOptions& merge(std::vector<std::string> parts, std::string key, std::int64_t dim, std::vector<std::int64_t> sizes = {}) {
    return transform({Transform::Kind::merge, std::move(key), std::move(parts), dim, std::move(sizes)});
  }
  /// Numbered checkpoint tensors ("experts.#.w1.weight", # = 0..E-1) stacked along `dim` into one.
  LoadOptions& stack(std::string parts, std::string key, std::int64_t dim = 0) {
    return transform({Transform::Kind::stack, std::move(key), {std::move(parts)}, dim});
  }
  /// One checkpoint tensor taken apart along `dim` into numbered module tensors.
  LoadOptions& unstack(std::string key, std::string parts, std::int64_t dim = 0) {
    return transform({Transform::Kind::unstack, std::move(key), {std::move(parts)}, dim});
  }
  /// Shapes that differ only in size-1 dims: `from` the checkpoint's, `to` the module's, -1 for
  /// each dim carried over: reshape("proj.*.weight", {-1, -1, 1, 1}, {-1, -1}).
  LoadOptions& reshape(std::string key_glob, std::vector<std::int64_t> from, std::vector<std::int64_t> to) {
    return transform({Transform::Kind::reshape, std::move(key_glob), {}, 0, {}, std::move(from), std::move(to)});
  }
  /// Any transform (checked: options.bad_transform when it cannot mean anything).
  LoadOptions& transform(Transform t) {
    t.check();
    transforms_.push_back(std::move(t));
    return *this;
  }

  LoadOptions& missing(Policy p) {
    missing_ = p;
    return *this;
  }
  LoadOptions& unexpected(Policy p) {
    unexpected_ = p;
    return *this;
  }
  LoadOptions& shape_mismatch(Policy p) {
    shape_ = p;
    return *this;
  }
  /// warn (default): cast to the module's dtype and report it; error: any dtype difference fails;
  /// ignore: cast silently.
  LoadOptions& dtype_mismatch(Policy p) {
    dtype_ = p;
    return *this;
  }
  /// Allow casts that lose information (float to int, out-of-range narrowing, complex to real).
  LoadOptions& allow_lossy_cast(bool on = true) {
    lossy_ = on;
    return *this;
  }
  /// Every difference fails the load (the default).
  LoadOptions& strict() {
    missing_ = unexpected_ = shape_ = Policy::error;
    dtype_ = Policy::warn;
    return *this;
  }
  /// Missing, unexpected and mis-shaped tensors are reported and skipped; the load still fails when
  /// nothing at all matches (see min_coverage).
  LoadOptions& lenient() {
    missing_ = unexpected_ = shape_ = dtype_ = Policy::warn;
    return *this;
  }
  /// Module keys matching this glob (`*` any run, `?` one character) may be missing.
  LoadOptions& ignore_missing(std::string glob) {
    ignore_missing_.push_back(std::move(glob));
    return *this;
  }
  /// Checkpoint keys matching this glob may be left unused.
  LoadOptions& ignore_unexpected(std::string glob) {
    ignore_unexpected_.push_back(std::move(glob));
    return *this;
  }
  /// Share of the module's tensors that must be loaded, 0 to 1. Whatever this says, a load that
  /// matches nothing fails.
  LoadOptions& min_coverage(double fraction) {
    min_coverage_ = fraction;
    return *this;
  }
  /// Let a missing `num_batches_tracked` fail the load like any other missing key.
  LoadOptions& require_num_batches_tracked(bool on = true) {
    require_nbt_ = on;
    return *this;
  }
  /// Make CPU parameters alias the file's copy-on-write mapping instead of copying, where dtype,
  /// layout and alignment allow (like PyTorch's mmap=True, assign=True).
  LoadOptions& zero_copy(bool on = true) {
    zero_copy_ = on;
    return *this;
  }
  /// Tensor parallelism: for module keys matching `key_glob`, the module holds rank `rank`'s slice
  /// (of `world`) of the checkpoint tensor along `dim`, cut as torch.chunk and DTensor's Shard(dim)
  /// cut it (the first ranks get the larger pieces; a rank past the last piece gets an empty one).
  /// Repeatable; the first rule whose glob matches a key applies. A negative dim counts from the end.
  LoadOptions& shard(std::string key_glob, std::int64_t dim, std::int64_t rank, std::int64_t world) {
    if (world < 1 || rank < 0 || rank >= world)
      throw Error("options.bad_shard", "", "shard(\"" + key_glob + "\")",
                  "rank " + std::to_string(rank) + " of " + std::to_string(world) + " is not a rank (need 0 <= rank < world)");
    shards_.push_back({std::move(key_glob), dim, rank, world});
    return *this;
  }
  /// Threads that write the module: they take tensors, and pieces of at most 8 MiB of large ones,
  /// in file order. 0 (the default): the CPUs the process may run on (its affinity mask; fewer if
  /// OMP_NUM_THREADS says so), at most 4, for a load that copies at least 16 MiB, else the calling
  /// thread alone. LibTorch's at::get_num_threads() is not asked (its first call on a thread
  /// restarts LibTorch's thread pool, which then spins beside the load); a program that limits
  /// LibTorch with torch::set_num_threads() sets this too. 1: the calling thread alone. The
  /// calling thread is always one of them.
  LoadOptions& threads(int n) {
    if (n < 0) throw Error("options.bad_threads", "", "threads(" + std::to_string(n) + ")", "a thread count is 0 (automatic) or more");
    threads_ = n;
    return *this;
  }
  /// How tensors are read into CPU parameters: true, with pread into a 256 KiB buffer each thread
  /// reuses, then memcpy; false, with pread straight into the parameter (one copy). Unset (the
  /// default): each load tries both on its first large read and keeps the buffer only if it is at
  /// least twice as fast (on some virtual machines the kernel's first write into each page of fresh
  /// memory is slow; see docs/performance.md).
  LoadOptions& buffered_reads(bool on) {
    buffered_ = on;
    return *this;
  }
  /// Called while a load writes the module: bytes copied so far and the total, once with 0 before
  /// the first tensor, after each job the calling thread ran (a tensor, a piece of a large one, or
  /// small ones read together), and once at the end (a dry run never calls it). It runs on the thread that called load, so it may print or
  /// update a bar but must not touch the module. A callback that throws is not called again; the
  /// load goes on and its report warns.
  LoadOptions& progress(std::function<void(std::uint64_t done, std::uint64_t total)> f) {
    progress_ = std::move(f);
    return *this;
  }
  /// Limits for reading the file.
  LoadOptions& read_options(ReadOptions r) {
    read_ = r;
    return *this;
  }

  /// The options as a recipe file (docs/transforms.md#the-recipe-file): versioned JSON with the
  /// sub-tree, key rules, transforms, policies, ignore globs and shards. Progress, threads,
  /// zero_copy, buffered_reads and read_options are how one program runs, and are not written.
  STATEDICT_FUNC std::string to_json() const;
  /// Writes to_json() to a file, atomically.
  STATEDICT_FUNC void to_json_file(const std::string& path) const;
  /// Options from a recipe file's text; options.bad_file names `file` and the JSON pointer of what
  /// is wrong (an unknown member, a value of the wrong type, a transform that cannot be).
  STATEDICT_FUNC static LoadOptions from_json(const std::string& text, const std::string& file = "");
  /// Options from a recipe file: what `statedict diff ... --write-options FILE` wrote.
  STATEDICT_FUNC static LoadOptions from_json_file(const std::string& path);

  const std::string& select() const { return select_; }
  bool auto_select() const { return auto_select_; }
  const std::string& submodule() const { return submodule_; }
  const std::vector<KeyRule>& rules() const { return rules_; }
  const std::vector<Transform>& transforms() const { return transforms_; }
  bool auto_prefix() const { return auto_prefix_; }
  Policy missing() const { return missing_; }
  Policy unexpected() const { return unexpected_; }
  Policy shape_mismatch() const { return shape_; }
  Policy dtype_mismatch() const { return dtype_; }
  bool allow_lossy_cast() const { return lossy_; }
  const std::vector<std::string>& ignore_missing() const { return ignore_missing_; }
  const std::vector<std::string>& ignore_unexpected() const { return ignore_unexpected_; }
  double min_coverage() const { return min_coverage_; }
  bool require_num_batches_tracked() const { return require_nbt_; }
  bool zero_copy() const { return zero_copy_; }
  int threads() const { return threads_; }
  const std::optional<bool>& buffered_reads() const { return buffered_; }
  const ReadOptions& read_options() const { return read_; }
  const std::function<void(std::uint64_t, std::uint64_t)>& progress() const { return progress_; }
  struct Shard {
    std::string glob;
    std::int64_t dim, rank, world;
  };
  const std::vector<Shard>& shards() const { return shards_; }
  struct Tie {
    std::string module_key, checkpoint_key;
  };
  const std::vector<Tie>& ties() const { return ties_; }
  const std::vector<RenameFamily>& rename_families() const { return families_; }

private:
  friend void detail::add_rule(LoadOptions& o, KeyRule rule);
  std::string select_;
  bool auto_select_ = false;
  std::string submodule_;
  std::vector<KeyRule> rules_;
  std::vector<Transform> transforms_;
  bool auto_prefix_ = false;
  Policy missing_ = Policy::error, unexpected_ = Policy::error, shape_ = Policy::error, dtype_ = Policy::warn;
  bool lossy_ = false;
  std::vector<std::string> ignore_missing_, ignore_unexpected_;
  double min_coverage_ = 0.0;
  bool require_nbt_ = false;
  bool zero_copy_ = false;
  int threads_ = 0;
  std::optional<bool> buffered_;
  std::function<void(std::uint64_t, std::uint64_t)> progress_;
  ReadOptions read_;
  std::vector<Shard> shards_;
  std::vector<Tie> ties_;
  std::vector<RenameFamily> families_;
};

namespace detail {
/// Appends a key rule as it is: how statedict's own suggestions add their literal renames.
inline void add_rule(LoadOptions& o, KeyRule rule) { o.rules_.push_back(std::move(rule)); }
}  // namespace detail

}  // namespace statedict

// The recipe file's reader needs the key machinery (detail/match/keys.hpp), which includes this
// header: where keys.hpp comes first, it includes options_file.hpp at its own end instead.
#if STATEDICT_DEFINITIONS && !defined(STATEDICT_DETAIL_KEYS_FIRST)
#include <statedict/detail/options_file.hpp>
#endif
