#pragma once
// Suggestions for renamed keys: a missing key and an unused checkpoint key that differ a little,
// and several such pairs that are one renamed layer.
#include <statedict/detail/match/keys.hpp>
#include <statedict/detail/match/suggest/advice.hpp>
#include <statedict/detail/match/suggest/text.hpp>

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>
#include <utility>

namespace statedict::detail {

/// Legacy parameter names (LayerNorm gamma/beta, weight_norm's weight_g/weight_v): where the
/// built-in rename families make unexpected keys match missing ones, offer legacy_names(), which
/// renames a parent's keys together and never one that already matches (a LayerScale `gamma`).
inline void advise_legacy_names(Advice& s) {
  if (s.r.missing.empty() || s.unexpected_keys.empty()) return;
  const std::vector<RenameFamily> families = RenameFamily::legacy();
  const KeyIndex all(s.keys);
  const auto has = [&](const std::string& k) { return all.count(k) > 0; };
  const KeyIndex missing_set(std::vector<std::string_view>(s.r.missing.begin(), s.r.missing.end()));
  std::vector<std::string> from, names;
  for (const auto& u : s.unexpected_keys) {
    const auto r = family_rename(families, u, has, &s.a.target_set);
    if (r.first.empty() || !missing_set.count(r.first)) continue;
    from.push_back(u);
    s.explained.insert(r.first);
    if (std::find(names.begin(), names.end(), r.second) == names.end()) names.push_back(r.second);
  }
  if (from.empty()) return;
  std::string which;
  for (const auto& n : names)
    which += (which.empty() ? "" : " and ") + std::string(n == "layer_norm" ? "LayerNorm's gamma/beta for weight/bias"
                                                          : n == "weight_norm"
                                                              ? "weight_norm's weight_g/weight_v for parametrizations.weight.original0/1"
                                                              : "parametrizations.weight.original0/1 for weight_norm's weight_g/weight_v");
  Suggestion sug{std::to_string(from.size()) + " checkpoint key(s) (" + quoted_list(from, true) + ") use legacy names (" + which +
                     "); renamed together on each parent, only where the module has the new name and not the old: use legacy_names()",
                 "legacy_names()"};
  sug.options = s.a.with([](LoadOptions& o) { o.legacy_names(); });
  s.fixes.push_back(std::move(sug));
}

/// Near misses: a missing key and an unused checkpoint key that differ a little.
inline void advise_near_misses(Advice& s) {
  if (s.r.missing.size() > 200 || s.unexpected_keys.size() > 2000) return;
  for (const auto& m : s.r.missing) {
    if (s.near.size() >= 5) break;
    if (s.explained.count(m)) continue;
    const std::size_t cap = std::max<std::size_t>(2, m.size() / 10);
    const std::size_t ti = s.a.target_set.find(m);
    std::string best_key;
    // Closest name first; among equally close ones, a tensor of the module's shape.
    std::size_t best_d = 2 * (cap + 1), best_spell = 0;
    for (std::size_t j = 0; j < s.unexpected_keys.size(); ++j) {
      const std::string& u = s.unexpected_keys[j];
      const bool suffix = u.size() > m.size() && u.compare(u.size() - m.size(), m.size(), m) == 0 && u[u.size() - m.size() - 1] == '.';
      const std::size_t d = suffix ? 1 : one_component_apart(m, u) ? 2 : edit_distance(m, u, cap);
      if (d > cap) continue;
      const bool fits = ti != KeyIndex::none && s.sources[s.unexpected_at[j]].shape() == s.a.targets[ti].tensor.sizes().vec();
      // Equally close by components ("norm.gamma" and "norm.beta" for "norm.bias"): the closer spelling.
      const std::size_t spell = edit_distance(m, u, m.size() + u.size());
      if (2 * d + (fits ? 0 : 1) < best_d || (2 * d + (fits ? 0 : 1) == best_d && spell < best_spell)) {
        best_d = 2 * d + (fits ? 0 : 1);
        best_spell = spell;
        best_key = u;
      }
    }
    if (best_key.empty()) continue;
    const std::string opt = literal_rename_text(best_key, m, true);
    Suggestion sug{"missing \"" + m + "\" looks like checkpoint key \"" + best_key + "\": use " + opt, opt};
    sug.options = s.a.with([&](LoadOptions& o) { add_literal_rename(o, best_key, m, true); });
    s.fixes.push_back(std::move(sug));
    s.near.emplace_back(best_key, m);
  }
}

/// Several near misses that are one renamed layer ("fc.weight"/"fc.bias" -> "head.*"): one rename
/// of the keys' common part up to the differing component, which also covers what was not listed.
inline void advise_renamed_layer(Advice& s) {
  if (s.near.size() < 2) return;
  std::string from, to;
  for (const auto& [u, m] : s.near) {
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
  sug.options = s.a.with([&](LoadOptions& o) { add_literal_rename(o, from, to, false); });
  s.fixes.push_back(std::move(sug));
}

}  // namespace statedict::detail
