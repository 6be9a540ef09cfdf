#pragma once
// Suggestions of layout transforms (docs/transforms.md), read from shapes and key structure: a
// tensor stored transposed; one unexpected tensor that is several missing ones under the same
// parent, cut along a dim (split), or the reverse (merge); numbered siblings that stack into a
// missing tensor, or the reverse; shapes that differ only in size-1 dims. A transpose seen on some
// layers is offered for every 2-D layer of the same name (a square one cannot be told from its
// shape), and the text says which were inferred, not seen. All of them are one fix, checked by a
// dry run like every other.
#include <statedict/detail/match/suggest/advice.hpp>
#include <statedict/detail/match/suggest/text.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace statedict::detail {

/// A key with its numeric components as `*` ("h.3.attn.c_attn.weight" -> "h.*.attn.c_attn.weight").
inline std::string layer_pattern(const std::string& key) {
  std::string out;
  std::size_t from = 0;
  for (;;) {
    const std::size_t dot = key.find('.', from);
    const std::string part = key.substr(from, dot == std::string::npos ? std::string::npos : dot - from);
    const bool number = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    out += number ? "*" : part;
    if (dot == std::string::npos) return out;
    out += '.';
    from = dot + 1;
  }
}
/// The key with its one numeric component (the part's number) as `#`, or "" when it has not exactly one.
inline std::string numbered_pattern(const std::string& key, std::string* number) {
  std::string out;
  int found = 0;
  std::size_t from = 0;
  for (;;) {
    const std::size_t dot = key.find('.', from);
    const std::string part = key.substr(from, dot == std::string::npos ? std::string::npos : dot - from);
    const bool num = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (num) {
      ++found;
      *number = part;
    }
    out += num ? "#" : part;
    if (dot == std::string::npos) return found == 1 ? out : std::string();
    out += '.';
    from = dot + 1;
  }
}
inline std::string parent_of(const std::string& key) {
  const std::size_t dot = key.rfind('.');
  return dot == std::string::npos ? std::string() : key.substr(0, dot + 1);
}
inline std::string leaf_of(const std::string& key) { return key.substr(parent_of(key).size()); }
/// The last two components ("c_proj.weight"): a layer's name, whatever its place.
inline std::string layer_name(const std::string& key) {
  const std::string p = parent_of(key);
  const std::string pp = p.empty() ? std::string() : parent_of(p.substr(0, p.size() - 1));
  return key.substr(pp.size());
}
inline std::vector<std::int64_t> without_ones(const std::vector<std::int64_t>& s) {
  std::vector<std::int64_t> out;
  for (auto d : s)
    if (d != 1) out.push_back(d);
  return out;
}

class TransformAdvisor {
public:
  explicit TransformAdvisor(Advice& s) : s_(s) {
    for (std::size_t j = 0; j < s.unexpected_keys.size(); ++j)
      unexpected_.emplace_back(s.unexpected_keys[j], s.sources[s.unexpected_at[j]].shape());
    for (const auto& m : s.r.missing) {
      const std::size_t t = s.a.target_set.find(m);
      if (t != KeyIndex::none) missing_.emplace_back(m, s.a.targets[t].tensor.sizes().vec());
    }
  }

  void run() {
    transposes();
    splits_and_merges();
    stacks();
    reshapes();
    infer_transposes();
    offer();
  }

private:
  void add(statedict::Transform t, const std::string& why) {
    for (const auto& have : chosen_)
      if (have.text() == t.text()) return;
    chosen_.push_back(std::move(t));
    why_.push_back(why);
  }
  /// The transforms of every layer, one per pattern: keys with their numbers as `*` where every
  /// layer has the same sizes; else each key alone.
  void add_general(const std::vector<statedict::Transform>& each, const std::string& why) {
    std::map<std::string, std::vector<statedict::Transform>> by;
    std::vector<std::string> order;
    for (statedict::Transform t : each) {
      statedict::Transform g = t;
      g.key = layer_pattern(t.key);
      for (auto& p : g.parts) p = p.find('#') == std::string::npos ? layer_pattern(p) : p;
      if (!by.count(g.text())) order.push_back(g.text());
      by[g.text()].push_back(t);
      general_[g.text()] = g;
    }
    for (const auto& k : order) add(general_[k], why);
  }

