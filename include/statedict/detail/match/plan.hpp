#pragma once
// The matcher: plans a load of a checkpoint into a module's tensors, in the stages a reader can hold
// in mind one at a time: (1) choose the sub-tree, (2) apply the key rules, (3) reconcile prefixes,
// (3b) apply the layout transforms (transforms.hpp), (4) pair the keys and check shapes and dtypes, (5) apply the policies, (6) advise
// (suggest.hpp). Each stage is one method of Planner; a new check on a pair goes in pair_one, a new policy in apply_policies, a new report
// field where its stage fills the report.
#include <statedict/checkpoint.hpp>
#include <statedict/detail/dtypes.hpp>
#include <statedict/detail/match/keys.hpp>
#include <statedict/detail/match/suggest.hpp>
#include <statedict/detail/match/target.hpp>
#include <statedict/detail/match/transforms.hpp>
#include <statedict/options.hpp>
#include <statedict/report.hpp>

#include <ATen/ATen.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace statedict::detail {

/// A planned copy from a checkpoint tensor into a target.
struct Copy {
  std::size_t target;
  at::Tensor source;                       // or, when lazy is set, a placeholder of its shape and dtype
  std::shared_ptr<const LazyTensor> lazy;  // made when applied (a DCP tensor, or the chunks of it a shard overlaps)
  bool slice = false;                      // a tensor-parallel rank's part of the checkpoint tensor
  bool own = false;                        // a tie: bytes of its own, never the file's memory (zero_copy would tie the tensors)
  at::Tensor get() const { return lazy ? lazy->get() : source; }
};

/// The one way a failure reaches a report: its message and its statedict error id.
inline void record(LoadReport& r, std::string id, std::string message) {
  r.error_id = std::move(id);
  r.error = std::move(message);
}
inline void record(LoadReport& r, const Error& e) { record(r, e.id(), e.what()); }
/// Runs `step`; a statedict::Error it throws is recorded in `r`. Returns whether `step` succeeded.
template <class F> bool recorded(LoadReport& r, F&& step) {
  try {
    step();
    return true;
  } catch (const Error& e) {
    record(r, e);
    return false;
  }
}

/// A cast loses information when it leaves the floating-point family or does not round-trip.
/// `lazy`: makes the source's values, needed only for an integer narrowing (a placeholder has none).
inline bool cast_is_lossy(const at::Tensor& src, c10::ScalarType dst, const LazyTensor* lazy = nullptr, const std::string& key = "tensor") {
  const auto s = src.scalar_type();
  if (s == dst) return false;
  const bool s_float = c10::isFloatingType(s) || c10::isComplexType(s);
  const bool d_float = c10::isFloatingType(dst) || c10::isComplexType(dst);
  if (c10::isComplexType(s) && !c10::isComplexType(dst)) return true;
  if (s_float && !d_float) return true;
  if (s_float && d_float) return false;  // a precision change between float types: expected
  const at::Tensor values = lazy != nullptr ? lazy->get() : readable(src, key);
  return !values.to(dst).to(s).equal(values);
}

/// Rank `rank`'s piece of `n` items split `world` ways as torch.chunk (and DTensor's Shard) splits
/// them: ceil(n / world) each, the last ones shorter or empty. Returns {start, length}.
inline std::pair<std::int64_t, std::int64_t> chunk_range(std::int64_t n, std::int64_t rank, std::int64_t world) {
  const std::int64_t piece = (n + world - 1) / world, start = std::min(rank * piece, n);
  return {start, std::max<std::int64_t>(0, std::min(piece, n - start))};
}

/// The first shard rule whose glob matches a module key.
inline const LoadOptions::Shard* shard_for(const LoadOptions& opts, const std::string& key) {
  for (const auto& sh : opts.shards())
    if (glob_match(sh.glob, key)) return &sh;
  return nullptr;
}

/// Plans a load of `ck` into `targets`: fills the report and returns the copies to make (empty when
/// the report is not ok). Never changes a target. One Planner plans one load.
class Planner {
public:
  Planner(const std::vector<Target>& targets, const Checkpoint& ck, const LoadOptions& opts, LoadReport& r, DryRun dry_run)
      : targets_(targets), ck_(ck), opts_(opts), r_(r), target_set_(keys_of(targets)), advised_{targets, ck, opts, target_set_, dry_run},
        root_(ck.root()) {}

