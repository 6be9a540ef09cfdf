#pragma once
// Folding a list of dotted keys for printing: "layers.{0..95}.attn.{q,k,v}.weight" for 288 keys.
// A folded entry stands for the product of its components' alternatives, and two entries merge only
// where they differ in one component, so every entry expands to exactly the keys it replaced: the
// counts printed beside them are exact. Only text is folded; reports keep every key.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace statedict::detail {

/// One printed entry and the number of keys it stands for.
struct FoldedKeys {
  std::string text;
  std::size_t count = 0;
};

/// A component that is an index (ModuleList, Sequential): digits, no leading zero, fits 64 bits.
inline bool index_component(std::string_view s) {
  if (s.empty() || s.size() > 18 || (s.size() > 1 && s[0] == '0')) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

/// Alternatives as printed: indices as sorted runs ("0..3,5,7..9"; a run of two is "5,6"), anything
/// else in the order the keys gave them.
inline std::string alternatives_text(const std::vector<std::string_view>& alts) {
  const bool indices = std::all_of(alts.begin(), alts.end(), [](std::string_view a) { return index_component(a); });
  std::string out;
  if (!indices) {
    for (std::size_t i = 0; i < alts.size(); ++i) out.append(i ? "," : "").append(alts[i]);
    return out;
  }
  std::vector<std::uint64_t> v;
  v.reserve(alts.size());
  for (std::string_view a : alts) v.push_back(std::stoull(std::string(a)));
  std::sort(v.begin(), v.end());
  for (std::size_t i = 0; i < v.size();) {
    std::size_t j = i;
    while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
    if (!out.empty()) out += ',';
    if (j - i >= 2)
      out += std::to_string(v[i]) + ".." + std::to_string(v[j]);
    else if (j == i + 1)
      out += std::to_string(v[i]) + "," + std::to_string(v[j]);
    else
      out += std::to_string(v[i]);
    i = j + 1;
  }
  return out;
}

/// Folds `keys` (distinct; duplicates are counted once) into entries, in the order of the first key
/// each covers. Index components fold first (the same name across layers), then any component,
/// from the last to the first (the parameters of one module), until nothing merges.
inline std::vector<FoldedKeys> fold_keys(const std::vector<std::string>& keys) {
  // Components are interned: name ids in order of first appearance, so alternatives print in key
  // order. An entry's component is a set id: below names.size() the set of that one name, else
  // sets[id - names.size()] (sorted name ids). One small vector an entry: 200k keys fold in a blink.
  std::vector<std::string_view> names;
  std::unordered_map<std::string_view, std::uint32_t> ids;
  struct Entry {
    std::size_t first;                // index of the first key it covers
    std::vector<std::uint32_t> sets;  // one per component
    bool dead = false;                // merged into another
  };
  std::vector<Entry> entries;
  entries.reserve(keys.size());
  {
    std::unordered_map<std::string_view, char> seen;
    seen.reserve(keys.size());
    for (std::size_t k = 0; k < keys.size(); ++k) {
      const std::string_view key = keys[k];
      if (!seen.emplace(key, 0).second) continue;
      Entry e{k, {}, false};
      std::size_t s = 0;
      while (true) {
        const std::size_t dot = key.find('.', s);
        const std::string_view part = key.substr(s, dot == std::string_view::npos ? std::string_view::npos : dot - s);
        const auto it = ids.emplace(part, static_cast<std::uint32_t>(names.size())).first;
        if (it->second == names.size()) names.push_back(part);
        e.sets.push_back(it->second);
        if (dot == std::string_view::npos) break;
        s = dot + 1;
      }
      entries.push_back(std::move(e));
    }
  }
  const auto n_names = static_cast<std::uint32_t>(names.size());
  std::vector<std::vector<std::uint32_t>> sets;  // the sets of more than one name
  std::vector<char> set_is_indices;
  std::unordered_map<std::string, std::uint32_t> set_ids;  // a set's members (their bytes) -> its id
  std::vector<char> name_is_index(names.size());
  for (std::size_t i = 0; i < names.size(); ++i) name_is_index[i] = index_component(names[i]);
  auto members = [&](std::uint32_t set, std::vector<std::uint32_t>& out) {
    if (set < n_names)
      out.push_back(set);
    else
      out.insert(out.end(), sets[set - n_names].begin(), sets[set - n_names].end());
  };
  auto size_of = [&](std::uint32_t set) { return set < n_names ? std::size_t{1} : sets[set - n_names].size(); };
  auto indices = [&](std::uint32_t set) { return set < n_names ? name_is_index[set] != 0 : set_is_indices[set - n_names] != 0; };
  // Merges entries that differ only in component `p` (and have as many components); with
  // `indices_only`, only where both sides of `p` are indices. Each group of entries alike but for
  // `p` becomes one, its sets joined once. Returns whether anything merged.
  auto merge_at = [&](std::size_t p, bool indices_only) {
    std::unordered_map<std::string, std::size_t> group_of;
    std::vector<std::vector<std::size_t>> groups;
    std::string sig;
    for (std::size_t i = 0; i < entries.size(); ++i) {
      const Entry& e = entries[i];
      if (e.sets.size() <= p || (indices_only && !indices(e.sets[p]))) continue;
      sig.assign(reinterpret_cast<const char*>(e.sets.data()), e.sets.size() * sizeof(std::uint32_t));
      std::fill_n(&sig[p * sizeof(std::uint32_t)], sizeof(std::uint32_t), '\xff');  // any set at `p`
      const auto [it, fresh] = group_of.emplace(sig, groups.size());
      if (fresh) groups.emplace_back();
      groups[it->second].push_back(i);
    }
    bool merged = false;
    std::vector<std::uint32_t> joined;
    for (const auto& g : groups) {
      if (g.size() < 2) continue;
      joined.clear();
      bool all_indices = true;
      for (std::size_t i : g) {
        members(entries[i].sets[p], joined);
        all_indices = all_indices && indices(entries[i].sets[p]);
        if (i != g[0]) {
          entries[g[0]].first = std::min(entries[g[0]].first, entries[i].first);
          entries[i].dead = true;
        }
      }
      std::sort(joined.begin(), joined.end());  // the entries cover distinct keys: no name twice
      // Equal sets get one id, so that entries alike in them merge later.
      const auto [it, fresh] =
          set_ids.emplace(std::string(reinterpret_cast<const char*>(joined.data()), joined.size() * sizeof(std::uint32_t)),
                          n_names + static_cast<std::uint32_t>(sets.size()));
      if (fresh) {
        sets.push_back(joined);
        set_is_indices.push_back(all_indices);
      }
      entries[g[0]].sets[p] = it->second;
      merged = true;
    }
    if (merged) entries.erase(std::remove_if(entries.begin(), entries.end(), [](const Entry& e) { return e.dead; }), entries.end());
    return merged;
  };
  std::size_t longest = 0;
  for (const Entry& e : entries) longest = std::max(longest, e.sets.size());
  for (std::size_t p = longest; p-- > 0;) merge_at(p, true);
  for (bool again = true; again;) {
    again = false;
    for (std::size_t p = longest; p-- > 0;) again = merge_at(p, false) || again;
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& x, const Entry& y) { return x.first < y.first; });
  std::vector<FoldedKeys> out;
  out.reserve(entries.size());
  std::vector<std::uint32_t> m;
  for (const Entry& e : entries) {
    FoldedKeys f{{}, 1};
    for (std::size_t c = 0; c < e.sets.size(); ++c) {
      if (c) f.text += '.';
      f.count *= size_of(e.sets[c]);
      if (e.sets[c] < n_names) {
        f.text.append(names[e.sets[c]]);
        continue;
      }
      m.clear();
      members(e.sets[c], m);
      std::vector<std::string_view> alts;
      alts.reserve(m.size());
      for (std::uint32_t id : m) alts.push_back(names[id]);
      f.text += "{" + alternatives_text(alts) + "}";
    }
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace statedict::detail
