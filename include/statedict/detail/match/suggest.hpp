#pragma once
// Advice: once the keys are paired, the fixes a report offers (each the whole options that apply it,
// checked by a dry run) and the hints it gives (what no option fixes). One file per family of
// advice under suggest/, sharing the advised load and its dry run (suggest/advice.hpp): a new
// family is one more file and one more line in Advisor::run.
#include <statedict/detail/match/suggest/advice.hpp>
#include <statedict/detail/match/suggest/ignores.hpp>
#include <statedict/detail/match/suggest/prefixes.hpp>
#include <statedict/detail/match/suggest/rank.hpp>
#include <statedict/detail/match/suggest/renames.hpp>
#include <statedict/detail/match/suggest/shapes.hpp>
#include <statedict/detail/match/suggest/subtrees.hpp>
#include <statedict/detail/match/suggest/ties.hpp>
#include <statedict/detail/match/suggest/transforms.hpp>

#include <string_view>
#include <vector>

namespace statedict::detail {

/// The advice on a plan whose keys are paired: appends to the report's suggestions the fixes that
/// survive their dry run, best first, then the hints.
class Advisor {
public:
  /// `keys`: the checkpoint's keys after the key rules (one per source); `used`: which were paired.
  Advisor(const Advised& a, const std::vector<NamedTensor>& sources, const std::vector<std::string_view>& keys,
          const std::vector<char>& used, LoadReport& r)
      : s_(a, sources, keys, used, r) {}

  /// `pairable`: the tensors the load would copy if the policies allowed it (what a fix must beat).
  /// The order matters: a family may read what an earlier one found (explained keys, near misses),
  /// and fixes that tie in the ranking keep it.
  void run(std::size_t pairable) {
    advise_prefix(s_);
    advise_segments(s_);
    advise_subtree(s_);
    advise_extra_groups(s_);
    advise_legacy_names(s_);
    advise_ties(s_);
    advise_near_misses(s_);
    advise_renamed_layer(s_);
    advise_transforms(s_);
    advise_shapes(s_);
    advise_stats_in_checkpoint_only(s_);
    advise_stats_in_module_only(s_);
    advise_leftovers(s_);
    Ranker(s_).run(pairable);
  }

private:
  Advice s_;
};

}  // namespace statedict::detail
