#pragma once
// Advice: once the keys are paired, the fixes a report offers (each the whole options that apply it,
// checked by a dry run) and the hints it gives (what no option fixes). One method per kind of
// advice: a new suggestion is one more method of Advisor.
#include <statedict/detail/match/keys.hpp>
#include <statedict/detail/match/target.hpp>
#include <statedict/report.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

namespace statedict::detail {

/// Same dotted components but one ("fc.weight" and "head.weight").
inline bool one_component_apart(const std::string& a, const std::string& b) {
  std::size_t i = 0, j = 0, diffs = 0;
  while (true) {
    const std::size_t ea = a.find('.', i), eb = b.find('.', j);
    if (a.compare(i, ea == std::string::npos ? std::string::npos : ea - i, b, j, eb == std::string::npos ? std::string::npos : eb - j) != 0)
      ++diffs;
    if (ea == std::string::npos || eb == std::string::npos) return ea == eb && diffs == 1;
    i = ea + 1;
    j = eb + 1;
  }
}

inline std::size_t edit_distance(const std::string& a, const std::string& b, std::size_t cap) {
  if (a.size() > b.size() + cap || b.size() > a.size() + cap) return cap + 1;
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    std::size_t row_min = cur[0];
    for (std::size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      row_min = std::min(row_min, cur[j]);
    }
    if (row_min > cap) return cap + 1;
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

inline std::vector<std::string> top_level_keys(const Value& root) { return root.is_dict() ? root.keys() : std::vector<std::string>{}; }

inline std::string join_quoted(const std::vector<std::string>& v, std::size_t max) {
  std::string s;
  for (std::size_t i = 0; i < v.size() && i < max; ++i) s += (i ? ", '" : "'") + v[i] + "'";
  if (v.size() > max) s += ", ...";
  return s;
}

/// A plan made with other options and no advice of its own; returns how many tensors would load if
/// the policies allowed it (the report says whether they do).
using DryRun = std::size_t (*)(const std::vector<Target>&, const Checkpoint&, const LoadOptions&, LoadReport&);

/// The load being advised on.
struct Advised {
  const std::vector<Target>& targets;
  const Checkpoint& ck;
  const LoadOptions& opts;
  const KeyIndex& target_set;  // the module's keys
  DryRun dry_run;

  /// The user's options with `change` made to a copy.
  template <class F> LoadOptions with(const F& change) const {
    LoadOptions o = opts;
    change(o);
    return o;
  }
  /// A fix is offered only as the options it needs, checked by a dry run: how much of the module a
  /// load with them fills, and whether it passes. False (drop it) when it fails and loads no more
  /// than `now` tensors.
  bool verify(Suggestion& sug, std::size_t now) const {
    if (!sug.options) return true;
    LoadReport dry;
    const std::size_t n = dry_run(targets, ck, *sug.options, dry);
    sug.passes = dry.ok();
    sug.loads = sug.passes ? dry.loaded : n;
    return sug.passes || sug.loads > now;
  }
};

/// select() named no sub-tree: list the top-level keys, and offer the sub-tree that fits, if any.
inline void advise_select(const Advised& a, LoadReport& r) {
  const Candidate best = best_subtree(a.ck.root(), a.target_set, true);
  std::string text =
      "select(\"" + a.opts.select() + "\") does not exist; the top-level keys are " + join_quoted(top_level_keys(a.ck.root()), 12);
  if (best.score == 0) {
    r.suggestions.push_back({text, ""});
    return;
  }
  text += ". The tensors under '" + best.path + "' fit the model (" + std::to_string(best.score) + " of " +
          std::to_string(a.targets.size()) + " keys match): use select(\"" + best.path + "\")";
  Suggestion sug{text, "select(\"" + best.path + "\")"};
  sug.options = a.with([&](LoadOptions& o) { o.select(best.path); });
  if (a.verify(sug, 0)) r.suggestions.push_back(std::move(sug));
}

/// The advice on a plan whose keys are paired: appends to the report's suggestions the fixes that
/// survive their dry run, best first, then the hints.
class Advisor {
public:
  /// `keys`: the checkpoint's keys after the key rules (one per source); `used`: which were paired.
  Advisor(const Advised& a, const std::vector<NamedTensor>& sources, const std::vector<std::string_view>& keys,
          const std::vector<char>& used, LoadReport& r)
      : a_(a), opts_(a.opts), sources_(sources), r_(r) {
    for (std::size_t i = 0; i < sources.size(); ++i)
      if (!used[i]) {
        unexpected_keys_.emplace_back(keys[i]);
        unexpected_at_.push_back(i);
      }
    only_extra_ = r.missing.empty() && !unexpected_keys_.empty();
  }

  /// `pairable`: the tensors the load would copy if the policies allowed it (what a fix must beat).
  void run(std::size_t pairable) {
    prefix();
    subtree();
    extra_groups();
    near_misses();
    renamed_layer();
    shapes();
    stats_in_checkpoint_only();
    stats_in_module_only();
    rank(pairable);
  }

private:
  /// Keys that differ by a prefix (DataParallel's "module.", a wrapper's, a renamed layer):
  /// strip_prefix, add_prefix or a rename; or the module is the part of the file under the prefix.
  void prefix() {
    if (r_.missing.empty() || unexpected_keys_.empty()) return;
    const KeyIndex missing_set(std::vector<std::string_view>(r_.missing.begin(), r_.missing.end()));
    const PrefixFix fix = best_prefix_fix(unexpected_keys_, missing_set);
    if (fix.identity() || fix.matches == 0) return;
    for (const auto& u : unexpected_keys_)
      if (missing_set.count(fix.apply(u))) explained_.insert(fix.apply(u));
    std::string text;
    if (!fix.strip.empty() && fix.add.empty())
      text = std::to_string(fix.matches) + " unexpected key(s) start with '" + fix.strip + "' and match the model once it is removed";
    else if (fix.strip.empty())
      text = std::to_string(fix.matches) + " missing key(s) are the checkpoint's keys with '" + fix.add + "' in front";
    else
      text = std::to_string(fix.matches) + " unexpected key(s) match the model once '" + fix.strip + "' is replaced by '" + fix.add +
             "' (a renamed layer)";
    Suggestion sug{text + ": use " + fix.option(), fix.option()};
    sug.options = a_.with([&](LoadOptions& o) { fix.add_to(o); });
    fixes_.push_back(std::move(sug));
    // The module may be one part of the checkpoint's model (a backbone): then only that part.
    if (fix.add.empty() && opts_.submodule().empty()) {
      Suggestion part{"the module may be the part of the checkpoint's model under '" + fix.strip +
                          "': to load only that part, use submodule(\"" + fix.strip + "\")",
                      "submodule(\"" + fix.strip + "\")"};
      part.options = a_.with([&](LoadOptions& o) { o.submodule(fix.strip); });
      fixes_.push_back(std::move(part));
    }
  }

  /// Few module keys found, or every one but more beside it: the weights may be one sub-tree of a
  /// larger file.
  void subtree() {
    const auto& targets = a_.targets;
    if (targets.empty() || !(r_.matched.size() * 2 < targets.size() || only_extra_)) return;
    const Candidate best = best_subtree(a_.ck.root(), a_.target_set, true);
    if (best.score <= r_.matched.size() || best.path == r_.selected) return;
    std::string opt = best.path.empty() ? "" : "select(\"" + best.path + "\")";
    if (!best.fix.identity()) opt += (opt.empty() ? "" : ".") + best.fix.option();
    const std::string where = best.path.empty() ? "at the top level of the checkpoint" : "under '" + best.path + "'";
    Suggestion sug{"the tensors " + where + " fit the model (" + std::to_string(best.score) + " of " + std::to_string(targets.size()) +
                       " keys match); the top-level keys are " + join_quoted(top_level_keys(a_.ck.root()), 12) + ": use " + opt,
                   opt};
    // The rules apply under the new sub-tree: the user's own rules are kept, the fix follows them.
    sug.options = a_.with([&](LoadOptions& o) {
      o.select(best.path);
      best.fix.add_to(o);
    });
    fixes_.push_back(std::move(sug));
  }

  /// The module is whole and the rest is extra (a feature extractor, a file with an optimizer's
  /// state): leave the extra groups aside by name, a few globs rather than one per key.
  void extra_groups() {
    if (!only_extra_ || opts_.unexpected() != Policy::error) return;
    const std::vector<std::string> globs = group_globs(unexpected_keys_);
    if (globs.size() > 4) return;
    const std::string opt = calls("ignore_unexpected", globs);
    Suggestion sug{"the model is fully matched and " + std::to_string(unexpected_keys_.size()) +
                       " checkpoint key(s) are extra: to leave them unused, use " + opt,
                   opt};
    sug.options = a_.with([&](LoadOptions& o) {
      for (const auto& g : globs) o.ignore_unexpected(g);
    });
    fixes_.push_back(std::move(sug));
  }

  /// Near misses: a missing key and an unused checkpoint key that differ a little.
  void near_misses() {
    if (r_.missing.size() > 200 || unexpected_keys_.size() > 2000) return;
    for (const auto& m : r_.missing) {
      if (near_.size() >= 5) break;
      if (explained_.count(m)) continue;
      const std::size_t cap = std::max<std::size_t>(2, m.size() / 10);
      const std::size_t ti = a_.target_set.find(m);
      std::string best_key;
      // Closest name first; among equally close ones, a tensor of the module's shape.
      std::size_t best_d = 2 * (cap + 1);
      for (std::size_t j = 0; j < unexpected_keys_.size(); ++j) {
        const std::string& u = unexpected_keys_[j];
        const bool suffix = u.size() > m.size() && u.compare(u.size() - m.size(), m.size(), m) == 0 && u[u.size() - m.size() - 1] == '.';
        const std::size_t d = suffix ? 1 : one_component_apart(m, u) ? 2 : edit_distance(m, u, cap);
        if (d > cap) continue;
        const bool fits = ti != KeyIndex::none && sources_[unexpected_at_[j]].shape() == a_.targets[ti].tensor.sizes().vec();
        if (2 * d + (fits ? 0 : 1) < best_d) {
          best_d = 2 * d + (fits ? 0 : 1);
          best_key = u;
        }
      }
      if (best_key.empty()) continue;
      const std::string opt = literal_rename_text(best_key, m, true);
      Suggestion sug{"missing \"" + m + "\" looks like checkpoint key \"" + best_key + "\": use " + opt, opt};
      sug.options = a_.with([&](LoadOptions& o) { add_literal_rename(o, best_key, m, true); });
      fixes_.push_back(std::move(sug));
      near_.emplace_back(best_key, m);
    }
  }

  /// Several near misses that are one renamed layer ("fc.weight"/"fc.bias" -> "head.*"): one rename
  /// of the keys' common part up to the differing component, which also covers what was not listed.
  void renamed_layer() {
    if (near_.size() < 2) return;
    std::string from, to;
    for (const auto& [u, m] : near_) {
      const std::size_t cu = u.rfind('.'), cm = m.rfind('.');
      if (cu == std::string::npos || cm == std::string::npos || u.compare(cu, std::string::npos, m, cm, std::string::npos) != 0) return;
      const std::string f = u.substr(0, cu + 1), t = m.substr(0, cm + 1);
      if (from.empty()) from = f, to = t;
      if (f != from || t != to) return;
    }
    if (from.empty()) return;
    const std::string opt = literal_rename_text(from, to, false);
    Suggestion sug{"the missing keys under '" + to + "' look like the checkpoint's keys under '" + from + "' (a renamed layer): use " + opt,
                   opt};
    sug.options = a_.with([&](LoadOptions& o) { add_literal_rename(o, from, to, false); });
    fixes_.push_back(std::move(sug));
  }

  /// Shapes with the same number of elements (a hint: transposed? reshaped?); and, where another
  /// shape fails the load, how to keep the model's values for those and load the rest.
  void shapes() {
    for (const auto& sm : r_.shape_mismatch) {
      if (numel(sm.target_shape) != numel(sm.source_shape)) continue;
      const std::vector<std::int64_t> rev(sm.source_shape.rbegin(), sm.source_shape.rend());
      hints_.push_back({"\"" + sm.key + "\" has " + shape_str(sm.source_shape) + " in the checkpoint and " + shape_str(sm.target_shape) +
                            " in the model: same number of elements" +
                            (rev == sm.target_shape && sm.target_shape.size() == 2 ? ", transposed?" : ", reshaped?"),
                        ""});
    }
    if (r_.shape_mismatch.empty() || opts_.shape_mismatch() != Policy::error) return;
    std::vector<std::string> ks;
    for (const auto& sm : r_.shape_mismatch) ks.push_back(sm.key);
    Suggestion sug{std::to_string(ks.size()) + " tensor(s) have another shape (" + quoted_list(ks, true) +
                       "), e.g. a classifier head of another size: to keep the model's values for them and load the rest, use "
                       "shape_mismatch(statedict::Policy::warn)",
                   "shape_mismatch(statedict::Policy::warn)"};
    sug.options = a_.with([](LoadOptions& o) { o.shape_mismatch(Policy::warn); });
    fixes_.push_back(std::move(sug));
  }

  /// The checkpoint has BatchNorm running statistics the model lacks.
  void stats_in_checkpoint_only() {
    std::vector<std::string> stats;
    for (const auto& u : unexpected_keys_)
      for (std::string_view sfx : {".running_mean", ".running_var", ".num_batches_tracked"})
        if (ends_with(u, sfx) && a_.target_set.count(u.substr(0, u.size() - sfx.size()) + ".weight")) stats.push_back(u);
    if (stats.empty()) return;
    Suggestion sug{"the checkpoint has BatchNorm running statistics the model lacks (" + quoted_list(stats, true) +
                       "): was the model built with track_running_stats(false)? To leave them unused, use "
                       "ignore_unexpected(\"*.running_*\").ignore_unexpected(\"*.num_batches_tracked\")",
                   "ignore_unexpected(\"*.running_*\").ignore_unexpected(\"*.num_batches_tracked\")"};
    sug.options = a_.with([](LoadOptions& o) { o.ignore_unexpected("*.running_*").ignore_unexpected("*.num_batches_tracked"); });
    fixes_.push_back(std::move(sug));
  }

  /// The other way round: the model tracks running statistics the checkpoint does not have. Or,
  /// when no other fix applies, nothing in the checkpoint can fill the missing keys: say so, and how
  /// to load the rest.
  void stats_in_module_only() {
    if (!unexpected_keys_.empty() || r_.missing.empty() || opts_.missing() != Policy::error) return;
    std::vector<std::string> stats;
    for (const auto& m : r_.missing)
      for (std::string_view sfx : {".running_mean", ".running_var"})
        if (ends_with(m, sfx) &&
            r_.missing.end() == std::find(r_.missing.begin(), r_.missing.end(), m.substr(0, m.size() - sfx.size()) + ".weight"))
          stats.push_back(m);
    if (!stats.empty()) {
      Suggestion sug{"the checkpoint has no BatchNorm running statistics (" + std::to_string(stats.size()) +
                         " running_mean/running_var tensors, the first \"" + stats.front() +
                         "\"; trained with track_running_stats=False?): build the model with track_running_stats(false), or keep "
                         "the model's initial statistics with ignore_missing(\"*.running_mean\").ignore_missing(\"*.running_var\") "
                         "(eval-mode outputs then differ from the trained model's)",
                     "ignore_missing(\"*.running_mean\").ignore_missing(\"*.running_var\")"};
      sug.options = a_.with([](LoadOptions& o) { o.ignore_missing("*.running_mean").ignore_missing("*.running_var"); });
      fixes_.push_back(std::move(sug));
      return;
    }
    if (!fixes_.empty()) return;
    const std::vector<std::string> globs = group_globs(r_.missing);
    if (globs.size() > 4) return;
    const std::string opt = calls("ignore_missing", globs);
    Suggestion sug{"the checkpoint has no tensor for " + std::to_string(r_.missing.size()) +
                       " module key(s), and no key rule can supply one: to load the rest and leave those as they are, use " + opt,
                   opt};
    sug.options = a_.with([&](LoadOptions& o) {
      for (const auto& g : globs) o.ignore_missing(g);
    });
    fixes_.push_back(std::move(sug));
  }

  /// Keeps the fixes that survive their dry run and orders them: those that pass first, then by
  /// tensors loaded, then the usual idiom; hints follow.
  void rank(std::size_t pairable) {
    std::vector<Suggestion> kept;
    for (auto& f : fixes_)
      if (a_.verify(f, pairable)) kept.push_back(std::move(f));
    // submodule(p) is offered only where strip_prefix(p) alone does not pass (a DataParallel file).
    kept.erase(std::remove_if(kept.begin(), kept.end(),
                              [&](const Suggestion& k) {
                                if (k.options->submodule() == opts_.submodule()) return false;
                                return std::any_of(kept.begin(), kept.end(), [&](const Suggestion& o) {
                                  return o.passes && o.options->submodule() == opts_.submodule() && strips_only(o, k.options->submodule());
                                });
                              }),
               kept.end());
    std::stable_sort(kept.begin(), kept.end(), [&](const Suggestion& x, const Suggestion& y) {
      if (x.passes != y.passes) return x.passes;
      if (x.loads != y.loads) return x.loads > y.loads;
      return idiom(x) < idiom(y);
    });
    for (auto& k : kept) r_.suggestions.push_back(std::move(k));
    for (auto& h : hints_) r_.suggestions.push_back(std::move(h));
  }

  // What a fix changes, read from its options (not its text): a new sub-tree, a new submodule, or
  // key rules appended to the user's.
  std::size_t first_added(const Suggestion& x) const {
    const std::size_t mine = x.options->select() == opts_.select() ? opts_.rules().size() : 0;  // a new select keeps the user's rules
    return std::min(mine, x.options->rules().size());
  }
  std::vector<KeyRule> added_rules(const Suggestion& x) const {
    const auto& all = x.options->rules();
    return std::vector<KeyRule>(all.begin() + static_cast<std::ptrdiff_t>(first_added(x)), all.end());
  }
  // Without a copy of the rules: g++ 16 at -O3 took the copy's deallocation here for a free of a
  // non-heap pointer (-Wfree-nonheap-object, a false positive that -Werror turns into a build stop).
  bool strips_only(const Suggestion& x, const std::string& prefix) const {
    const auto& all = x.options->rules();
    const std::size_t first = first_added(x);
    return all.size() == first + 1 && all[first].kind == KeyRule::Kind::strip_prefix && all[first].pattern == prefix;
  }
  /// Ties: the usual idiom first (select a sub-tree, strip a wrapper's prefix), submodule last.
  int idiom(const Suggestion& x) const {
    if (x.options->select() != opts_.select()) return 0;
    if (x.options->submodule() != opts_.submodule()) return 3;
    const auto added = added_rules(x);
    return !added.empty() && added[0].kind == KeyRule::Kind::strip_prefix ? 1 : 2;
  }

  /// One glob per first dotted component ("backbone.*"), in order of first appearance.
  static std::vector<std::string> group_globs(const std::vector<std::string>& keys) {
    std::vector<std::string> globs;
    for (const auto& k : keys) {
      const std::size_t dot = k.find('.');
      std::string g = dot == std::string::npos ? k : k.substr(0, dot + 1) + "*";
      if (std::find(globs.begin(), globs.end(), g) == globs.end()) globs.push_back(std::move(g));
    }
    return globs;
  }
  /// `name("a").name("b")`, as the option calls are written.
  static std::string calls(const char* name, const std::vector<std::string>& args) {
    std::string out;
    for (const auto& g : args) out += (out.empty() ? "" : ".") + std::string(name) + "(\"" + cpp_escape(g) + "\")";
    return out;
  }
  static bool ends_with(std::string_view s, std::string_view sfx) {
    return s.size() > sfx.size() && s.compare(s.size() - sfx.size(), sfx.size(), sfx) == 0;
  }
  static std::int64_t numel(const std::vector<std::int64_t>& shape) {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }

  const Advised& a_;
  const LoadOptions& opts_;
  const std::vector<NamedTensor>& sources_;
  LoadReport& r_;
  std::vector<std::string> unexpected_keys_;               // after the key rules
  std::vector<std::size_t> unexpected_at_;                 // their indices in sources_
  bool only_extra_ = false;                                // every module key found, and more beside
  std::unordered_set<std::string> explained_;              // missing keys a prefix suggestion accounts for
  std::vector<std::pair<std::string, std::string>> near_;  // near misses: (checkpoint key, module key)
  std::vector<Suggestion> fixes_, hints_;
};

}  // namespace statedict::detail
