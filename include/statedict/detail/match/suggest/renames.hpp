#pragma once
// Suggestions for renamed keys: a missing key and an unused checkpoint key that differ a little,
// and several such pairs that are one renamed layer.
#include <statedict/detail/match/keys.hpp>
#include <statedict/detail/match/suggest/advice.hpp>
#include <statedict/detail/match/suggest/text.hpp>

#include <algorithm>
#include <string>
#include <utility>

namespace statedict::detail {

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
    std::size_t best_d = 2 * (cap + 1);
    for (std::size_t j = 0; j < s.unexpected_keys.size(); ++j) {
      const std::string& u = s.unexpected_keys[j];
      const bool suffix = u.size() > m.size() && u.compare(u.size() - m.size(), m.size(), m) == 0 && u[u.size() - m.size() - 1] == '.';
      const std::size_t d = suffix ? 1 : one_component_apart(m, u) ? 2 : edit_distance(m, u, cap);
      if (d > cap) continue;
      const bool fits = ti != KeyIndex::none && s.sources[s.unexpected_at[j]].shape() == s.a.targets[ti].tensor.sizes().vec();
      if (2 * d + (fits ? 0 : 1) < best_d) {
        best_d = 2 * d + (fits ? 0 : 1);
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
