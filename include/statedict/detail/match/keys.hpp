#pragma once
// Keys: how checkpoint keys become module keys. Globs, the options' key
// rules (strip_prefix, add_prefix, rename), prefix reconciliation, and the search for the sub-tree
// of a checkpoint whose keys fit a module best.
#if !defined(STATEDICT_DETAIL_KEYS_FIRST)
#define STATEDICT_DETAIL_KEYS_FIRST  // options.hpp leaves options_file.hpp to the end of this header
#endif
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

/// Whether a path or prefix names an average of the weights (an EMA or SWA copy) by one of its
/// words: "state_dict_ema", "model_ema.module.", "swa_model", "shadow".
inline bool names_an_average(std::string_view path) {
  std::size_t i = 0;
  while (i <= path.size()) {
    std::size_t j = path.find_first_of("._", i);
    if (j == std::string_view::npos) j = path.size();
    const std::string_view w = path.substr(i, j - i);
    for (std::string_view avg : {"ema", "swa", "avg", "average", "averaged", "shadow"})
      if (w == avg) return true;
    i = j + 1;
  }
  return false;
}

/// The prefix fixes that pair the most checkpoint keys with module keys, one per distinct set of
/// checkpoint keys paired (two copies of a model under "model." and "model_ema.module." are two
/// entries; strip "a." and rename "a." to "" are one, the simplest). Ordered by the rule a tie
/// follows: a prefix that does not name an average first, then the simplest, then the first in
/// sorted order. The first entry may pair nothing (the identity).
template <class Keys> std::vector<PrefixFix> best_prefix_fixes(const Keys& source, const KeyIndex& targets) {
  struct Found {
    PrefixFix fix;
    std::vector<std::size_t> paired;
  };
  const auto cost = [](const PrefixFix& x) { return (x.strip.empty() ? 0 : 1) + (x.add.empty() ? 0 : 1); };
  const auto evaluate = [&](PrefixFix f) {
    Found out{std::move(f), {}};
    std::size_t i = 0;
    for (std::string_view k : source) {
      if (targets.count(out.fix.apply(k))) out.paired.push_back(i);
      ++i;
    }
    out.fix.matches = out.paired.size();
    return out;
  };
  std::vector<Found> best{evaluate(PrefixFix{})};
  const std::vector<std::string> adds = common_prefixes(targets.keys());
  for (const auto& strip : common_prefixes(source))
    for (const auto& add : adds) {
      if ((strip.empty() && add.empty()) || strip == add) continue;
      Found f = evaluate(PrefixFix{strip, add, 0});
      if (f.fix.matches < best.front().fix.matches || f.fix.matches == 0) continue;
      if (f.fix.matches > best.front().fix.matches) best.clear();
      const auto same = std::find_if(best.begin(), best.end(), [&](const Found& b) { return b.paired == f.paired; });
      if (same == best.end())
        best.push_back(std::move(f));
      else if (cost(f.fix) < cost(same->fix))
        *same = std::move(f);
    }
  std::vector<PrefixFix> out;
  for (auto& b : best) out.push_back(std::move(b.fix));
  std::stable_sort(out.begin(), out.end(), [&](const PrefixFix& x, const PrefixFix& y) {
    const bool ax = names_an_average(x.strip + x.add), ay = names_an_average(y.strip + y.add);
    if (ax != ay) return ay;
    return cost(x) < cost(y);
  });
  return out;
}

/// The prefix fix that pairs the most checkpoint keys (ties: as best_prefix_fixes orders them).
template <class Keys> PrefixFix best_prefix_fix(const Keys& source, const KeyIndex& targets) {
  return best_prefix_fixes(source, targets).front();
}

/// The renames of `families` that apply to checkpoint key `key` (after the key rules): a rename of
/// the family of a parent whose old names are all in `keys` and whose new names none are; with
/// `module` given, only a key no module key is into one the module has. Returns the new key and
/// the family's name, or an empty key.
template <class Has>
std::pair<std::string, std::string> family_rename(const std::vector<RenameFamily>& families, const std::string& key, const Has& has,
                                                  const KeyIndex* module) {
  if (module != nullptr && module->count(key)) return {};
  for (const RenameFamily& fam : families)
    for (const auto& [from, to] : fam.renames) {
      if (!(key == from || (key.size() > from.size() && key.compare(key.size() - from.size(), from.size(), from) == 0 &&
                            key[key.size() - from.size() - 1] == '.')))
        continue;
      const std::string parent = key.substr(0, key.size() - from.size());
      const bool whole = std::all_of(fam.renames.begin(), fam.renames.end(), [&](const auto& r) { return has(parent + r.first); });
      const bool clear = std::none_of(fam.renames.begin(), fam.renames.end(), [&](const auto& r) { return has(parent + r.second); });
      if (!whole || !clear) continue;
      std::string renamed = parent + to;
      if (module != nullptr && !module->count(renamed)) continue;
      return {std::move(renamed), fam.name};
    }
  return {};
}

