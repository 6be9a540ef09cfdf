#pragma once
// Suggestions that leave keys aside: extra checkpoint groups on a fully matched model, BatchNorm
// statistics on one side only, and what is left when no key rule helps. Each ignores exactly the
// keys that fail the load: a glob only where every key it covers is one of them (a broader one
// would hide the next real problem), and the module keys it leaves out are named in words.
#include <statedict/detail/match/keys.hpp>
#include <statedict/detail/match/suggest/advice.hpp>
#include <statedict/detail/match/suggest/text.hpp>

#include <algorithm>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

namespace statedict::detail {

/// The fewest globs that cover `keys` and none of `others` (the keys a glob must leave alone): a
/// prefix ("optimizer.*") or suffix ("*.attn.bias") of whole dotted components, else the key itself.
/// `preferred` globs are tried first.
inline std::vector<std::string> narrow_globs(const std::vector<std::string>& keys, const std::vector<std::string>& others,
                                             const std::vector<std::string>& preferred = {}) {
  if (keys.size() > 2000) return keys;
  std::vector<std::string> candidates = preferred;
  std::unordered_set<std::string> seen(candidates.begin(), candidates.end());
  const auto add = [&](std::string g) {
    if (seen.insert(g).second) candidates.push_back(std::move(g));
  };
  for (const auto& k : keys)
    for (std::size_t dot = k.find('.'); dot != std::string::npos; dot = k.find('.', dot + 1)) {
      add(k.substr(0, dot + 1) + "*");
      add("*" + k.substr(dot));
    }
  const auto clean = [&](const std::string& g) {
    return std::none_of(others.begin(), others.end(), [&](const std::string& o) { return glob_match(g, o); });
  };
  std::vector<char> covered(keys.size(), 0);
  std::vector<std::string> out;
  std::size_t left = keys.size();
  std::vector<char> dirty(candidates.size(), 0);  // known to cover one of `others`
  while (left > 0) {
    std::size_t best = candidates.size(), best_n = 1;  // a glob must cover two keys to beat the keys themselves
    for (std::size_t c = 0; c < candidates.size(); ++c) {
      if (dirty[c]) continue;
      std::size_t n = 0;
      for (std::size_t i = 0; i < keys.size(); ++i) n += !covered[i] && glob_match(candidates[c], keys[i]);
      if (n > best_n || (n > 0 && c < preferred.size() && best == candidates.size())) {
        if (!clean(candidates[c])) {
          dirty[c] = 1;
          continue;
        }
        best = c;
        best_n = n;
      }
    }
    if (best == candidates.size()) break;
    out.push_back(candidates[best]);
    for (std::size_t i = 0; i < keys.size(); ++i)
      if (!covered[i] && glob_match(candidates[best], keys[i])) covered[i] = 1, --left;
  }
  for (std::size_t i = 0; i < keys.size(); ++i)
    if (!covered[i]) out.push_back(keys[i]);
  return out;
}

/// The module keys that are not in `missing` (what an ignore_missing glob must not cover).
inline std::vector<std::string> module_keys_but(const Advised& a, const std::vector<std::string>& missing) {
  const std::unordered_set<std::string> m(missing.begin(), missing.end());
  std::vector<std::string> out;
  for (const auto& t : a.targets)
    if (!m.count(t.key)) out.push_back(t.key);
  return out;
}
/// The checkpoint keys paired with a module key (what an ignore_unexpected glob must not cover).
inline std::vector<std::string> used_keys(const Advice& s) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < s.sources.size(); ++i)
    if (s.used[i]) out.push_back(s.sources[i].key);
  return out;
}
inline std::vector<std::string> hard_unexpected(const Advice& s) {
  std::vector<std::string> out;
  for (std::size_t i : s.unexpected_hard) out.push_back(s.sources[i].key);
  return out;
}