  /// `suggest` off: no suggestions (a dry run made to check one); `usable` receives how many tensors
  /// would load if the policies allowed it (the copies before a failing report clears them).
  std::vector<Copy> run(bool suggest, std::size_t* usable) {
    suggest_ = suggest;
    r_.module_tensors = targets_.size();
    r_.file = ck_.path();
    r_.format = format_name(ck_.format());
    r_.notes = ck_.notes();
    if (!choose_subtree(suggest)) return {};
    keep_submodule();
    if (!recorded(r_, [&] { rewrite_keys(); })) return {};
    reconcile_prefixes();
    rename_families();
    transform();
    pair();
    apply_policies();
    const std::size_t pairable = copies_.size();
    if (usable != nullptr) *usable = pairable;
    // A failed load loads nothing, and its report says so (not "loaded 40 of 40").
    if (!r_.ok()) copies_.clear();
    r_.loaded = copies_.size();
    if (!r_.ok() && is_optimizer_state(root_)) {  // no key rule makes an optimizer's buffers weights: no suggestions
      refuse_optimizer_state();
      return {};
    }
    if (suggest) Advisor(advised_, sources_, keys_, used_, r_).run(pairable);
    return std::move(copies_);
  }

private:
  static std::vector<std::string_view> keys_of(const std::vector<Target>& targets) {
    std::vector<std::string_view> keys;
    keys.reserve(targets.size());
    for (const auto& t : targets) keys.emplace_back(t.key);
    return keys;
  }

  /// 1. The sub-tree that holds the state dict: select()'s, or auto_select()'s pick, or the root.
  /// False when there is none (the report says why).
  bool choose_subtree(bool suggest) {
    if (!opts_.select().empty()) {
      const bool found = recorded(r_, [&] {
        root_ = ck_.at(opts_.select());
        r_.selected = opts_.select();
        r_.selected_by = "select";
      });
      if (!found) {
        if (suggest) advise_select(advised_, r_);  // a dry run checking a fix needs no advice of its own
        return false;
      }
    } else if (opts_.auto_select()) {
      // A sub-tree is taken only when at least half of the module's keys match there (after prefix
      // reconciliation with auto_prefix); an optimizer's state is never a candidate.
      const std::vector<Candidate> all = subtree_alternatives(ck_.root(), target_set_, opts_.auto_prefix());
      const Candidate best = all.empty() ? Candidate{} : all.front();
      const std::string fit = std::to_string(best.score) + " of " + std::to_string(targets_.size()) + " module keys match";
      if (best.score * 2 >= targets_.size() && best.score > 0) {
        const std::string tie = tie_note(all);
        if (!tie.empty() && best.path.empty()) r_.warnings.push_back("auto_select: " + tie);  // else selected_why says it
        if (!best.path.empty()) {
          root_ = ck_.at(best.path);
          r_.selected = best.path;
          r_.selected_by = "auto_select";
          r_.selected_why = fit + " there" + (tie.empty() ? ", the most of any sub-tree" : "; " + tie);
        }
      } else {
        r_.warnings.push_back("auto_select found no sub-tree that fits the module (the best, " +
                              (best.path.empty() ? std::string("the whole checkpoint") : "'" + best.path + "'") + ": " + fit +
                              "; at least half must); the whole checkpoint was used");
      }
    }
    if (!root_.is_dict() && root_.kind() != Kind::object && !root_.is_sequence()) {
      record(r_, "load.not_a_state_dict",
             ck_.path() + ": " + (r_.selected.empty() ? std::string("the checkpoint") : "'" + r_.selected + "'") + " holds a " +
                 root_.type_name() + ", not a state dict");
      return false;
    }
    sources_ = lazy_tensors(root_);
    return true;
  }

