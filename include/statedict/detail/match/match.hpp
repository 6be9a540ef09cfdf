#pragma once
// The matcher's whole story: checkpoint keys are transformed by the options' rules, reconciled by
// prefix if asked, paired with module keys, checked against the policies, and explained.
#include <statedict/checkpoint.hpp>
#include <statedict/detail/dtypes.hpp>
#include <statedict/detail/match/target.hpp>
#include <statedict/options.hpp>
#include <statedict/report.hpp>

#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

namespace statedict::detail {

/// A planned copy from a checkpoint tensor into a target.
struct Copy {
  std::size_t target;
  at::Tensor source;                       // or, when lazy is set, a placeholder of its shape and dtype
  std::shared_ptr<const LazyTensor> lazy;  // made when applied (a DCP tensor, or the chunks of it a shard overlaps)
  bool slice = false;                      // a tensor-parallel rank's part of the checkpoint tensor
  at::Tensor get() const { return lazy ? lazy->get() : source; }
};

inline bool glob_match(std::string_view pat, std::string_view s) {
  std::size_t p = 0, i = 0, star = std::string::npos, mark = 0;
  while (i < s.size()) {
    if (p < pat.size() && (pat[p] == '?' || pat[p] == s[i])) {
      ++p;
      ++i;
    } else if (p < pat.size() && pat[p] == '*') {
      star = p++;
      mark = i;
    } else if (star != std::string::npos) {
      p = star + 1;
      i = ++mark;
    } else
      return false;
  }
  while (p < pat.size() && pat[p] == '*') ++p;
  return p == pat.size();
}

inline bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.substr(0, prefix.size()) == prefix;
}

/// An open-addressing index of keys stored elsewhere (the views must outlive it): one allocation
/// however many keys, so pairing 100k keys costs milliseconds rather than 100k node allocations.
class KeyIndex {
public:
  static constexpr std::size_t none = static_cast<std::size_t>(-1);
  KeyIndex() = default;
  explicit KeyIndex(std::vector<std::string_view> keys) : keys_(std::move(keys)) {
    if (keys_.size() >= UINT32_MAX / 2) throw std::length_error("statedict: too many keys to index");
    std::size_t cap = 16;
    while (cap < keys_.size() * 2) cap <<= 1;
    slots_.assign(cap, 0);
    for (std::size_t i = 0; i < keys_.size(); ++i) {
      std::size_t s = slot_of(keys_[i]);
      while (slots_[s] != 0 && keys_[slots_[s] - 1] != keys_[i]) s = (s + 1) & (cap - 1);
      if (slots_[s] != 0)
        duplicates_.emplace_back(slots_[s] - 1, i);
      else
        slots_[s] = static_cast<std::uint32_t>(i + 1);
    }
  }
  /// Position of `key` (its first occurrence), or none.
  std::size_t find(std::string_view key) const {
    if (slots_.empty()) return none;
    for (std::size_t s = slot_of(key);; s = (s + 1) & (slots_.size() - 1)) {
      if (slots_[s] == 0) return none;
      if (keys_[slots_[s] - 1] == key) return slots_[s] - 1;
    }
  }
  bool contains(std::string_view key) const { return find(key) != none; }
  std::size_t count(std::string_view key) const { return contains(key) ? 1 : 0; }
  const std::vector<std::string_view>& keys() const { return keys_; }
  /// (first, later) positions of keys that occur more than once.
  const std::vector<std::pair<std::size_t, std::size_t>>& duplicates() const { return duplicates_; }

private:
  std::size_t slot_of(std::string_view k) const { return std::hash<std::string_view>{}(k) & (slots_.size() - 1); }
  std::vector<std::string_view> keys_;
  std::vector<std::uint32_t> slots_;  // position + 1; 0 is empty
  std::vector<std::pair<std::size_t, std::size_t>> duplicates_;
};

/// Text escaped for an ECMAScript regex, and for a C++ string literal.
inline std::string regex_escape(const std::string& s) {
  std::string r;
  for (char c : s) {
    if (std::strchr("\\^$.|?*+()[]{}", c) != nullptr) r += '\\';
    r += c;
  }
  return r;
}
inline std::string cpp_escape(const std::string& s) {
  std::string r;
  for (char c : s) {
    if (c == '\\' || c == '"') r += '\\';
    r += c;
  }
  return r;
}

/// A prefix difference between checkpoint and module keys. Strip alone removes the prefix where a
/// key has it; add alone prefixes every key (the model is wrapped); both replace the prefix on the
/// keys that have it and leave every other key alone (a renamed layer: "fc." -> "classifier.").
struct PrefixFix {
  std::string strip, add;
  std::size_t matches = 0;
  bool identity() const { return strip.empty() && add.empty(); }
  std::string apply(std::string_view k) const {
    const bool has = !strip.empty() && starts_with(k, strip);
    if (!strip.empty() && !add.empty() && !has) return std::string(k);
    std::string out = add;
    out += has ? k.substr(strip.size()) : k;
    return out;
  }
  std::string option() const {
    if (!strip.empty() && !add.empty()) return "rename(\"" + cpp_escape("^" + regex_escape(strip)) + "\", \"" + cpp_escape(add) + "\")";
    return strip.empty() ? "add_prefix(\"" + add + "\")" : "strip_prefix(\"" + strip + "\")";
  }
  /// The same as LoadOptions calls, appended to `o`'s key rules.
  void add_to(LoadOptions& o) const {
    if (!strip.empty() && !add.empty())
      o.rename("^" + regex_escape(strip), add);
    else if (!strip.empty())
      o.strip_prefix(strip);
    else if (!add.empty())
      o.add_prefix(add);
  }
};