/// The module is whole and the rest is extra (a feature extractor, a file with an optimizer's
/// state): leave the extra keys aside by name, with globs that cover nothing else.
inline void advise_extra_groups(Advice& s) {
  if (!s.only_extra || s.unexpected_hard.empty()) return;
  const std::vector<std::string> globs = narrow_globs(hard_unexpected(s), used_keys(s));
  if (globs.size() > 6) return;
  const std::string opt = calls("ignore_unexpected", globs);
  Suggestion sug{"the model is fully matched and " + std::to_string(s.unexpected_hard.size()) +
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
  for (std::size_t i : s.unexpected_hard) {
    const std::string u(s.keys[i]);
    for (std::string_view sfx : {".running_mean", ".running_var", ".num_batches_tracked"})
      if (ends_with(u, sfx) && s.a.target_set.count(u.substr(0, u.size() - sfx.size()) + ".weight")) stats.push_back(s.sources[i].key);
  }
  if (stats.empty()) return;
  const std::vector<std::string> globs = narrow_globs(stats, used_keys(s), {"*.running_*", "*.num_batches_tracked"});
  const std::string opt = calls("ignore_unexpected", globs);
  Suggestion sug{"the checkpoint has BatchNorm running statistics the model lacks (" + quoted_list(stats, true) +
                     "): was the model built with track_running_stats(false)? To leave them unused, use " + opt,
                 opt};
  sug.options = s.a.with([&](LoadOptions& o) {
    for (const auto& g : globs) o.ignore_unexpected(g);
  });
  s.fixes.push_back(std::move(sug));
}

/// The other way round: the model tracks running statistics the checkpoint does not have.
inline void advise_stats_in_module_only(Advice& s) {
  if (!s.unexpected_keys.empty() || s.missing_hard.empty()) return;
  std::vector<std::string> stats;
  for (const auto& m : s.missing_hard)
    for (std::string_view sfx : {".running_mean", ".running_var"})
      if (ends_with(m, sfx) &&
          s.r.missing.end() == std::find(s.r.missing.begin(), s.r.missing.end(), m.substr(0, m.size() - sfx.size()) + ".weight"))
        stats.push_back(m);
  if (stats.empty()) return;
  const std::vector<std::string> globs = narrow_globs(stats, module_keys_but(s.a, s.r.missing), {"*.running_mean", "*.running_var"});
  const std::string opt = calls("ignore_missing", globs);
  Suggestion sug{"the checkpoint has no BatchNorm running statistics (" + std::to_string(stats.size()) +
                     " running_mean/running_var tensors, the first \"" + stats.front() +
                     "\"; trained with track_running_stats=False?): build the model with track_running_stats(false), or keep "
                     "the model's initial statistics with " +
                     opt + " (eval-mode outputs then differ from the trained model's)",
                 opt};
  sug.options = s.a.with([&](LoadOptions& o) {
    for (const auto& g : globs) o.ignore_missing(g);
  });
  s.fixes.push_back(std::move(sug));
}

/// What is left when no key rule helps: module keys the checkpoint cannot fill and checkpoint keys
/// nothing uses (often both at once: a stale position_ids and a new inv_freq). One fix leaves
/// exactly those aside, saying what stays untrained; or, where no short list covers them, the
/// policies that let the load go on.
inline void advise_leftovers(Advice& s) {
  if (!s.fixes.empty() || (s.missing_hard.empty() && s.unexpected_hard.empty()) || !s.r.shape_mismatch.empty()) return;
  const std::vector<std::string> miss = narrow_globs(s.missing_hard, module_keys_but(s.a, s.r.missing));
  const std::vector<std::string> extra = narrow_globs(hard_unexpected(s), used_keys(s));
  std::string text, opt;
  if (!s.missing_hard.empty())
    text = "the checkpoint has no tensor for " + std::to_string(s.missing_hard.size()) +
           " module key(s), and no key rule can supply one (" + s.left_as_they_are(s.missing_hard) + ")";
  if (!s.unexpected_hard.empty())
    text += (text.empty() ? "" : "; and ") + std::to_string(s.unexpected_hard.size()) + " checkpoint key(s) match no module key (" +
            quoted_list(hard_unexpected(s), true) + ")";
  const bool short_list = miss.size() + extra.size() <= 8;
  if (short_list) {
    opt = calls("ignore_missing", miss);
    if (!extra.empty()) opt += (opt.empty() ? "" : ".") + calls("ignore_unexpected", extra);
  } else {
    if (!miss.empty()) opt = "missing(statedict::Policy::warn)";
    if (!extra.empty()) opt += (opt.empty() ? "" : ".") + std::string("unexpected(statedict::Policy::warn)");
  }
  text += short_list ? ": to load the rest, use " + opt
                     : ": no short list of globs covers exactly them; to load the rest (any other such key will then be only "
                       "a warning), use " +
                           opt;
  Suggestion sug{text, opt};
  sug.options = s.a.with([&](LoadOptions& o) {
    if (short_list) {
      for (const auto& g : miss) o.ignore_missing(g);
      for (const auto& g : extra) o.ignore_unexpected(g);
    } else {
      if (!miss.empty()) o.missing(Policy::warn);
      if (!extra.empty()) o.unexpected(Policy::warn);
    }
  });
  s.fixes.push_back(std::move(sug));
}

}  // namespace statedict::detail