  /// 1. Shapes that are each other's transpose (2-D).
  void transposes() {
    std::vector<statedict::Transform> each;
    for (const auto& sm : s_.r.shape_mismatch)
      if (sm.source_shape.size() == 2 && sm.target_shape.size() == 2 && sm.source_shape[0] == sm.target_shape[1] &&
          sm.source_shape[1] == sm.target_shape[0]) {
        each.push_back({statedict::Transform::Kind::transpose, sm.key, {}, 0});
        seen_.insert(layer_name(sm.key));
      }
    add_general(each, "stored transposed ([in, out])");
  }

  /// Whether `part` can be one piece of `whole` (a split's part, a merge's): the whole's leaf ends
  /// with the part's ("in_proj_weight", "weight"), and the part sits beside the whole's layer
  /// ("attn.q.weight" and "attn.qkv.weight") or inside it ("mha.q_proj.weight" and "mha.in_proj_weight").
  static bool piece_of(const std::string& part, const std::string& whole) {
    const std::string pl = leaf_of(part), wl = leaf_of(whole);
    if (wl.size() < pl.size() || wl.compare(wl.size() - pl.size(), pl.size(), pl) != 0) return false;
    const std::string pp = parent_of(part);
    if (pp.empty()) return false;
    const std::string grand = parent_of(pp.substr(0, pp.size() - 1)), wp = parent_of(whole);
    return grand == wp || (!wp.empty() && grand == parent_of(wp.substr(0, wp.size() - 1)) && pp != wp);
  }

  /// 2. One unexpected tensor that is several missing ones, cut along a dim (possibly after a
  /// transpose), the parts in the module's order; and several unexpected ones that are one missing
  /// (merge), in the checkpoint's order.
  void splits_and_merges() {
    std::vector<statedict::Transform> cuts, joins, pre;
    for (const auto& [u, ushape] : unexpected_) {
      std::vector<std::pair<std::string, std::vector<std::int64_t>>> parts;
      for (const auto& m : missing_)
        if (piece_of(m.first, u)) parts.push_back(m);
      if (parts.size() < 2) continue;
      // A fused 2-D weight is cut along its output dim; where the checkpoint stores weights
      // [in, out] (a transpose was seen), try the transpose first: square parts fit either way.
      const bool transposed_file = !seen_.empty();
      for (bool flip : {transposed_file, !transposed_file}) {
        std::vector<std::int64_t> shape = ushape;
        if (flip) {
          if (shape.size() != 2) continue;
          std::swap(shape[0], shape[1]);
        }
        const auto dim = cut_dim(shape, parts);
        if (dim < 0) continue;
        if (flip) {
          pre.push_back({statedict::Transform::Kind::transpose, u, {}, 0});
          seen_.insert(layer_name(u));
        }
        cuts.push_back(pieces(statedict::Transform::Kind::split, u, parts, dim, module_order_));
        break;
      }
    }
    add_general(pre, "stored transposed ([in, out]) before it is split");
    add_general(cuts, "fused: one tensor for several of the model's");
    for (const auto& [m, mshape] : missing_) {
      std::vector<std::pair<std::string, std::vector<std::int64_t>>> parts;
      for (const auto& u : unexpected_)
        if (piece_of(u.first, m)) parts.push_back(u);
      if (parts.size() < 2) continue;
      const auto dim = cut_dim(mshape, parts);
      if (dim >= 0) joins.push_back(pieces(statedict::Transform::Kind::merge, m, parts, dim, file_order_));
    }
    add_general(joins, "kept apart in the checkpoint, one tensor in the model");
  }
  /// A split or merge of `parts` along `dim`; sizes given unless all equal. Parts of equal size
  /// make their order a guess: `guessed` says so.
  static statedict::Transform pieces(statedict::Transform::Kind kind, const std::string& key,
                                     const std::vector<std::pair<std::string, std::vector<std::int64_t>>>& parts, std::int64_t dim,
                                     bool& guessed) {
    statedict::Transform t{kind, key, {}, dim};
    std::set<std::int64_t> distinct;
    for (const auto& p : parts) {
      t.parts.push_back(p.first);
      t.sizes.push_back(p.second[static_cast<std::size_t>(dim)]);
      distinct.insert(t.sizes.back());
    }
    if (distinct.size() == 1) t.sizes.clear();
    guessed = guessed || distinct.size() < parts.size();
    return t;
  }
  /// The dim along which `parts` (in order) add up to `whole`, the others equal; -1 when none.
  static std::int64_t cut_dim(const std::vector<std::int64_t>& whole,
                              const std::vector<std::pair<std::string, std::vector<std::int64_t>>>& parts) {
    for (std::size_t d = 0; d < whole.size(); ++d) {
      std::int64_t sum = 0;
      bool fits = true;
      for (const auto& p : parts) {
        if (p.second.size() != whole.size()) fits = false;
        for (std::size_t e = 0; fits && e < whole.size(); ++e)
          if (e != d && p.second[e] != whole[e]) fits = false;
        if (fits) sum += p.second[d];
      }
      if (fits && sum == whole[d]) return static_cast<std::int64_t>(d);
    }
    return -1;
  }