  /// Where several sub-trees (or prefixes) fit equally: which auto_select took, by which rule, and
  /// the option that takes each other one. Empty when one fits best.
  std::string tie_note(const std::vector<Candidate>& all) const {
    if (all.size() < 2) return {};
    const auto where = [](const Candidate& c) {
      std::string w = c.path.empty() ? "the top level" : "'" + c.path + "'";
      if (!c.fix.identity()) w += " with " + c.fix.option();
      return w;
    };
    std::string note = std::to_string(all.size()) + " sub-trees fit equally (" + std::to_string(all.front().score) +
                       " module keys each), copies of the model whose values may differ; took " + where(all.front()) +
                       " by the rule for a tie (a name that does not mark an average such as ema or swa first, then the narrower "
                       "sub-tree, then the first in the file)";
    for (std::size_t i = 1; i < all.size(); ++i) note += "; for " + where(all[i]) + " use " + take_text(all[i]);
    return note;
  }
  /// A failed load from an optimizer's state_dict: its own error, not hundreds of key lines.
  void refuse_optimizer_state() {
    const bool sub = !r_.selected.empty();
    record(r_, "load.optimizer_state",
           ck_.path() + ": " + (sub ? "'" + r_.selected + "'" : std::string("the checkpoint")) + " is " + optimizer_state_words() +
               "; load the model's weights instead: the file saved from model.state_dict(), or " +
               (sub ? "the entry of this checkpoint that holds them (statedict inspect lists its top level)"
                    : "the 'model' or 'state_dict' entry of a training checkpoint"));
  }

  /// 1, continued. With submodule(): only the sub-module's keys, relative to it; the rest of the
  /// checkpoint is not this load's.
  void keep_submodule() {
    const std::string& sub = opts_.submodule();
    if (sub.empty()) return;
    const std::string first = sources_.empty() ? std::string() : sources_.front().key;
    std::size_t kept = 0;
    for (std::size_t i = 0; i < sources_.size(); ++i) {
      if (!starts_with(sources_[i].key, sub)) continue;
      if (i != kept) sources_[kept] = std::move(sources_[i]);
      sources_[kept++].key.erase(0, sub.size());
    }
    sources_.resize(kept);
    if (kept == 0)
      r_.warnings.push_back("submodule(\"" + sub + "\") matched no checkpoint key" +
                            (first.empty() ? std::string() : " (the first is \"" + first + "\")"));
  }

  /// 2. The key rules, in the order given; throws on a rename that is no regular expression.
  void rewrite_keys() {
    const KeyRewriter rewriter(opts_.rules());
    rules_used_.assign(sources_.size(), std::string());
    if (!opts_.rules().empty()) {
      rewritten_.resize(sources_.size());
      std::vector<char> fired;
      for (std::size_t i = 0; i < sources_.size(); ++i) rewritten_[i] = rewriter.apply(sources_[i].key, &rules_used_[i], &fired);
      for (std::string& w : unused_rules(opts_.rules(), fired)) r_.warnings.push_back(std::move(w));
    }
    view_keys();
  }
  /// keys_[i]: the checkpoint key after the rules; it views sources_[i].key until a rule changes a key.
  void view_keys() {
    keys_.resize(sources_.size());
    for (std::size_t i = 0; i < sources_.size(); ++i) keys_[i] = rewritten_.empty() ? std::string_view(sources_[i].key) : rewritten_[i];
  }

  /// 3. With auto_prefix(): the prefix fix that pairs the most keys, applied after the rules.
  void reconcile_prefixes() {
    if (!opts_.auto_prefix()) return;
    const std::vector<PrefixFix> fixes = best_prefix_fixes(keys_, target_set_);
    const PrefixFix& fix = fixes.front();
    if (fixes.size() > 1) {
      std::string note = "auto_prefix: " + std::to_string(fixes.size()) + " prefixes fit equally (" + std::to_string(fix.matches) +
                         " module keys each), copies of the model whose values may differ; took " + fix.option() +
                         " by the rule for a tie (a prefix that does not mark an average such as ema or swa first, then the simplest)";
      for (std::size_t i = 1; i < fixes.size(); ++i)
        note += "; for the keys under '" + fixes[i].strip + "' use " +
                (fixes[i].add.empty() ? "submodule(\"" + fixes[i].strip + "\")" : fixes[i].option());
      if (fix.add.empty()) note += "; to load only the copy taken, use submodule(\"" + fix.strip + "\")";
      r_.warnings.push_back(note);
    }
    if (fix.identity()) return;
    if (rewritten_.empty()) rewritten_.assign(keys_.begin(), keys_.end());
    for (std::size_t i = 0; i < keys_.size(); ++i) {
      std::string k = fix.apply(rewritten_[i]);
      if (k != rewritten_[i]) rules_used_[i] += (rules_used_[i].empty() ? "auto_prefix: " : ".") + fix.option();
      rewritten_[i] = std::move(k);
    }
    view_keys();
  }