/// `key` with every occurrence of the path segment `seg` ("_orig_mod.") removed: at the start, or
/// right after a dot.
inline std::string without_segment(const std::string& key, const std::string& seg) {
  if (seg.empty()) return key;
  std::string out;
  std::size_t i = 0;
  while (i < key.size()) {
    if ((i == 0 || key[i - 1] == '.') && key.compare(i, seg.size(), seg) == 0) {
      i += seg.size();
      continue;
    }
    const std::size_t dot = key.find('.', i);
    const std::size_t end = dot == std::string::npos ? key.size() : dot + 1;
    out.append(key, i, end - i);
    i = end;
  }
  return out;
}

/// Applies LoadOptions' key rules (strip_prefix, add_prefix, rename, strip_segment) in order.
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
      else if (rule.kind == KeyRule::Kind::strip_segment)
        k = without_segment(k, rule.pattern);
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
    const std::string why = rule.kind == KeyRule::Kind::strip_prefix    ? "no checkpoint key starts with \"" + rule.pattern + "\""
                            : rule.kind == KeyRule::Kind::rename        ? "its pattern matches no checkpoint key"
                            : rule.kind == KeyRule::Kind::strip_segment ? "no checkpoint key has the segment \"" + rule.pattern + "\""
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
  if (is_optimizer_state(v)) return;
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

/// The sub-trees whose keys fit the targets best (with prefix reconciliation when `with_prefix`):
/// the best first, then any other that pairs as many module keys with other checkpoint tensors (a
/// raw and an EMA copy of the model). Among those, and among sub-trees that pair the same tensors,
/// the order is the rule auto_select follows on a tie: a sub-tree (and prefix) whose name does not
/// mark an average (names_an_average) first, then the narrower sub-tree (fewer keys left unused),
/// then the one that needs no prefix rule, then the deeper path, then the first in the file.
inline std::vector<Candidate> subtree_alternatives(const Value& root, const KeyIndex& targets, bool with_prefix) {
  std::vector<std::pair<std::string, Value>> subs;
  list_subtrees(root, "", 0, subs);
  if (subs.empty()) subs.emplace_back("", root);
  struct Found {
    Candidate c;
    std::vector<std::string> paired;  // the full paths of the checkpoint tensors it pairs, sorted
  };
  std::vector<Found> found;
  for (const auto& [path, v] : subs) {
    std::vector<std::string> keys;
    for (const auto& t : lazy_tensors(v)) keys.push_back(t.key);
    if (keys.empty()) continue;
    // Not a conditional of two temporaries: g++ 16 takes that for a dangling pointer (-Wdangling-pointer).
    std::vector<PrefixFix> fixes(1);
    if (with_prefix) fixes = best_prefix_fixes(keys, targets);
    for (const PrefixFix& fix : fixes) {
      Found f{{path, 0, keys.size(), fix}, {}};
      for (const auto& k : keys)
        if (targets.count(fix.apply(k))) f.paired.push_back(path.empty() ? k : path + "." + k);
      f.c.score = f.paired.size();
      if (!found.empty() && f.c.score < found.front().c.score) continue;
      if (!found.empty() && f.c.score > found.front().c.score) found.clear();
      std::sort(f.paired.begin(), f.paired.end());
      found.push_back(std::move(f));
    }
  }
  const auto rank = [](const Candidate& x) {
    const int cost = (x.fix.strip.empty() ? 0 : 1) + (x.fix.add.empty() ? 0 : 1);
    return std::make_tuple(!names_an_average(x.path + "." + x.fix.strip + x.fix.add), -static_cast<long long>(x.keys), -cost,
                           std::count(x.path.begin(), x.path.end(), '.') + (x.path.empty() ? 0 : 1));
  };
  std::stable_sort(found.begin(), found.end(), [&](const Found& x, const Found& y) { return rank(x.c) > rank(y.c); });
  std::vector<Candidate> out;
  std::vector<const std::vector<std::string>*> seen;
  for (const Found& f : found) {
    if (std::any_of(seen.begin(), seen.end(), [&](const auto* p) { return *p == f.paired; })) continue;
    seen.push_back(&f.paired);
    out.push_back(f.c);
  }
  return out;
}

/// The options that load candidate `c` alone: its sub-tree, and of it only the keys under its
/// prefix (submodule, so another copy beside them is left aside) or its prefix fix.
inline std::string take_text(const Candidate& c) {
  std::string opt = c.path.empty() ? "" : "select(\"" + c.path + "\")";
  if (!c.fix.identity()) opt += (opt.empty() ? "" : ".") + (c.fix.add.empty() ? "submodule(\"" + c.fix.strip + "\")" : c.fix.option());
  return opt;
}
inline void take(LoadOptions& o, const Candidate& c) {
  o.select(c.path);
  if (!c.fix.identity() && c.fix.add.empty())
    o.submodule(c.fix.strip);
  else
    c.fix.add_to(o);
}

/// The sub-tree whose keys best fit the targets (see subtree_alternatives for the order of ties).
inline Candidate best_subtree(const Value& root, const KeyIndex& targets, bool with_prefix) {
  auto all = subtree_alternatives(root, targets, with_prefix);
  return all.empty() ? Candidate{} : all.front();
}

}  // namespace statedict::detail

#if STATEDICT_DEFINITIONS
#include <statedict/detail/options_file.hpp>
#endif
