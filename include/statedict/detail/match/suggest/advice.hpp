#pragma once
// What every suggestion family shares: the load being advised on, the dry run that checks a fix
// (one place: a fix is offered only as the options it needs, and only if a plan with them loads
// more), and the state of one advising (the keys left over, the fixes and hints gathered so far).
#include <statedict/checkpoint.hpp>
#include <statedict/detail/key_index.hpp>
#include <statedict/detail/match/keys.hpp>
#include <statedict/detail/match/target.hpp>
#include <statedict/options.hpp>
#include <statedict/report.hpp>

#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

namespace statedict::detail {

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

/// One advising of a plan whose keys are paired: what each family reads (the load, the report, the
/// checkpoint keys left over) and appends to (fixes to check, hints to show).
struct Advice {
  /// `keys`: the checkpoint's keys after the key rules (one per source); `used`: which were paired.
  Advice(const Advised& advised, const std::vector<NamedTensor>& srcs, const std::vector<std::string_view>& keys_after_rules,
         const std::vector<char>& used_sources, LoadReport& report)
      : a(advised), opts(advised.opts), sources(srcs), keys(keys_after_rules), used(used_sources), r(report) {
    const std::unordered_set<std::string> tolerated(r.tolerated.begin(), r.tolerated.end());
    for (std::size_t i = 0; i < srcs.size(); ++i)
      if (!used[i]) {
        unexpected_keys.emplace_back(keys[i]);
        unexpected_at.push_back(i);
        if (!tolerated.count(srcs[i].key) && opts.unexpected() == Policy::error) unexpected_hard.push_back(i);
      }
    for (const auto& m : r.missing)
      if (!tolerated.count(m) && opts.missing() == Policy::error) missing_hard.push_back(m);
    only_extra = r.missing.empty() && !unexpected_keys.empty();
  }

  /// Whether module key `key` is a buffer (a parameter, or unknown as in a CLI diff, is not).
  bool is_buffer(const std::string& key) const {
    const std::size_t t = a.target_set.find(key);
    return t != KeyIndex::none && a.targets[t].buffer;
  }
  /// What leaving module keys out of a load means, in words: the parameters stay untrained.
  std::string left_as_they_are(const std::vector<std::string>& module_keys) const {
    std::vector<std::string> params, buffers;
    for (const auto& k : module_keys) (is_buffer(k) ? buffers : params).push_back(k);
    std::string out;
    if (!params.empty())
      out = quoted_list(params, true) + (params.size() == 1 ? " stays" : " stay") + " untrained (the model's initial values)";
    if (!buffers.empty())
      out += (out.empty() ? "" : "; ") + quoted_list(buffers, true) + (buffers.size() == 1 ? " keeps" : " keep") +
             " the module's own value (a buffer the module sets itself, such as a non-persistent one)";
    return out;
  }

  const Advised& a;
  const LoadOptions& opts;
  const std::vector<NamedTensor>& sources;
  const std::vector<std::string_view>& keys;  // per source: its key after the key rules
  const std::vector<char>& used;              // per source: paired with a module key
  LoadReport& r;
  std::vector<std::string> unexpected_keys;               // after the key rules
  std::vector<std::size_t> unexpected_at;                 // their indices in sources
  std::vector<std::size_t> unexpected_hard;               // the indices of those that fail the load
  std::vector<std::string> missing_hard;                  // missing module keys that fail the load
  bool only_extra = false;                                // every module key found, and more beside
  std::unordered_set<std::string> explained;              // missing keys a prefix suggestion accounts for
  std::vector<std::pair<std::string, std::string>> near;  // near misses: (checkpoint key, module key)
  std::vector<Suggestion> fixes, hints;
};

}  // namespace statedict::detail