  /// 3b. The rename families (legacy_names): a key no module key is, renamed where its parent has
  /// the family's old names and the result is a module key.
  void rename_families() {
    if (opts_.rename_families().empty()) return;
    const KeyIndex now(keys_);
    const auto has = [&](const std::string& k) { return now.count(k) > 0; };
    std::vector<std::pair<std::size_t, std::pair<std::string, std::string>>> renamed;
    for (std::size_t i = 0; i < keys_.size(); ++i) {
      auto r = family_rename(opts_.rename_families(), std::string(keys_[i]), has, &target_set_);
      if (!r.first.empty()) renamed.emplace_back(i, std::move(r));
    }
    if (renamed.empty()) return;
    if (rewritten_.empty()) rewritten_.assign(keys_.begin(), keys_.end());
    for (auto& [i, r] : renamed) {
      rules_used_[i] += (rules_used_[i].empty() ? "" : ".") + std::string("rename_family(") + r.second + ")";
      rewritten_[i] = std::move(r.first);
    }
    view_keys();
  }

  /// 3c. The layout transforms, on the keys the rules gave: the tensors they make take the place of
  /// those they were made from, named in the report by the checkpoint keys they came from.
  void transform() {
    if (opts_.transforms().empty()) return;
    std::vector<Staged> items;
    items.reserve(sources_.size());
    for (std::size_t i = 0; i < sources_.size(); ++i) items.push_back({std::string(keys_[i]), std::move(sources_[i]), rules_used_[i]});
    StageResult res = Stage(items, false).run(opts_.transforms());
    for (auto& e : res.errors) r_.errors.push_back(std::move(e));
    for (auto& w : res.warnings) r_.warnings.push_back(std::move(w));
    sources_.clear();
    rewritten_.clear();
    rules_used_.clear();
    for (auto& s : items) {
      sources_.push_back(std::move(s.t));
      rewritten_.push_back(std::move(s.key));
      rules_used_.push_back(std::move(s.rule));
    }
    view_keys();
  }

  /// 4. Pairing: each module key with the checkpoint key that became it (or the one its tie names);
  /// then a module key that is the same tensor as a paired one (tied in the module) counts as
  /// filled; then the checkpoint keys left over.
  void pair() {
    const KeyIndex by_key(keys_);
    r_.matched.reserve(targets_.size());
    copies_.reserve(targets_.size());
    used_.assign(sources_.size(), 0);
    for (const auto& [first, later] : by_key.duplicates())
      r_.errors.push_back("checkpoint keys \"" + sources_[first].key + "\" and \"" + sources_[later].key + "\" both map to \"" +
                          std::string(keys_[later]) + "\" after the key rules");
    const std::vector<std::size_t> tied = tie_sources(by_key);
    std::vector<char> paired(targets_.size(), 0);
    for (std::size_t t = 0; t < targets_.size(); ++t) {
      const std::size_t s = tied[t] != KeyIndex::none ? tied[t] : by_key.find(targets_[t].key);
      if (s == KeyIndex::none) continue;
      paired[t] = 1;
      pair_one(t, s);
      if (tied[t] != KeyIndex::none) {
        const auto& tie =
            *std::find_if(opts_.ties().begin(), opts_.ties().end(), [&](const auto& x) { return x.module_key == targets_[t].key; });
        r_.matched.back().rule = "tie(\"" + tie.module_key + "\", \"" + tie.checkpoint_key + "\")";
        if (!copies_.empty() && copies_.back().target == t) copies_.back().own = true;
      }
    }
    std::unordered_multimap<const void*, std::size_t> by_storage;  // paired module tensors, by their storage
    for (std::size_t t = 0; t < targets_.size(); ++t)
      if (paired[t] && has_bytes(targets_[t].tensor)) by_storage.emplace(targets_[t].tensor.storage().unsafeGetStorageImpl(), t);
    for (std::size_t t = 0; t < targets_.size(); ++t) {
      if (paired[t]) continue;
      const std::size_t twin = tied_in_module(t, by_storage);
      if (twin == KeyIndex::none) {
        add_missing(targets_[t].key);
        continue;
      }
      const MatchedKey& other =
          *std::find_if(r_.matched.begin(), r_.matched.end(), [&](const MatchedKey& m) { return m.target == targets_[twin].key; });
      r_.matched.push_back(
          {targets_[t].key, other.source, "the module's own tensor of \"" + targets_[twin].key + "\" (tied in the module)"});
    }
    for (std::size_t i = 0; i < sources_.size(); ++i) {
      if (used_[i]) continue;
      r_.unexpected.push_back(sources_[i].key);
      const bool globbed = std::any_of(opts_.ignore_unexpected().begin(), opts_.ignore_unexpected().end(),
                                       [&](const std::string& g) { return glob_match(g, sources_[i].key) || glob_match(g, keys_[i]); });
      (globbed ? r_.tolerated : unexpected_hard_).push_back(sources_[i].key);
    }
    for (const auto& k : missing_soft_) r_.tolerated.push_back(k);
  }