/// Prefixes of one or two dotted components shared by at least a quarter of the keys.
template <class Keys> std::vector<std::string> common_prefixes(const Keys& keys) {
  std::unordered_map<std::string_view, std::size_t> count;
  for (std::string_view k : keys) {
    std::size_t dot = k.find('.');
    for (int depth = 0; depth < 2 && dot != std::string::npos; ++depth) {
      ++count[k.substr(0, dot + 1)];
      dot = k.find('.', dot + 1);
    }
  }
  std::vector<std::string> out{""};
  for (const auto& [p, c] : count)
    if (c * 4 >= keys.size() && c > 0) out.emplace_back(p);
  std::sort(out.begin(), out.end());
  return out;
}

/// The prefix fix that pairs the most checkpoint keys with module keys (ties: the simplest).
template <class Keys> PrefixFix best_prefix_fix(const Keys& source, const KeyIndex& targets) {
  PrefixFix best;
  for (std::string_view k : source) best.matches += targets.count(k);
  const std::vector<std::string> adds = common_prefixes(targets.keys());
  for (const auto& strip : common_prefixes(source))
    for (const auto& add : adds) {
      if (strip.empty() && add.empty()) continue;
      if (strip == add) continue;
      PrefixFix f{strip, add, 0};
      for (std::string_view k : source) f.matches += targets.count(f.apply(k));
      const auto cost = [](const PrefixFix& x) { return (x.strip.empty() ? 0 : 1) + (x.add.empty() ? 0 : 1); };
      if (f.matches > best.matches || (f.matches == best.matches && f.matches > 0 && cost(f) < cost(best))) best = f;
    }
  return best;
}

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

/// Applies LoadOptions' key rules (strip_prefix, add_prefix, rename) in order.
class KeyRewriter {
public:
  explicit KeyRewriter(const std::vector<KeyRule>& rules) : rules_(rules) {
    for (const auto& rule : rules_) {
      if (rule.kind != KeyRule::Kind::rename) {
        regexes_.emplace_back();
        continue;
      }
      try {
        regexes_.emplace_back(rule.pattern, std::regex::ECMAScript);
      } catch (const std::regex_error& e) {
        throw Error("options.bad_regex", "", "rename(\"" + rule.pattern + "\")",
                    std::string("not a valid regular expression: ") + e.what());
      }
    }
  }
  /// The rewritten key; `used` (if given) receives the rules that changed it, joined by '.';
  /// `fired` (if given, one flag per rule) has the flag of each rule that changed it set.
  std::string apply(const std::string& key, std::string* used = nullptr, std::vector<char>* fired = nullptr) const {
    if (fired != nullptr) fired->resize(rules_.size(), 0);
    std::string k = key;
    for (std::size_t j = 0; j < rules_.size(); ++j) {
      const KeyRule& rule = rules_[j];
      const std::string before = k;
      if (rule.kind == KeyRule::Kind::strip_prefix && starts_with(k, rule.pattern))
        k = k.substr(rule.pattern.size());
      else if (rule.kind == KeyRule::Kind::add_prefix)
        k = rule.pattern + k;
      else if (rule.kind == KeyRule::Kind::rename)
        k = std::regex_replace(k, regexes_[j], rule.replacement);
      if (k == before) continue;
      if (used != nullptr) *used += (used->empty() ? "" : ".") + rule.text();
      if (fired != nullptr) (*fired)[j] = 1;
    }
    return k;
  }

private:
  std::vector<KeyRule> rules_;
  std::vector<std::regex> regexes_;
};

/// Warnings for the key rules that changed no key (`fired` as KeyRewriter::apply fills it): a
/// strip_prefix or rename that matches nothing is almost always a typo or the wrong sub-tree.
inline std::vector<std::string> unused_rules(const std::vector<KeyRule>& rules, const std::vector<char>& fired) {
  std::vector<std::string> out;
  for (std::size_t j = 0; j < rules.size(); ++j) {
    if (j < fired.size() && fired[j]) continue;
    const KeyRule& rule = rules[j];
    const std::string why = rule.kind == KeyRule::Kind::strip_prefix ? "no checkpoint key starts with \"" + rule.pattern + "\""
                            : rule.kind == KeyRule::Kind::rename     ? "its pattern matches no checkpoint key"
                                                                     : "it adds nothing";
    out.push_back(rule.text() + " changed no key: " + why);
  }
  return out;
}

struct Candidate {
  std::string path;
  std::size_t score = 0;
  std::size_t keys = 0;
  PrefixFix fix;
};

/// Sub-trees worth selecting: the root and every dict-like value down to depth 3 holding tensors.
inline void list_subtrees(const Value& v, const std::string& path, int depth, std::vector<std::pair<std::string, Value>>& out) {
  // An optimizer's state_dict ({"state", "param_groups"}) holds per-parameter buffers, never a model.
  if (v.is_dict() && v.find("state") && v.find("param_groups")) return;
  if (v.is_dict()) {
    out.emplace_back(path, v);
    if (depth >= 3) return;
    const auto items = v.items();
    const auto keys = v.keys();
    for (std::size_t i = 0; i < items.size(); ++i) {
      const Value& child = items[i].second;
      if (child.is_dict() || child.kind() == Kind::object)
        list_subtrees(child, path.empty() ? keys[i] : path + "." + keys[i], depth + 1, out);
    }
  } else if (v.kind() == Kind::object && v.object_state() && v.object_state()->is_dict() && depth < 3) {
    list_subtrees(*v.object_state(), path, depth + 1, out);
  }
}

