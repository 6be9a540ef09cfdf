#pragma once
// Keys: how checkpoint keys become module keys. Globs, the options' key
// rules (strip_prefix, add_prefix, rename), prefix reconciliation, and the search for the sub-tree
// of a checkpoint whose keys fit a module best.
#include <statedict/checkpoint.hpp>
#include <statedict/detail/key_index.hpp>
#include <statedict/options.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace statedict::detail {

/// A glob as the options take them: `*` any run of characters, `?` any one.
inline bool glob_match(std::string_view pat, std::string_view s) {
  std::size_t p = 0, i = 0, star = std::string::npos, mark = 0;
  while (i < s.size()) {
    if (p < pat.size() && (pat[p] == '?' || pat[p] == s[i])) {
      ++p;
      ++i;
    } else if (p < pat.size() && pat[p] == '*') {
      star = p++;
      mark = i;
    } else if (star != std::string::npos) {
      p = star + 1;
      i = ++mark;
    } else
      return false;
  }
  while (p < pat.size() && pat[p] == '*') ++p;
  return p == pat.size();
}

inline bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.substr(0, prefix.size()) == prefix;
}

/// Text escaped for an ECMAScript regex, and for a C++ string literal.
inline std::string regex_escape(const std::string& s) {
  std::string r;
  for (char c : s) {
    if (std::strchr("\\^$.|?*+()[]{}", c) != nullptr) r += '\\';
    r += c;
  }
  return r;
}
inline std::string cpp_escape(const std::string& s) {
  std::string r;
  for (char c : s) {
    if (c == '\\' || c == '"') r += '\\';
    r += c;
  }
  return r;
}

/// A rename of checkpoint keys starting with `from` (or equal to it, when `whole`) to `to` in their
/// place, as LoadOptions::rename("^" + escaped `from` [+ "$"], `to` with '$' doubled) writes it, but
/// applied without std::regex: the form statedict's suggestions use.
inline KeyRule literal_rename(const std::string& from, const std::string& to, bool whole) {
  std::string replacement;  // '$' is special in a regex replacement; "$$" is one '$'
  for (char c : to) replacement += c == '$' ? std::string("$$") : std::string(1, c);
  return {KeyRule::Kind::rename, "^" + regex_escape(from) + (whole ? "$" : ""), std::move(replacement), nullptr};
}
inline void add_literal_rename(LoadOptions& o, const std::string& from, const std::string& to, bool whole) {
  add_rule(o, literal_rename(from, to, whole));
}
/// A rename that is a literal_rename ("^" + an escaped prefix or key, optionally "$"): its `from`
/// and `to` as plain text. False for any other pattern.
inline bool literal_parts(const std::string& pattern, const std::string& replacement, std::string& from, std::string& to, bool& whole) {
  const auto literal = [&](bool w) {
    if (pattern.size() < (w ? 2u : 1u) || pattern[0] != '^') return false;
    const std::string escaped = pattern.substr(1, pattern.size() - (w ? 2 : 1));
    from.clear();
    for (std::size_t i = 0; i < escaped.size(); ++i) from += escaped[i] == '\\' && i + 1 < escaped.size() ? escaped[++i] : escaped[i];
    whole = w;
    return "^" + regex_escape(from) + (w ? "$" : "") == pattern;
  };
  if (!literal(false) && !literal(true)) return false;
  to.clear();
  for (std::size_t i = 0; i < replacement.size(); ++i) {
    to += replacement[i];
    if (replacement[i] == '$' && i + 1 < replacement.size() && replacement[i + 1] == '$') ++i;
  }
  return true;
}
/// What a rule without a `compile` function is: a literal_rename, applied with string compares as
/// std::regex_replace would apply its pattern. Any other pattern there is options.bad_regex.
inline Rewrite compile_literal(const std::string& pattern, const std::string& replacement) {
  std::string from, to;
  bool whole = false;
  if (!literal_parts(pattern, replacement, from, to, whole))
    throw Error("options.bad_regex", "", "rename(\"" + pattern + "\")", "a rename without a regex engine must be a literal prefix or key");
  return [from, to, whole](const std::string& k) {
    if (whole ? k != from : !starts_with(k, from)) return k;
    return to + k.substr(from.size());
  };
}
/// The LoadOptions call that does the same, as C++ source: rename("^fc\\.", "head.").
inline std::string literal_rename_text(const std::string& from, const std::string& to, bool whole) {
  const KeyRule r = literal_rename(from, to, whole);
  return "rename(\"" + cpp_escape(r.pattern) + "\", \"" + cpp_escape(r.replacement) + "\")";
}

