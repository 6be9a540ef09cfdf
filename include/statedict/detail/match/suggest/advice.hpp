#pragma once
// What every suggestion family shares: the load being advised on, the dry run that checks a fix
// (one place: a fix is offered only as the options it needs, and only if a plan with them loads
// more), and the state of one advising (the keys left over, the fixes and hints gathered so far).
#include <statedict/checkpoint.hpp>
#include <statedict/detail/key_index.hpp>
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
  Advice(const Advised& advised, const std::vector<NamedTensor>& srcs, const std::vector<std::string_view>& keys,
         const std::vector<char>& used, LoadReport& report)
      : a(advised), opts(advised.opts), sources(srcs), r(report) {
    for (std::size_t i = 0; i < srcs.size(); ++i)
      if (!used[i]) {
        unexpected_keys.emplace_back(keys[i]);
        unexpected_at.push_back(i);
      }
    only_extra = r.missing.empty() && !unexpected_keys.empty();
  }

  const Advised& a;
  const LoadOptions& opts;
  const std::vector<NamedTensor>& sources;
  LoadReport& r;
  std::vector<std::string> unexpected_keys;               // after the key rules
  std::vector<std::size_t> unexpected_at;                 // their indices in sources
  bool only_extra = false;                                // every module key found, and more beside
  std::unordered_set<std::string> explained;              // missing keys a prefix suggestion accounts for
  std::vector<std::pair<std::string, std::string>> near;  // near misses: (checkpoint key, module key)
  std::vector<Suggestion> fixes, hints;
};

}  // namespace statedict::detail
