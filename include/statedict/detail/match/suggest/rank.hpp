#pragma once
// The last step of advising: keep the fixes that survive their dry run (Advised::verify) and order
// them: those that pass first, then by tensors loaded, then the usual idiom; hints follow.
#include <statedict/detail/match/suggest/advice.hpp>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

namespace statedict::detail {

class Ranker {
public:
  explicit Ranker(Advice& s) : s_(s), opts_(s.opts) {}

  /// `pairable`: the tensors the load would copy if the policies allowed it (what a fix must beat).
  void run(std::size_t pairable) {
    std::vector<Suggestion> kept;
    for (auto& f : s_.fixes)
      if (s_.a.verify(f, pairable)) kept.push_back(std::move(f));
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
    for (auto& k : kept) s_.r.suggestions.push_back(std::move(k));
    for (auto& h : s_.hints) s_.r.suggestions.push_back(std::move(h));
  }

private:
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

  Advice& s_;
  const LoadOptions& opts_;
};

}  // namespace statedict::detail