/// A prefix difference between checkpoint and module keys. Strip alone removes the prefix where a
/// key has it; add alone prefixes every key (the model is wrapped); both replace the prefix on the
/// keys that have it and leave every other key alone (a renamed layer: "fc." -> "classifier.").
struct PrefixFix {
  std::string strip, add;
  std::size_t matches = 0;
  bool identity() const { return strip.empty() && add.empty(); }
  std::string apply(std::string_view k) const {
    const bool has = !strip.empty() && starts_with(k, strip);
    if (!strip.empty() && !add.empty() && !has) return std::string(k);
    std::string out = add;
    out += has ? k.substr(strip.size()) : k;
    return out;
  }
  std::string option() const {
    if (!strip.empty() && !add.empty()) return literal_rename_text(strip, add, false);
    return strip.empty() ? "add_prefix(\"" + add + "\")" : "strip_prefix(\"" + strip + "\")";
  }
  /// The same as LoadOptions calls, appended to `o`'s key rules.
  void add_to(LoadOptions& o) const {
    if (!strip.empty() && !add.empty())
      add_literal_rename(o, strip, add, false);
    else if (!strip.empty())
      o.strip_prefix(strip);
    else if (!add.empty())
      o.add_prefix(add);
  }
};

/// Prefixes of one or two dotted components shared by at least a quarter of the keys.
template <class Keys> std::vector<std::string> common_prefixes(const Keys& keys) {
  std::unordered_map<std::string_view, std::size_t> count;
  for (std::string_view k : keys) {
    std::size_t dot = k.find('.');
    for (int depth = 0; depth < 2 && dot != std::string::npos; ++depth) {
      ++count[k.substr(0, dot + 1)];
      dot = k.find('.', dot + 1);
    }
  }
  std::vector<std::string> out{""};
  for (const auto& [p, c] : count)
    if (c * 4 >= keys.size() && c > 0) out.emplace_back(p);
  std::sort(out.begin(), out.end());
  return out;
}

/// The prefix fix that pairs the most checkpoint keys with module keys (ties: the simplest).
template <class Keys> PrefixFix best_prefix_fix(const Keys& source, const KeyIndex& targets) {
  PrefixFix best;
  for (std::string_view k : source) best.matches += targets.count(k);
  const std::vector<std::string> adds = common_prefixes(targets.keys());
  for (const auto& strip : common_prefixes(source))
    for (const auto& add : adds) {
      if (strip.empty() && add.empty()) continue;
      if (strip == add) continue;
      PrefixFix f{strip, add, 0};
      for (std::string_view k : source) f.matches += targets.count(f.apply(k));
      const auto cost = [](const PrefixFix& x) { return (x.strip.empty() ? 0 : 1) + (x.add.empty() ? 0 : 1); };
      if (f.matches > best.matches || (f.matches == best.matches && f.matches > 0 && cost(f) < cost(best))) best = f;
    }
  return best;
}

/// Applies LoadOptions' key rules (strip_prefix, add_prefix, rename) in order.
class KeyRewriter {
public:
  explicit KeyRewriter(const std::vector<KeyRule>& rules) : rules_(rules), renames_(rules.size()) {
    for (std::size_t j = 0; j < rules_.size(); ++j) {
      const KeyRule& rule = rules_[j];
      if (rule.kind == KeyRule::Kind::rename)
        renames_[j] = (rule.compile != nullptr ? rule.compile : &compile_literal)(rule.pattern, rule.replacement);
    }
  }
  /// The rewritten key; `used` (if given) receives the rules that changed it, joined by '.';
  /// `fired` (if given, one flag per rule) has the flag of each rule that changed it set.
  std::string apply(const std::string& key, std::string* used = nullptr, std::vector<char>* fired = nullptr) const {
    if (fired != nullptr) fired->resize(rules_.size(), 0);
    std::string k = key;
    for (std::size_t j = 0; j < rules_.size(); ++j) {
      const KeyRule& rule = rules_[j];
      const std::string before = k;
      if (rule.kind == KeyRule::Kind::strip_prefix && starts_with(k, rule.pattern))
        k = k.substr(rule.pattern.size());
      else if (rule.kind == KeyRule::Kind::add_prefix)
        k = rule.pattern + k;
      else if (rule.kind == KeyRule::Kind::rename)
        k = renames_[j](k);
      if (k == before) continue;
      if (used != nullptr) *used += (used->empty() ? "" : ".") + rule.text();
      if (fired != nullptr) (*fired)[j] = 1;
    }
    return k;
  }

private:
  std::vector<KeyRule> rules_;
  std::vector<Rewrite> renames_;  // a rename rule's, made once; empty for the others
};

