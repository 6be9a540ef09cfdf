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
  // Components are interned: ids in order of first appearance, so alternatives print in key order.
  std::vector<std::string_view> names;
  std::unordered_map<std::string_view, std::uint32_t> ids;
  using Alts = std::vector<std::uint32_t>;  // one component's alternatives, sorted by id
  struct Entry {
    std::size_t first;        // index of the first key it covers
    std::vector<Alts> parts;  // one per component
    bool dead = false;        // merged into another
  };
  std::vector<Entry> entries;
  entries.reserve(keys.size());
  {
    std::unordered_map<std::string_view, char> seen;
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
        e.parts.push_back({it->second});
        if (dot == std::string_view::npos) break;
        s = dot + 1;
      }
      entries.push_back(std::move(e));
    }
  }
  auto all_indices = [&](const Alts& a) {
    return std::all_of(a.begin(), a.end(), [&](std::uint32_t id) { return index_component(names[id]); });
  };
  // Merges entries that differ only in component `p` (and have as many components); with
  // `indices_only`, only where both sides of `p` are indices. Returns whether anything merged.
  auto merge_at = [&](std::size_t p, bool indices_only) {
    std::unordered_map<std::string, std::size_t> by_rest;  // the other components, serialised -> entry
    bool merged = false;
    std::string sig;
    for (std::size_t i = 0; i < entries.size(); ++i) {
      Entry& e = entries[i];
      if (e.dead || e.parts.size() <= p || (indices_only && !all_indices(e.parts[p]))) continue;
      sig.assign(std::to_string(e.parts.size())).push_back('|');
      for (std::size_t c = 0; c < e.parts.size(); ++c) {
        if (c == p) {
          sig += '*';
        } else {
          for (std::uint32_t id : e.parts[c]) sig.append(std::to_string(id)).push_back(',');
        }
        sig += '|';
      }
      const auto [it, fresh] = by_rest.emplace(sig, i);
      if (fresh) continue;
      Entry& into = entries[it->second];
      Alts joined;
      joined.reserve(into.parts[p].size() + e.parts[p].size());
      std::merge(into.parts[p].begin(), into.parts[p].end(), e.parts[p].begin(), e.parts[p].end(), std::back_inserter(joined));
      into.parts[p] = std::move(joined);
      into.first = std::min(into.first, e.first);
      e.dead = true;
      merged = true;
    }
    if (merged) entries.erase(std::remove_if(entries.begin(), entries.end(), [](const Entry& e) { return e.dead; }), entries.end());
    return merged;
  };
  std::size_t longest = 0;
  for (const Entry& e : entries) longest = std::max(longest, e.parts.size());
  for (std::size_t p = longest; p-- > 0;) merge_at(p, true);
  for (bool again = true; again;) {
    again = false;
    for (std::size_t p = longest; p-- > 0;) again = merge_at(p, false) || again;
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.first < b.first; });
  std::vector<FoldedKeys> out;
  out.reserve(entries.size());
  for (const Entry& e : entries) {
    FoldedKeys f{{}, 1};
    for (std::size_t c = 0; c < e.parts.size(); ++c) {
      if (c) f.text += '.';
      f.count *= e.parts[c].size();
      if (e.parts[c].size() == 1) {
        f.text.append(names[e.parts[c][0]]);
        continue;
      }
      std::vector<std::string_view> alts;
      alts.reserve(e.parts[c].size());
      for (std::uint32_t id : e.parts[c]) alts.push_back(names[id]);
      f.text += "{" + alternatives_text(alts) + "}";
    }
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace statedict::detail