/// The sub-tree whose keys best fit the targets (with prefix reconciliation when `with_prefix`).
inline Candidate best_subtree(const Value& root, const KeyIndex& targets, bool with_prefix) {
  std::vector<std::pair<std::string, Value>> subs;
  list_subtrees(root, "", 0, subs);
  if (subs.empty()) subs.emplace_back("", root);
  Candidate best;
  bool first = true;
  for (const auto& [path, v] : subs) {
    std::vector<std::string> keys;
    for (const auto& t : lazy_tensors(v)) keys.push_back(t.key);
    if (keys.empty()) continue;
    Candidate c{path, 0, keys.size(), {}};
    if (with_prefix) {
      c.fix = best_prefix_fix(keys, targets);
      c.score = c.fix.matches;
    } else {
      for (const auto& k : keys) c.score += targets.count(k);
    }
    // Ties go to the narrower sub-tree (fewer keys left unused), then to the one that needs no prefix
    // rule, then to the deeper path.
    auto rank = [](const Candidate& x) {
      const int cost = (x.fix.strip.empty() ? 0 : 1) + (x.fix.add.empty() ? 0 : 1);
      return std::make_tuple(x.score, -static_cast<long long>(x.keys), -cost,
                             std::count(x.path.begin(), x.path.end(), '.') + (x.path.empty() ? 0 : 1));
    };
    if (first || rank(c) > rank(best)) {
      best = c;
      first = false;
    }
  }
  return best;
}

inline std::vector<std::string> top_level_keys(const Value& root) { return root.is_dict() ? root.keys() : std::vector<std::string>{}; }

inline std::string join_quoted(const std::vector<std::string>& v, std::size_t max) {
  std::string s;
  for (std::size_t i = 0; i < v.size() && i < max; ++i) s += (i ? ", '" : "'") + v[i] + "'";
  if (v.size() > max) s += ", ...";
  return s;
}

/// Plans a load of `ck` into `targets`: fills the report and returns the copies to make (empty
/// when the report is not ok). Never changes a target.
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

