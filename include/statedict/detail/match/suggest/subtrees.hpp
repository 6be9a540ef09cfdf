#pragma once
// Suggestions for weights that are one sub-tree of a larger file: select() of a missing path, or
// the sub-tree that fits the module better than the one loaded from.
#include <statedict/detail/match/keys.hpp>
#include <statedict/detail/match/suggest/advice.hpp>
#include <statedict/detail/match/suggest/text.hpp>

#include <algorithm>
#include <string>
#include <vector>
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
  const std::vector<Candidate> all = subtree_alternatives(s.a.ck.root(), s.a.target_set, true);
  if (all.empty()) return;
  const Candidate& best = all.front();
  if (best.score <= s.r.matched.size()) return;
  if (all.size() > 1) {
    // Copies of the model side by side (timm's state_dict and state_dict_ema): each, with the option
    // that loads it; no claim that one fits better.
    std::string where;
    for (const auto& c : all)
      where += (where.empty() ? "'" : ", '") + (c.path.empty() ? std::string("(top level)") : c.path) +
               (c.fix.identity() ? "" : " with " + c.fix.option()) + "'";
    for (const auto& c : all) {
      if (c.path == s.r.selected && c.fix.identity()) continue;
      const std::string opt = take_text(c);
      Suggestion sug{std::to_string(all.size()) + " sub-trees fit the model equally (" + where + ", " + std::to_string(c.score) + " of " +
                         std::to_string(targets.size()) +
                         " keys each): copies of the model whose values may differ, and the copy loaded decides the model's "
                         "accuracy. For '" +
                         c.path + (c.fix.identity() ? "" : "' under '" + c.fix.strip) + "'" +
                         (names_an_average(c.path + "." + c.fix.strip) ? " (by its name, an average of the weights, such as EMA)" : "") +
                         ", use " + opt,
                     opt};
      sug.options = s.a.with([&](LoadOptions& o) { take(o, c); });
      s.fixes.push_back(std::move(sug));
    }
    return;
  }
  if (best.path == s.r.selected) return;
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