  /// Per module key, the checkpoint tensor its tie names (KeyIndex::none if none); a tie whose keys
  /// are not there is a warning (the module key is then missing, if nothing else fills it).
  std::vector<std::size_t> tie_sources(const KeyIndex& by_key) {
    std::vector<std::size_t> tied(targets_.size(), KeyIndex::none);
    for (const auto& tie : opts_.ties()) {
      const std::size_t t = target_set_.find(tie.module_key);
      std::size_t s = by_key.find(tie.checkpoint_key);
      for (std::size_t i = 0; s == KeyIndex::none && i < sources_.size(); ++i)
        if (sources_[i].key == tie.checkpoint_key) s = i;
      const std::string text = "tie(\"" + tie.module_key + "\", \"" + tie.checkpoint_key + "\")";
      if (t == KeyIndex::none)
        r_.warnings.push_back(text + " changed nothing: the module has no key \"" + tie.module_key + "\"");
      else if (s == KeyIndex::none)
        r_.warnings.push_back(text + " changed nothing: the checkpoint has no key \"" + tie.checkpoint_key + "\"");
      else
        tied[t] = s;
    }
    return tied;
  }
  /// A paired module key whose tensor is module key `t`'s (LibTorch's register_parameter of one
  /// tensor under two names): loading it fills `t` too. KeyIndex::none if none.
  std::size_t tied_in_module(std::size_t t, const std::unordered_multimap<const void*, std::size_t>& by_storage) const {
    const at::Tensor& a = targets_[t].tensor;
    if (!has_bytes(a)) return KeyIndex::none;
    const auto range = by_storage.equal_range(a.storage().unsafeGetStorageImpl());
    for (auto it = range.first; it != range.second; ++it) {
      const at::Tensor& b = targets_[it->second].tensor;
      if (a.is_same(b) || (a.storage_offset() == b.storage_offset() && a.sizes().equals(b.sizes()) && a.strides().equals(b.strides()) &&
                           a.scalar_type() == b.scalar_type()))
        return it->second;
    }
    return KeyIndex::none;
  }
  static bool has_bytes(const at::Tensor& x) { return x.defined() && x.has_storage() && x.numel() > 0; }

  /// A module key no checkpoint key became: tolerated (num_batches_tracked, ignore_missing) or not.
  void add_missing(const std::string& key) {
    r_.missing.push_back(key);
    const bool nbt = !opts_.require_num_batches_tracked() &&
                     (key == "num_batches_tracked" || (key.size() > 20 && key.compare(key.size() - 20, 20, ".num_batches_tracked") == 0));
    const bool globbed =
        std::any_of(opts_.ignore_missing().begin(), opts_.ignore_missing().end(), [&](const std::string& g) { return glob_match(g, key); });
    (nbt || globbed ? missing_soft_ : missing_hard_).push_back(key);
  }