/// `suggest` off: no suggestions (a dry run made to check one); `usable` receives how many tensors
/// would load if the policies allowed it (the copies before a failing report clears them).
inline std::vector<Copy> plan(const std::vector<Target>& targets, const Checkpoint& ck, const LoadOptions& opts, LoadReport& r,
                              bool suggest = true, std::size_t* usable = nullptr) {
  std::vector<Copy> copies;
  // A fix is offered only as the options it needs, checked by a dry run: how much of the module a
  // load with them fills, and whether it passes. Fixes that load no more than now are dropped; the
  // rest are ordered, those that pass first, then by tensors loaded.
  auto verify = [&](Suggestion& sug, std::size_t now) {
    if (!sug.options) return true;
    LoadReport dry;
    std::size_t n = 0;
    plan(targets, ck, *sug.options, dry, false, &n);
    sug.passes = dry.ok();
    sug.loads = sug.passes ? dry.loaded : n;
    if (!sug.passes && sug.loads <= now) return false;
    return true;
  };
  auto with = [&](const auto& change) {
    LoadOptions o = opts;
    change(o);
    return o;
  };
  r.module_tensors = targets.size();
  r.file = ck.path();
  r.format = format_name(ck.format());
  std::vector<std::string_view> target_keys;
  target_keys.reserve(targets.size());
  for (const auto& t : targets) target_keys.emplace_back(t.key);
  const KeyIndex target_set(std::move(target_keys));

  // 1. The sub-tree.
  Value source_root = ck.root();
  if (!opts.select().empty()) {
    try {
      source_root = ck.at(opts.select());
      r.selected = opts.select();
      r.selected_by = "select";
    } catch (const Error& e) {
      r.error = e.what();
      r.error_id = e.id();
      if (!suggest) return copies;  // a dry run checking a fix needs no advice of its own
      const Candidate best = best_subtree(ck.root(), target_set, true);
      std::string text =
          "select(\"" + opts.select() + "\") does not exist; the top-level keys are " + join_quoted(top_level_keys(ck.root()), 12);
      if (best.score > 0) {
        text += ". The tensors under '" + best.path + "' fit the model (" + std::to_string(best.score) + " of " +
                std::to_string(targets.size()) + " keys match): use select(\"" + best.path + "\")";
        Suggestion sug{text, "select(\"" + best.path + "\")"};
        sug.options = with([&](LoadOptions& o) { o.select(best.path); });
        if (verify(sug, 0)) r.suggestions.push_back(std::move(sug));
      } else {
        r.suggestions.push_back({text, ""});
      }
      return copies;
    }
  } else if (opts.auto_select()) {
    // A sub-tree is taken only when at least half of the module's keys match there (after prefix
    // reconciliation with auto_prefix); an optimizer's state is never a candidate.
    const Candidate best = best_subtree(ck.root(), target_set, opts.auto_prefix());
    const std::string fit = std::to_string(best.score) + " of " + std::to_string(targets.size()) + " module keys match";
    if (best.score * 2 >= targets.size() && best.score > 0) {
      if (!best.path.empty()) {
        source_root = ck.at(best.path);
        r.selected = best.path;
        r.selected_by = "auto_select";
        r.selected_why = fit + " there, the most of any sub-tree";
      }
    } else {
      r.warnings.push_back("auto_select found no sub-tree that fits the module (the best, " +
                           (best.path.empty() ? std::string("the whole checkpoint") : "'" + best.path + "'") + ": " + fit +
                           "; at least half must); the whole checkpoint was used");
    }
  }
  if (!source_root.is_dict() && source_root.kind() != Kind::object && !source_root.is_sequence()) {
    r.error = ck.path() + ": " + (r.selected.empty() ? std::string("the checkpoint") : "'" + r.selected + "'") + " holds a " +
              source_root.type_name() + ", not a state dict";
    r.error_id = "load.not_a_state_dict";
    return copies;
  }
  std::vector<NamedTensor> sources = lazy_tensors(source_root);
  if (!opts.submodule().empty()) {
    // Only the sub-module's keys, relative to it; the rest of the checkpoint is not this load's.
    const std::string& sub = opts.submodule();
    const std::string first = sources.empty() ? std::string() : sources.front().key;
    std::size_t kept = 0;
    for (std::size_t i = 0; i < sources.size(); ++i) {
      if (!starts_with(sources[i].key, sub)) continue;
      if (i != kept) sources[kept] = std::move(sources[i]);
      sources[kept++].key.erase(0, sub.size());
    }
    sources.resize(kept);
    if (kept == 0)
      r.warnings.push_back("submodule(\"" + sub + "\") matched no checkpoint key" +
                           (first.empty() ? std::string() : " (the first is \"" + first + "\")"));
  }

  // 2. Key rules, in the order given.
  std::optional<KeyRewriter> rewriter;
  try {
    rewriter.emplace(opts.rules());
  } catch (const Error& e) {
    r.error = e.what();
    r.error_id = e.id();
    return copies;
  }
  // keys[i]: the checkpoint key after the rules; it views sources[i].key until a rule changes a key.
  std::vector<std::string> rewritten;
  std::vector<std::string> rules_used(sources.size());
  if (!opts.rules().empty()) {
    rewritten.resize(sources.size());
    std::vector<char> fired;
    for (std::size_t i = 0; i < sources.size(); ++i) rewritten[i] = rewriter->apply(sources[i].key, &rules_used[i], &fired);
    for (std::string& w : unused_rules(opts.rules(), fired)) r.warnings.push_back(std::move(w));
  }
  std::vector<std::string_view> keys(sources.size());
  auto view_keys = [&] {
    for (std::size_t i = 0; i < sources.size(); ++i) keys[i] = rewritten.empty() ? std::string_view(sources[i].key) : rewritten[i];
  };
  view_keys();
  // 3. Prefix reconciliation.
  if (opts.auto_prefix()) {
    const PrefixFix fix = best_prefix_fix(keys, target_set);
    if (!fix.identity()) {
      if (rewritten.empty()) rewritten.assign(keys.begin(), keys.end());
      for (std::size_t i = 0; i < keys.size(); ++i) {
        std::string k = fix.apply(rewritten[i]);
        if (k != rewritten[i]) rules_used[i] += (rules_used[i].empty() ? "auto_prefix: " : ".") + fix.option();
        rewritten[i] = std::move(k);
      }
      view_keys();
    }
  }
  // 4. Pairing.
  const KeyIndex by_key(keys);
  r.matched.reserve(targets.size());
  copies.reserve(targets.size());
  std::vector<char> used(sources.size(), 0);
  for (const auto& [first, later] : by_key.duplicates())
    r.errors.push_back("checkpoint keys \"" + sources[first].key + "\" and \"" + sources[later].key + "\" both map to \"" +
                       std::string(keys[later]) + "\" after the key rules");
  std::vector<std::string> missing_hard, missing_soft;
  std::map<std::pair<std::string, std::string>, std::size_t> casts;
  for (std::size_t t = 0; t < targets.size(); ++t) {
    const Target& tg = targets[t];
    const std::size_t s = by_key.find(tg.key);
    if (s == KeyIndex::none) {
      r.missing.push_back(tg.key);
      const bool nbt =
          !opts.require_num_batches_tracked() &&
          (tg.key == "num_batches_tracked" || (tg.key.size() > 20 && tg.key.compare(tg.key.size() - 20, 20, ".num_batches_tracked") == 0));
      const bool globbed = std::any_of(opts.ignore_missing().begin(), opts.ignore_missing().end(),
                                       [&](const std::string& g) { return glob_match(g, tg.key); });
      (nbt || globbed ? missing_soft : missing_hard).push_back(tg.key);
      continue;
    }
    used[s] = 1;
    at::Tensor src = sources[s].tensor;
    std::shared_ptr<const LazyTensor> lazy = sources[s].lazy;
    r.matched.push_back({tg.key, sources[s].key, rules_used[s].empty() ? "exact" : rules_used[s]});
    std::string slice;  // the shard taken, for the report
    if (const LoadOptions::Shard* sh = shard_for(opts, tg.key); sh != nullptr && sources[s].raw_dtype == nullptr) {
      const std::int64_t dims = src.dim(), dim = sh->dim < 0 ? sh->dim + dims : sh->dim;
      if (dim < 0 || dim >= dims) {
        r.errors.push_back("shard of " + tg.key + ": dim " + std::to_string(sh->dim) + " does not exist in the checkpoint's " +
                           std::to_string(dims) + "-d tensor " + shape_str(src.sizes().vec()) + ".");
        continue;
      }
      const auto [start, len] = chunk_range(src.size(dim), sh->rank, sh->world);
      slice = "rank " + std::to_string(sh->rank) + " of " + std::to_string(sh->world) + ": [" + std::to_string(start) + ", " +
              std::to_string(start + len) + ") along dim " + std::to_string(dim) + " of " + shape_str(src.sizes().vec());
      src = src.narrow(dim, start, len);
      if (lazy) lazy = std::make_shared<const LazyTensor>(LazyTensor{lazy->pieces, {}, dim, start, len, {}});
      r.matched.back().rule += "; shard " + slice;
    }
    if (sources[s].raw_dtype != nullptr) {
      // A dtype this LibTorch lacks: listed and convertible, but no value can be made of it here.
      r.dtype_mismatch.push_back({tg.key, sources[s].key, dtype_name(tg.tensor.scalar_type()), sources[s].raw_dtype, false, false});
      r.errors.push_back("unsupported dtype for " + tg.key + ": the checkpoint's " + sources[s].key + " is " + sources[s].raw_dtype +
                         ", which LibTorch " + TORCH_VERSION + " does not have (LibTorch 2.3 or newer reads it).");
      continue;
    }
    if (!src.sizes().equals(tg.tensor.sizes())) {
      r.shape_mismatch.push_back({tg.key, sources[s].key, tg.tensor.sizes().vec(), src.sizes().vec()});
      if (opts.shape_mismatch() == Policy::error)
        r.errors.push_back("size mismatch for " + tg.key + ": copying a param with shape " + shape_str(src.sizes().vec()) +
                           " from checkpoint" + (slice.empty() ? std::string() : " (the slice of " + slice + ")") +
                           ", the shape in current model is " + shape_str(tg.tensor.sizes().vec()) + ".");
      else
        r.skipped.push_back(tg.key);
      continue;
    }
    if (src.scalar_type() != tg.tensor.scalar_type()) {
      DtypeMismatch d{tg.key, sources[s].key, dtype_name(tg.tensor.scalar_type()), dtype_name(src.scalar_type()), false, false};
      d.lossy = cast_is_lossy(src, tg.tensor.scalar_type(), lazy.get(), sources[s].key);
      if (opts.dtype_mismatch() == Policy::error) {
        r.errors.push_back("dtype mismatch for " + tg.key + ": the checkpoint has " + d.source_dtype + ", the model " + d.target_dtype +
                           ".");
      } else if (d.lossy && !opts.allow_lossy_cast()) {
        r.errors.push_back("lossy cast for " + tg.key + ": " + d.source_dtype + " to " + d.target_dtype +
                           " loses information (allow_lossy_cast() permits it).");
      } else {
        d.cast = true;
        ++casts[{d.source_dtype, d.target_dtype}];
        copies.push_back({t, src, lazy, !slice.empty()});
      }
      r.dtype_mismatch.push_back(d);
      continue;
    }
    copies.push_back({t, src, lazy, !slice.empty()});
  }
  std::vector<std::string> unexpected_hard;
  for (std::size_t i = 0; i < sources.size(); ++i) {
    if (used[i]) continue;
    r.unexpected.push_back(sources[i].key);
    const bool globbed = std::any_of(opts.ignore_unexpected().begin(), opts.ignore_unexpected().end(),
                                     [&](const std::string& g) { return glob_match(g, sources[i].key) || glob_match(g, keys[i]); });
    if (globbed)
      r.tolerated.push_back(sources[i].key);
    else
      unexpected_hard.push_back(sources[i].key);
  }
  for (const auto& k : missing_soft) r.tolerated.push_back(k);

  // 5. Policies.
  auto apply_policy = [&](Policy p, const std::vector<std::string>& keys_, const char* what) {
    if (keys_.empty() || p == Policy::ignore) return;
    const std::string line = std::string(what) + " key(s) in state_dict: " + quoted_list(keys_, true) + ".";
    (p == Policy::error ? r.errors : r.warnings).push_back(line);
  };
  // PyTorch lists unexpected before missing; keep its order so messages read the same.
  std::vector<std::string> policy_errors;
  std::swap(policy_errors, r.errors);
  apply_policy(opts.missing(), missing_hard, "Missing");
  apply_policy(opts.unexpected(), unexpected_hard, "Unexpected");
  r.errors.insert(r.errors.end(), policy_errors.begin(), policy_errors.end());
  if (!missing_soft.empty()) {
    std::size_t nbt = 0;
    for (const auto& k : missing_soft) nbt += k.find("num_batches_tracked") != std::string::npos;
    if (nbt > 0 && !r.matched.empty())  // when nothing matched, the cause is elsewhere
      r.warnings.push_back(std::to_string(nbt) +
                           " num_batches_tracked buffer(s) missing from the checkpoint (PyTorch versions differ); left as they were.");
  }
  if (opts.shape_mismatch() == Policy::warn && !r.skipped.empty())
    r.warnings.push_back("skipped " + std::to_string(r.skipped.size()) + " tensor(s) of another shape: " + quoted_list(r.skipped, true) +
                         ".");
  if (opts.dtype_mismatch() == Policy::warn)
    for (const auto& [pair, n] : casts)
      r.warnings.push_back("cast " + std::to_string(n) + " tensor(s) from " + pair.first + " to " + pair.second + ".");
  if (!targets.empty() && copies.empty())
    r.errors.push_back("no tensor of the checkpoint matched the model (0 of " + std::to_string(targets.size()) + " loaded).");
  else if (!targets.empty() && static_cast<double>(copies.size()) < opts.min_coverage() * static_cast<double>(targets.size()))
    r.errors.push_back("only " + std::to_string(copies.size()) + " of " + std::to_string(targets.size()) +
                       " tensors would be loaded, below min_coverage " + std::to_string(opts.min_coverage()) + ".");
  const std::size_t pairable = copies.size();
  if (usable != nullptr) *usable = pairable;
  // A failed load loads nothing, and its report says so (not "loaded 40 of 40").
  if (!r.ok()) copies.clear();
  r.loaded = copies.size();
  if (!suggest) return copies;

  // 6. Suggestions: fixes (each with the options that apply it, checked by a dry run), then hints.
  std::vector<std::string> unexpected_keys;  // after rules
  std::vector<std::size_t> unexpected_at;    // their indices in sources
  for (std::size_t i = 0; i < sources.size(); ++i)
    if (!used[i]) {
      unexpected_keys.emplace_back(keys[i]);
      unexpected_at.push_back(i);
    }
  const KeyIndex missing_set(std::vector<std::string_view>(r.missing.begin(), r.missing.end()));
  std::vector<Suggestion> fixes, hints;
  std::unordered_set<std::string> explained;  // missing keys a prefix suggestion accounts for
  if (!r.missing.empty() && !unexpected_keys.empty()) {
    const PrefixFix fix = best_prefix_fix(unexpected_keys, missing_set);
    if (!fix.identity() && fix.matches > 0) {
      for (const auto& u : unexpected_keys)
        if (missing_set.count(fix.apply(u))) explained.insert(fix.apply(u));
      std::string text;
      if (!fix.strip.empty() && fix.add.empty())
        text = std::to_string(fix.matches) + " unexpected key(s) start with '" + fix.strip + "' and match the model once it is removed";
      else if (fix.strip.empty())
        text = std::to_string(fix.matches) + " missing key(s) are the checkpoint's keys with '" + fix.add + "' in front";
      else
        text = std::to_string(fix.matches) + " unexpected key(s) match the model once '" + fix.strip + "' is replaced by '" + fix.add +
               "' (a renamed layer)";
      Suggestion sug{text + ": use " + fix.option(), fix.option()};
      sug.options = with([&](LoadOptions& o) { fix.add_to(o); });
      fixes.push_back(std::move(sug));
      // The module may be one part of the checkpoint's model (a backbone): then only that part.
      if (fix.add.empty() && opts.submodule().empty()) {
        Suggestion part{"the module may be the part of the checkpoint's model under '" + fix.strip +
                            "': to load only that part, use submodule(\"" + fix.strip + "\")",
                        "submodule(\"" + fix.strip + "\")"};
        part.options = with([&](LoadOptions& o) { o.submodule(fix.strip); });
        fixes.push_back(std::move(part));
      }
    }
  }
  // Every module key found, but more beside it: the weights may be one sub-tree of a larger file.
  const bool only_extra = r.missing.empty() && !unexpected_keys.empty();
  if (!targets.empty() && (r.matched.size() * 2 < targets.size() || only_extra)) {
    const Candidate best = best_subtree(ck.root(), target_set, true);
    if (best.score > r.matched.size() && best.path != r.selected) {
      std::string opt = best.path.empty() ? "" : "select(\"" + best.path + "\")";
      if (!best.fix.identity()) opt += (opt.empty() ? "" : ".") + best.fix.option();
      const std::string where = best.path.empty() ? "at the top level of the checkpoint" : "under '" + best.path + "'";
      Suggestion sug{"the tensors " + where + " fit the model (" + std::to_string(best.score) + " of " + std::to_string(targets.size()) +
                         " keys match); the top-level keys are " + join_quoted(top_level_keys(ck.root()), 12) + ": use " + opt,
                     opt};
      // The rules apply under the new sub-tree: the user's own rules are kept, the fix follows them.
      sug.options = with([&](LoadOptions& o) {
        o.select(best.path);
        best.fix.add_to(o);
      });
      fixes.push_back(std::move(sug));
    }
  }
  // The module is whole and the rest is extra (a feature extractor, a file with an optimizer's
  // state): leave the extra groups aside by name, a few globs rather than one per key.
  if (only_extra && opts.unexpected() == Policy::error) {
    std::vector<std::string> globs;
    for (const auto& u : unexpected_keys) {
      const std::size_t dot = u.find('.');
      std::string g = dot == std::string::npos ? u : u.substr(0, dot + 1) + "*";
      if (std::find(globs.begin(), globs.end(), g) == globs.end()) globs.push_back(std::move(g));
    }
    if (globs.size() <= 4) {
      std::string opt;
      for (const auto& g : globs) opt += (opt.empty() ? "" : ".") + std::string("ignore_unexpected(\"") + cpp_escape(g) + "\")";
      Suggestion sug{"the model is fully matched and " + std::to_string(unexpected_keys.size()) +
                         " checkpoint key(s) are extra: to leave them unused, use " + opt,
                     opt};
      sug.options = with([&](LoadOptions& o) {
        for (const auto& g : globs) o.ignore_unexpected(g);
      });
      fixes.push_back(std::move(sug));
    }
  }
  // Near misses: a missing key and an unused checkpoint key that differ a little.
  std::size_t near = 0;
  std::vector<std::pair<std::string, std::string>> pairs;  // (checkpoint key, module key)
  for (const auto& m : r.missing) {
    if (near >= 5 || r.missing.size() > 200 || unexpected_keys.size() > 2000) break;
    if (explained.count(m)) continue;
    const std::size_t cap = std::max<std::size_t>(2, m.size() / 10);
    const std::size_t ti = target_set.find(m);
    std::string best_key;
    // Closest name first; among equally close ones, a tensor of the module's shape.
    std::size_t best_d = 2 * (cap + 1);
    for (std::size_t j = 0; j < unexpected_keys.size(); ++j) {
      const std::string& u = unexpected_keys[j];
      const bool suffix = u.size() > m.size() && u.compare(u.size() - m.size(), m.size(), m) == 0 && u[u.size() - m.size() - 1] == '.';
      const std::size_t d = suffix ? 1 : one_component_apart(m, u) ? 2 : edit_distance(m, u, cap);
      if (d > cap) continue;
      const bool fits = ti != KeyIndex::none && sources[unexpected_at[j]].shape() == targets[ti].tensor.sizes().vec();
      if (2 * d + (fits ? 0 : 1) < best_d) {
        best_d = 2 * d + (fits ? 0 : 1);
        best_key = u;
      }
    }
    if (!best_key.empty()) {
      const std::string re = "^" + regex_escape(best_key) + "$";
      const std::string opt = "rename(\"" + cpp_escape(re) + "\", \"" + m + "\")";
      Suggestion sug{"missing \"" + m + "\" looks like checkpoint key \"" + best_key + "\": use " + opt, opt};
      sug.options = with([&](LoadOptions& o) { o.rename(re, m); });
      fixes.push_back(std::move(sug));
      pairs.emplace_back(best_key, m);
      ++near;
    }
  }
  // Several near misses that are one renamed layer ("fc.weight"/"fc.bias" -> "head.*"): one rename
  // of the keys' common part up to the differing component, which also covers what was not listed.
  if (pairs.size() >= 2) {
    std::string from, to;
    bool same = true;
    for (const auto& [u, m] : pairs) {
      const std::size_t cu = u.rfind('.'), cm = m.rfind('.');
      if (cu == std::string::npos || cm == std::string::npos || u.compare(cu, std::string::npos, m, cm, std::string::npos) != 0) {
        same = false;
        break;
      }
      const std::string f = u.substr(0, cu + 1), t = m.substr(0, cm + 1);
      if (from.empty()) from = f, to = t;
      same = same && f == from && t == to;
    }
    if (same && !from.empty()) {
      const std::string re = "^" + regex_escape(from);
      const std::string opt = "rename(\"" + cpp_escape(re) + "\", \"" + to + "\")";
      Suggestion sug{
          "the missing keys under '" + to + "' look like the checkpoint's keys under '" + from + "' (a renamed layer): use " + opt, opt};
      sug.options = with([&](LoadOptions& o) { o.rename(re, to); });
      fixes.push_back(std::move(sug));
    }
  }
  for (const auto& sm : r.shape_mismatch) {
    std::int64_t nt = 1, ns = 1;
    for (auto d : sm.target_shape) nt *= d;
    for (auto d : sm.source_shape) ns *= d;
    if (nt != ns) continue;
    std::vector<std::int64_t> rev(sm.source_shape.rbegin(), sm.source_shape.rend());
    hints.push_back({"\"" + sm.key + "\" has " + shape_str(sm.source_shape) + " in the checkpoint and " + shape_str(sm.target_shape) +
                         " in the model: same number of elements" +
                         (rev == sm.target_shape && sm.target_shape.size() == 2 ? ", transposed?" : ", reshaped?"),
                     ""});
  }
  if (!r.shape_mismatch.empty() && opts.shape_mismatch() == Policy::error) {
    std::vector<std::string> ks;
    for (const auto& sm : r.shape_mismatch) ks.push_back(sm.key);
    Suggestion sug{std::to_string(ks.size()) + " tensor(s) have another shape (" + quoted_list(ks, true) +
                       "), e.g. a classifier head of another size: to keep the model's values for them and load the rest, use "
                       "shape_mismatch(statedict::Policy::warn)",
                   "shape_mismatch(statedict::Policy::warn)"};
    sug.options = with([](LoadOptions& o) { o.shape_mismatch(Policy::warn); });
    fixes.push_back(std::move(sug));
  }
  {
    std::vector<std::string> stats;
    for (const auto& u : unexpected_keys)
      for (const char* suffix : {".running_mean", ".running_var", ".num_batches_tracked"}) {
        const std::string sfx = suffix;
        if (u.size() > sfx.size() && u.compare(u.size() - sfx.size(), sfx.size(), sfx) == 0 &&
            target_set.count(u.substr(0, u.size() - sfx.size()) + ".weight"))
          stats.push_back(u);
      }
    if (!stats.empty()) {
      Suggestion sug{"the checkpoint has BatchNorm running statistics the model lacks (" + quoted_list(stats, true) +
                         "): was the model built with track_running_stats(false)? To leave them unused, use "
                         "ignore_unexpected(\"*.running_*\").ignore_unexpected(\"*.num_batches_tracked\")",
                     "ignore_unexpected(\"*.running_*\").ignore_unexpected(\"*.num_batches_tracked\")"};
      sug.options = with([](LoadOptions& o) { o.ignore_unexpected("*.running_*").ignore_unexpected("*.num_batches_tracked"); });
      fixes.push_back(std::move(sug));
    }
  }
  // The other way round: the model tracks running statistics the checkpoint does not have.
  if (unexpected_keys.empty() && !r.missing.empty() && opts.missing() == Policy::error) {
    std::vector<std::string> stats, globs;
    for (const auto& m : r.missing)
      for (const char* suffix : {".running_mean", ".running_var"}) {
        const std::string sfx = suffix;
        if (m.size() > sfx.size() && m.compare(m.size() - sfx.size(), sfx.size(), sfx) == 0 &&
            r.missing.end() == std::find(r.missing.begin(), r.missing.end(), m.substr(0, m.size() - sfx.size()) + ".weight"))
          stats.push_back(m);
      }
    if (!stats.empty()) {
      Suggestion sug{"the checkpoint has no BatchNorm running statistics (" + std::to_string(stats.size()) +
                         " running_mean/running_var tensors, the first \"" + stats.front() +
                         "\"; trained with track_running_stats=False?): build the model with track_running_stats(false), or keep "
                         "the model's initial statistics with ignore_missing(\"*.running_mean\").ignore_missing(\"*.running_var\") "
                         "(eval-mode outputs then differ from the trained model's)",
                     "ignore_missing(\"*.running_mean\").ignore_missing(\"*.running_var\")"};
      sug.options = with([](LoadOptions& o) { o.ignore_missing("*.running_mean").ignore_missing("*.running_var"); });
      fixes.push_back(std::move(sug));
    } else if (fixes.empty()) {
      // Nothing in the checkpoint can fill these keys: no rule helps; say so, and how to load the rest.
      for (const auto& m : r.missing) {
        const std::size_t dot = m.find('.');
        std::string g = dot == std::string::npos ? m : m.substr(0, dot + 1) + "*";
        if (std::find(globs.begin(), globs.end(), g) == globs.end()) globs.push_back(std::move(g));
      }
      std::string opt;
      for (const auto& g : globs) opt += (opt.empty() ? "" : ".") + std::string("ignore_missing(\"") + cpp_escape(g) + "\")";
      Suggestion sug{"the checkpoint has no tensor for " + std::to_string(r.missing.size()) +
                         " module key(s), and no key rule can supply one: to load the rest and leave those as they are, use " + opt,
                     opt};
      sug.options = with([&](LoadOptions& o) {
        for (const auto& g : globs) o.ignore_missing(g);
      });
      if (globs.size() <= 4) fixes.push_back(std::move(sug));
    }
  }
  std::vector<Suggestion> kept;
  for (auto& f : fixes)
    if (verify(f, pairable)) kept.push_back(std::move(f));
  // What a fix changes, read from its options (not its text): a new sub-tree, a new submodule, or
  // key rules appended to the user's.
  const auto added_rules = [&](const Suggestion& x) {
    const auto& all = x.options->rules();
    const std::size_t mine = x.options->select() == opts.select() ? opts.rules().size() : 0;  // a new select keeps the user's rules
    return std::vector<KeyRule>(all.begin() + static_cast<std::ptrdiff_t>(std::min(mine, all.size())), all.end());
  };
  const auto strips_only = [&](const Suggestion& x, const std::string& prefix) {
    const auto added = added_rules(x);
    return added.size() == 1 && added[0].kind == KeyRule::Kind::strip_prefix && added[0].pattern == prefix;
  };
  // submodule(p) is offered only where strip_prefix(p) alone does not pass (a DataParallel file).
  kept.erase(std::remove_if(kept.begin(), kept.end(),
                            [&](const Suggestion& k) {
                              if (k.options->submodule() == opts.submodule()) return false;
                              return std::any_of(kept.begin(), kept.end(), [&](const Suggestion& o) {
                                return o.passes && o.options->submodule() == opts.submodule() && strips_only(o, k.options->submodule());
                              });
                            }),
             kept.end());
  // Ties: the usual idiom first (select a sub-tree, strip a wrapper's prefix), submodule last.
  const auto idiom = [&](const Suggestion& x) {
    if (x.options->select() != opts.select()) return 0;
    if (x.options->submodule() != opts.submodule()) return 3;
    const auto added = added_rules(x);
    return !added.empty() && added[0].kind == KeyRule::Kind::strip_prefix ? 1 : 2;
  };
  std::stable_sort(kept.begin(), kept.end(), [&](const Suggestion& a, const Suggestion& b) {
    if (a.passes != b.passes) return a.passes;
    if (a.loads != b.loads) return a.loads > b.loads;
    return idiom(a) < idiom(b);
  });
  for (auto& k : kept) r.suggestions.push_back(std::move(k));
  for (auto& h : hints) r.suggestions.push_back(std::move(h));
  return copies;
}

}  // namespace statedict::detail