  /// 3. Numbered siblings that stack into a missing tensor ("moe.experts.#.w1.weight" -> "moe.w1"),
  /// and the reverse.
  void stacks() {
    const auto groups = [](const std::vector<std::pair<std::string, std::vector<std::int64_t>>>& keys) {
      std::map<std::string, std::vector<std::pair<std::int64_t, std::vector<std::int64_t>>>> g;
      for (const auto& [k, shape] : keys) {
        std::string n;
        const std::string p = numbered_pattern(k, &n);
        if (!p.empty() && n.size() < 9) g[p].emplace_back(std::stoll(n), shape);
      }
      return g;
    };
    const auto match = [](const std::string& pattern, const std::string& whole) {
      // The whole's parent holds the numbered parts, and its leaf names them ("w1" in "experts.#.w1.weight").
      const std::string leaf = leaf_of(whole);
      return starts_with(pattern, parent_of(whole)) && pattern.find("." + leaf + ".") != std::string::npos;
    };
    std::vector<statedict::Transform> each;
    for (const auto& [pattern, members] : groups(unexpected_))
      for (const auto& [m, mshape] : missing_)
        if (match(pattern, m) && numbered(members, mshape)) each.push_back({statedict::Transform::Kind::stack, m, {pattern}, 0});
    add_general(each, "numbered tensors in the checkpoint, stacked in the module");
    each.clear();
    for (const auto& [pattern, members] : groups(missing_))
      for (const auto& [u, ushape] : unexpected_)
        if (match(pattern, u) && numbered(members, ushape)) each.push_back({statedict::Transform::Kind::unstack, u, {pattern}, 0});
    add_general(each, "stacked in the checkpoint, numbered tensors in the module");
  }
  /// Whether parts 0..E-1, each of one shape, stack into `whole` along dim 0.
  static bool numbered(std::vector<std::pair<std::int64_t, std::vector<std::int64_t>>> members, const std::vector<std::int64_t>& whole) {
    std::sort(members.begin(), members.end());
    for (std::size_t i = 0; i < members.size(); ++i)
      if (members[i].first != static_cast<std::int64_t>(i) || members[i].second != members[0].second) return false;
    std::vector<std::int64_t> want = members.empty() ? std::vector<std::int64_t>{} : members[0].second;
    want.insert(want.begin(), static_cast<std::int64_t>(members.size()));
    return members.size() >= 2 && want == whole;
  }