  /// Module key `t` and checkpoint tensor `s`: the shard taken, then dtype support, shape and dtype
  /// checked; a copy planned when they pass.
  void pair_one(std::size_t t, std::size_t s) {
    const Target& tg = targets_[t];
    const NamedTensor& src_entry = sources_[s];
    used_[s] = 1;
    at::Tensor src = src_entry.tensor;
    std::shared_ptr<const LazyTensor> lazy = src_entry.lazy;
    r_.matched.push_back({tg.key, src_entry.key, rules_used_[s].empty() ? "exact" : rules_used_[s]});
    std::string slice;  // the shard taken, for the report
    if (const LoadOptions::Shard* sh = shard_for(opts_, tg.key); sh != nullptr && src_entry.raw_dtype == nullptr) {
      const std::int64_t dims = src.dim(), dim = sh->dim < 0 ? sh->dim + dims : sh->dim;
      if (dim < 0 || dim >= dims) {
        r_.errors.push_back("shard of " + tg.key + ": dim " + std::to_string(sh->dim) + " does not exist in the checkpoint's " +
                            std::to_string(dims) + "-d tensor " + shape_str(src.sizes().vec()) + ".");
        return;
      }
      const auto [start, len] = chunk_range(src.size(dim), sh->rank, sh->world);
      slice = "rank " + std::to_string(sh->rank) + " of " + std::to_string(sh->world) + ": [" + std::to_string(start) + ", " +
              std::to_string(start + len) + ") along dim " + std::to_string(dim) + " of " + shape_str(src.sizes().vec());
      src = src.narrow(dim, start, len);
      if (lazy) lazy = std::make_shared<const LazyTensor>(lazy->narrowed(dim, start, len));
      r_.matched.back().rule += "; shard " + slice;
    }
    if (src_entry.raw_dtype != nullptr) {
      // A dtype this LibTorch lacks: listed and convertible, but no value can be made of it here.
      r_.dtype_mismatch.push_back({tg.key, src_entry.key, dtype_name(tg.tensor.scalar_type()), src_entry.raw_dtype, false, false});
      r_.errors.push_back("unsupported dtype for " + tg.key + ": the checkpoint's " + src_entry.key + " is " + src_entry.raw_dtype +
                          ", which LibTorch " + TORCH_VERSION + " does not have (LibTorch 2.3 or newer reads it).");
      return;
    }
    if (!src.sizes().equals(tg.tensor.sizes())) {
      r_.shape_mismatch.push_back({tg.key, src_entry.key, tg.tensor.sizes().vec(), src.sizes().vec()});
      if (opts_.shape_mismatch() == Policy::error)
        r_.errors.push_back("size mismatch for " + tg.key + ": copying a param with shape " + shape_str(src.sizes().vec()) +
                            " from checkpoint" + (slice.empty() ? std::string() : " (the slice of " + slice + ")") +
                            ", the shape in current model is " + shape_str(tg.tensor.sizes().vec()) + ".");
      else
        r_.skipped.push_back(tg.key);
      return;
    }
    if (src.scalar_type() != tg.tensor.scalar_type()) {
      DtypeMismatch d{tg.key, src_entry.key, dtype_name(tg.tensor.scalar_type()), dtype_name(src.scalar_type()), false, false};
      d.lossy = cast_is_lossy(src, tg.tensor.scalar_type(), lazy.get(), src_entry.key);
      if (opts_.dtype_mismatch() == Policy::error) {
        r_.errors.push_back("dtype mismatch for " + tg.key + ": the checkpoint has " + d.source_dtype + ", the model " + d.target_dtype +
                            ".");
      } else if (d.lossy && !opts_.allow_lossy_cast()) {
        r_.errors.push_back("lossy cast for " + tg.key + ": " + d.source_dtype + " to " + d.target_dtype +
                            " loses information (allow_lossy_cast() permits it).");
      } else {
        d.cast = true;
        ++casts_[{d.source_dtype, d.target_dtype}];
        copies_.push_back({t, src, lazy, !slice.empty()});
      }
      r_.dtype_mismatch.push_back(d);
      return;
    }
    copies_.push_back({t, src, lazy, !slice.empty()});
  }

