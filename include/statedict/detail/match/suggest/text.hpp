#pragma once
// Small text helpers the suggestion families share: how keys compare, how options are written.
#include <statedict/checkpoint.hpp>
#include <statedict/detail/match/keys.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace statedict::detail {

/// Same dotted components but one ("fc.weight" and "head.weight").
inline bool one_component_apart(const std::string& a, const std::string& b) {
  std::size_t i = 0, j = 0, diffs = 0;
  while (true) {
    const std::size_t ea = a.find('.', i), eb = b.find('.', j);
    if (a.compare(i, ea == std::string::npos ? std::string::npos : ea - i, b, j, eb == std::string::npos ? std::string::npos : eb - j) != 0)
      ++diffs;
    if (ea == std::string::npos || eb == std::string::npos) return ea == eb && diffs == 1;
    i = ea + 1;
    j = eb + 1;
  }
}

inline std::size_t edit_distance(const std::string& a, const std::string& b, std::size_t cap) {
  if (a.size() > b.size() + cap || b.size() > a.size() + cap) return cap + 1;
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    std::size_t row_min = cur[0];
    for (std::size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      row_min = std::min(row_min, cur[j]);
    }
    if (row_min > cap) return cap + 1;
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

inline std::vector<std::string> top_level_keys(const Value& root) { return root.is_dict() ? root.keys() : std::vector<std::string>{}; }

inline std::string join_quoted(const std::vector<std::string>& v, std::size_t max) {
  std::string s;
  for (std::size_t i = 0; i < v.size() && i < max; ++i) s += (i ? ", '" : "'") + v[i] + "'";
  if (v.size() > max) s += ", ...";
  return s;
}

/// One glob per first dotted component ("backbone.*"), in order of first appearance.
inline std::vector<std::string> group_globs(const std::vector<std::string>& keys) {
  std::vector<std::string> globs;
  for (const auto& k : keys) {
    const std::size_t dot = k.find('.');
    std::string g = dot == std::string::npos ? k : k.substr(0, dot + 1) + "*";
    if (std::find(globs.begin(), globs.end(), g) == globs.end()) globs.push_back(std::move(g));
  }
  return globs;
}

/// `name("a").name("b")`, as the option calls are written.
inline std::string calls(const char* name, const std::vector<std::string>& args) {
  std::string out;
  for (const auto& g : args) out += (out.empty() ? "" : ".") + std::string(name) + "(\"" + cpp_escape(g) + "\")";
  return out;
}

inline bool ends_with(std::string_view s, std::string_view sfx) {
  return s.size() > sfx.size() && s.compare(s.size() - sfx.size(), sfx.size(), sfx) == 0;
}

inline std::int64_t numel(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

}  // namespace statedict::detail