  /// 4. Shapes that differ only in size-1 dims.
  void reshapes() {
    std::vector<statedict::Transform> each;
    for (const auto& sm : s_.r.shape_mismatch) {
      if (sm.source_shape.size() == sm.target_shape.size() || without_ones(sm.source_shape) != without_ones(sm.target_shape)) continue;
      const auto pattern = [](const std::vector<std::int64_t>& s) {
        std::vector<std::int64_t> p;
        for (auto d : s) p.push_back(d == 1 ? 1 : -1);
        return p;
      };
      each.push_back({statedict::Transform::Kind::reshape, sm.key, {}, 0, {}, pattern(sm.source_shape), pattern(sm.target_shape)});
    }
    add_general(each, "the same tensor with size-1 dims added or dropped");
  }

  /// 5. A layer name seen transposed: every other 2-D tensor of that name that already fits (a
  /// square one) is transposed too. Inferred, not seen: the text says so.
  void infer_transposes() {
    if (seen_.empty()) return;
    std::vector<statedict::Transform> each;
    std::set<std::string> mismatched;
    for (const auto& sm : s_.r.shape_mismatch) mismatched.insert(sm.key);
    for (const auto& m : s_.r.matched) {
      if (!seen_.count(layer_name(m.target)) || mismatched.count(m.target)) continue;
      const std::size_t t = s_.a.target_set.find(m.target);
      if (t == KeyIndex::none || s_.a.targets[t].tensor.dim() != 2) continue;
      each.push_back({statedict::Transform::Kind::transpose, m.target, {}, 0});
      const std::string g = layer_pattern(m.target);
      if (std::find(inferred_.begin(), inferred_.end(), g) == inferred_.end()) inferred_.push_back(g);
    }
    add_general(each, "inferred, not seen");
  }

  void offer() {
    if (chosen_.empty()) return;
    std::string opt, list;
    for (std::size_t i = 0; i < chosen_.size(); ++i) {
      opt += (opt.empty() ? "" : ".") + chosen_[i].text();
      list += (list.empty() ? "" : "; ") + chosen_[i].text() + " (" + why_[i] + ")";
    }
    std::string text = "the checkpoint is laid out differently from the model: " + list;
    if (!inferred_.empty())
      text += ". Inferred, not seen: " + join_quoted(inferred_, 8) +
              " fit the model as they are (square), but the same layers elsewhere are stored transposed";
    if (module_order_ || file_order_)
      text += std::string(". The order of the parts is ") + (module_order_ ? "the model's" : "") +
              (module_order_ && file_order_ ? " (split) and " : "") + (file_order_ ? "the checkpoint's (merge)" : "") +
              ", a guess where parts have one size: check it against the code that wrote the checkpoint";
    Suggestion sug{text + ": use " + opt, opt};
    sug.options = s_.a.with([&](LoadOptions& o) {
      for (const auto& t : chosen_) o.transform(t);
    });
    s_.fixes.push_back(std::move(sug));
  }

  Advice& s_;
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> unexpected_;  // after the rules, in the file's order
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> missing_;     // in the module's order
  std::vector<statedict::Transform> chosen_;
  std::vector<std::string> why_;
  std::map<std::string, statedict::Transform> general_;
  std::set<std::string> seen_;                      // layer names seen transposed
  std::vector<std::string> inferred_;               // patterns transposed by inference
  bool module_order_ = false, file_order_ = false;  // a split's (merge's) parts of equal size: their order is a guess
};

/// The transforms that make the layouts fit, as one fix.
inline void advise_transforms(Advice& s) {
  if (s.r.shape_mismatch.empty() && (s.r.missing.empty() || s.unexpected_keys.empty())) return;
  TransformAdvisor(s).run();
}

}  // namespace statedict::detail