  /// 5. The policies: what is an error, a warning, or nothing; and the coverage the load must reach.
  void apply_policies() {
    auto apply_policy = [&](Policy p, const std::vector<std::string>& keys, const char* what) {
      if (keys.empty() || p == Policy::ignore) return;
      // A dry run checking a fix is never printed: folding 100k keys for it would be wasted.
      const std::string list = suggest_ ? quoted_list(keys, true) : std::to_string(keys.size());
      const std::string line = std::string(what) + " key(s) in state_dict: " + list + ".";
      (p == Policy::error ? r_.errors : r_.warnings).push_back(line);
    };
    // PyTorch lists unexpected before missing; keep its order so messages read the same.
    std::vector<std::string> pair_errors;
    std::swap(pair_errors, r_.errors);
    apply_policy(opts_.missing(), missing_hard_, "Missing");
    apply_policy(opts_.unexpected(), unexpected_hard_, "Unexpected");
    r_.errors.insert(r_.errors.end(), pair_errors.begin(), pair_errors.end());
    if (!missing_soft_.empty()) {
      std::size_t nbt = 0;
      for (const auto& k : missing_soft_) nbt += k.find("num_batches_tracked") != std::string::npos;
      if (nbt > 0 && !r_.matched.empty())  // when nothing matched, the cause is elsewhere
        r_.warnings.push_back(std::to_string(nbt) +
                              " num_batches_tracked buffer(s) missing from the checkpoint (PyTorch versions differ); left as they were.");
    }
    if (opts_.shape_mismatch() == Policy::warn && !r_.skipped.empty())
      r_.warnings.push_back("skipped " + std::to_string(r_.skipped.size()) +
                            " tensor(s) of another shape: " + quoted_list(r_.skipped, true) + ".");
    if (opts_.dtype_mismatch() == Policy::warn)
      for (const auto& [dtypes, n] : casts_)
        r_.warnings.push_back("cast " + std::to_string(n) + " tensor(s) from " + dtypes.first + " to " + dtypes.second + ".");
    if (!targets_.empty() && copies_.empty())
      r_.errors.push_back("no tensor of the checkpoint matched the model (0 of " + std::to_string(targets_.size()) + " loaded).");
    else if (!targets_.empty() && static_cast<double>(copies_.size()) < opts_.min_coverage() * static_cast<double>(targets_.size()))
      r_.errors.push_back("only " + std::to_string(copies_.size()) + " of " + std::to_string(targets_.size()) +
                          " tensors would be loaded, below min_coverage " + std::to_string(opts_.min_coverage()) + ".");
  }

  const std::vector<Target>& targets_;
  const Checkpoint& ck_;
  const LoadOptions& opts_;
  LoadReport& r_;
  const KeyIndex target_set_;  // the module's keys
  const Advised advised_;
  Value root_;                           // the sub-tree loaded from
  std::vector<NamedTensor> sources_;     // its tensors
  std::vector<std::string> rewritten_;   // their keys after the rules, once a rule changed one
  std::vector<std::string> rules_used_;  // per source: the rules that changed its key, for the report
  std::vector<std::string_view> keys_;   // per source: its key after the rules
  std::vector<char> used_;               // per source: paired with a module key
  std::vector<Copy> copies_;
  std::vector<std::string> missing_hard_;  // missing and not tolerated
  std::vector<std::string> missing_soft_;  // missing and tolerated
  std::vector<std::string> unexpected_hard_;
  std::map<std::pair<std::string, std::string>, std::size_t> casts_;  // (from, to) dtype: tensors cast
  bool suggest_ = true;                                               // a report to print, not a dry run's
};

/// Plans a load of `ck` into `targets` (see Planner::run); the advice's dry runs are plans too.
inline std::vector<Copy> plan(const std::vector<Target>& targets, const Checkpoint& ck, const LoadOptions& opts, LoadReport& r,
                              bool suggest = true, std::size_t* usable = nullptr) {
  const DryRun dry_run = [](const std::vector<Target>& t, const Checkpoint& c, const LoadOptions& o, LoadReport& dry) {
    std::size_t n = 0;
    Planner(t, c, o, dry, nullptr).run(false, &n);
    return n;
  };
  return Planner(targets, ck, opts, r, dry_run).run(suggest, usable);
}

}  // namespace statedict::detail
