#pragma once
// Suggestions that leave keys aside: extra checkpoint groups on a fully matched model, BatchNorm
// statistics on one side only, and module keys nothing in the checkpoint can fill.
#include <statedict/detail/match/suggest/advice.hpp>
#include <statedict/detail/match/suggest/text.hpp>

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace statedict::detail {

/// The module is whole and the rest is extra (a feature extractor, a file with an optimizer's
/// state): leave the extra groups aside by name, a few globs rather than one per key.
inline void advise_extra_groups(Advice& s) {
  if (!s.only_extra || s.opts.unexpected() != Policy::error) return;
  const std::vector<std::string> globs = group_globs(s.unexpected_keys);
  if (globs.size() > 4) return;
  const std::string opt = calls("ignore_unexpected", globs);
  Suggestion sug{"the model is fully matched and " + std::to_string(s.unexpected_keys.size()) +
                     " checkpoint key(s) are extra: to leave them unused, use " + opt,
                 opt};
  sug.options = s.a.with([&](LoadOptions& o) {
    for (const auto& g : globs) o.ignore_unexpected(g);
  });
  s.fixes.push_back(std::move(sug));
}

/// The checkpoint has BatchNorm running statistics the model lacks.
inline void advise_stats_in_checkpoint_only(Advice& s) {
  std::vector<std::string> stats;
  for (const auto& u : s.unexpected_keys)
    for (std::string_view sfx : {".running_mean", ".running_var", ".num_batches_tracked"})
      if (ends_with(u, sfx) && s.a.target_set.count(u.substr(0, u.size() - sfx.size()) + ".weight")) stats.push_back(u);
  if (stats.empty()) return;
  Suggestion sug{"the checkpoint has BatchNorm running statistics the model lacks (" + quoted_list(stats, true) +
                     "): was the model built with track_running_stats(false)? To leave them unused, use "
                     "ignore_unexpected(\"*.running_*\").ignore_unexpected(\"*.num_batches_tracked\")",
                 "ignore_unexpected(\"*.running_*\").ignore_unexpected(\"*.num_batches_tracked\")"};
  sug.options = s.a.with([](LoadOptions& o) { o.ignore_unexpected("*.running_*").ignore_unexpected("*.num_batches_tracked"); });
  s.fixes.push_back(std::move(sug));
}

/// The other way round: the model tracks running statistics the checkpoint does not have. Or,
/// when no other fix applies, nothing in the checkpoint can fill the missing keys: say so, and how
/// to load the rest.
inline void advise_stats_in_module_only(Advice& s) {
  if (!s.unexpected_keys.empty() || s.r.missing.empty() || s.opts.missing() != Policy::error) return;
  std::vector<std::string> stats;
  for (const auto& m : s.r.missing)
    for (std::string_view sfx : {".running_mean", ".running_var"})
      if (ends_with(m, sfx) &&
          s.r.missing.end() == std::find(s.r.missing.begin(), s.r.missing.end(), m.substr(0, m.size() - sfx.size()) + ".weight"))
        stats.push_back(m);
  if (!stats.empty()) {
    Suggestion sug{"the checkpoint has no BatchNorm running statistics (" + std::to_string(stats.size()) +
                       " running_mean/running_var tensors, the first \"" + stats.front() +
                       "\"; trained with track_running_stats=False?): build the model with track_running_stats(false), or keep "
                       "the model's initial statistics with ignore_missing(\"*.running_mean\").ignore_missing(\"*.running_var\") "
                       "(eval-mode outputs then differ from the trained model's)",
                   "ignore_missing(\"*.running_mean\").ignore_missing(\"*.running_var\")"};
    sug.options = s.a.with([](LoadOptions& o) { o.ignore_missing("*.running_mean").ignore_missing("*.running_var"); });
    s.fixes.push_back(std::move(sug));
    return;
  }
  if (!s.fixes.empty()) return;
  const std::vector<std::string> globs = group_globs(s.r.missing);
  if (globs.size() > 4) return;
  const std::string opt = calls("ignore_missing", globs);
  Suggestion sug{"the checkpoint has no tensor for " + std::to_string(s.r.missing.size()) +
                     " module key(s), and no key rule can supply one: to load the rest and leave those as they are, use " + opt,
                 opt};
  sug.options = s.a.with([&](LoadOptions& o) {
    for (const auto& g : globs) o.ignore_missing(g);
  });
  s.fixes.push_back(std::move(sug));
}

}  // namespace statedict::detail