/// Warnings for the key rules that changed no key (`fired` as KeyRewriter::apply fills it): a
/// strip_prefix or rename that matches nothing is almost always a typo or the wrong sub-tree.
inline std::vector<std::string> unused_rules(const std::vector<KeyRule>& rules, const std::vector<char>& fired) {
  std::vector<std::string> out;
  for (std::size_t j = 0; j < rules.size(); ++j) {
    if (j < fired.size() && fired[j]) continue;
    const KeyRule& rule = rules[j];
    const std::string why = rule.kind == KeyRule::Kind::strip_prefix ? "no checkpoint key starts with \"" + rule.pattern + "\""
                            : rule.kind == KeyRule::Kind::rename     ? "its pattern matches no checkpoint key"
                                                                     : "it adds nothing";
    out.push_back(rule.text() + " changed no key: " + why);
  }
  return out;
}

/// A sub-tree of a checkpoint that may hold a module's tensors: where, how many of its keys pair with
/// the module's (after `fix`), and how many keys it has.
struct Candidate {
  std::string path;
  std::size_t score = 0;
  std::size_t keys = 0;
  PrefixFix fix;
};

/// Sub-trees worth selecting: the root and every dict-like value down to depth 3 holding tensors.
inline void list_subtrees(const Value& v, const std::string& path, int depth, std::vector<std::pair<std::string, Value>>& out) {
  // An optimizer's state_dict ({"state", "param_groups"}) holds per-parameter buffers, never a model.
  if (v.is_dict() && v.find("state") && v.find("param_groups")) return;
  if (v.is_dict()) {
    out.emplace_back(path, v);
    if (depth >= 3) return;
    const auto items = v.items();
    const auto keys = v.keys();
    for (std::size_t i = 0; i < items.size(); ++i) {
      const Value& child = items[i].second;
      if (child.is_dict() || child.kind() == Kind::object)
        list_subtrees(child, path.empty() ? keys[i] : path + "." + keys[i], depth + 1, out);
    }
  } else if (v.kind() == Kind::object && v.object_state() && v.object_state()->is_dict() && depth < 3) {
    list_subtrees(*v.object_state(), path, depth + 1, out);
  }
}

/// The sub-tree whose keys best fit the targets (with prefix reconciliation when `with_prefix`).
inline Candidate best_subtree(const Value& root, const KeyIndex& targets, bool with_prefix) {
  std::vector<std::pair<std::string, Value>> subs;
  list_subtrees(root, "", 0, subs);
  if (subs.empty()) subs.emplace_back("", root);
  Candidate best;
  bool first = true;
  for (const auto& [path, v] : subs) {
    std::vector<std::string> keys;
    for (const auto& t : lazy_tensors(v)) keys.push_back(t.key);
    if (keys.empty()) continue;
    Candidate c{path, 0, keys.size(), {}};
    if (with_prefix) {
      c.fix = best_prefix_fix(keys, targets);
      c.score = c.fix.matches;
    } else {
      for (const auto& k : keys) c.score += targets.count(k);
    }
    // Ties go to the narrower sub-tree (fewer keys left unused), then to the one that needs no prefix
    // rule, then to the deeper path.
    auto rank = [](const Candidate& x) {
      const int cost = (x.fix.strip.empty() ? 0 : 1) + (x.fix.add.empty() ? 0 : 1);
      return std::make_tuple(x.score, -static_cast<long long>(x.keys), -cost,
                             std::count(x.path.begin(), x.path.end(), '.') + (x.path.empty() ? 0 : 1));
    };
    if (first || rank(c) > rank(best)) {
      best = c;
      first = false;
    }
  }
  return best;
}

}  // namespace statedict::detail
