#pragma once
// Suggestions for weights that are one sub-tree of a larger file: select() of a missing path, or
// the sub-tree that fits the module better than the one loaded from.
#include <statedict/detail/match/keys.hpp>
#include <statedict/detail/match/suggest/advice.hpp>
#include <statedict/detail/match/suggest/text.hpp>

#include <string>
#include <utility>

namespace statedict::detail {

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

/// Few module keys found, or every one but more beside it: the weights may be one sub-tree of a
/// larger file.
inline void advise_subtree(Advice& s) {
  const auto& targets = s.a.targets;
  if (targets.empty() || !(s.r.matched.size() * 2 < targets.size() || s.only_extra)) return;
  const Candidate best = best_subtree(s.a.ck.root(), s.a.target_set, true);
  if (best.score <= s.r.matched.size() || best.path == s.r.selected) return;
  std::string opt = best.path.empty() ? "" : "select(\"" + best.path + "\")";
  if (!best.fix.identity()) opt += (opt.empty() ? "" : ".") + best.fix.option();
  const std::string where = best.path.empty() ? "at the top level of the checkpoint" : "under '" + best.path + "'";
  Suggestion sug{"the tensors " + where + " fit the model (" + std::to_string(best.score) + " of " + std::to_string(targets.size()) +
                     " keys match); the top-level keys are " + join_quoted(top_level_keys(s.a.ck.root()), 12) + ": use " + opt,
                 opt};
  // The rules apply under the new sub-tree: the user's own rules are kept, the fix follows them.
  sug.options = s.a.with([&](LoadOptions& o) {
    o.select(best.path);
    best.fix.add_to(o);
  });
  s.fixes.push_back(std::move(sug));
}

}  // namespace statedict::detail
