#pragma once
// Layout transforms, planned: the checkpoint's tensors (keys after the key rules) become the
// tensors the module is paired with. Each transform is checked against the tensors it touches
// (dims that exist, sizes that add up, every part present, equal shapes) before anything is made;
// what it makes is a view (transpose, a split's part, an unstack's index, a reshape) or a joined
// tensor made part by part when written (merge, stack), never a copy at planning time. The same
// stage serves a load (views of the file, read by apply), convert (lazy tensors written one at a
// time) and, with the inverse transforms, save and convert --reverse (detail/write/inverse.hpp).
#include <statedict/checkpoint.hpp>
#include <statedict/detail/dtypes.hpp>
#include <statedict/detail/lazy.hpp>
#include <statedict/detail/match/keys.hpp>
#include <statedict/transforms.hpp>

#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace statedict::detail {

/// Matches a transform's pattern: `*` any run (the shortest that lets the rest match), `#` a
/// non-empty run of digits. Fills `caps` with the runs of `*` and `index` with the run of `#`.
inline bool capture_match(std::string_view pat, std::string_view s, std::vector<std::string>& caps, std::string* index = nullptr) {
  if (pat.empty()) return s.empty();
  if (pat[0] == '*') {
    for (std::size_t n = 0; n <= s.size(); ++n) {
      caps.emplace_back(s.substr(0, n));
      if (capture_match(pat.substr(1), s.substr(n), caps, index)) return true;
      caps.pop_back();
    }
    return false;
  }
  if (pat[0] == '#') {
    std::size_t n = 0;
    while (n < s.size() && s[n] >= '0' && s[n] <= '9') ++n;
    for (; n >= 1; --n) {                  // the longest run first: "#" in "experts.#.w" takes every digit
      if (n > 1 && s[0] == '0') continue;  // "07" is not a part's number
      if (capture_match(pat.substr(1), s.substr(n), caps, index)) {
        if (index != nullptr) *index = std::string(s.substr(0, n));
        return true;
      }
    }
    return false;
  }
  return !s.empty() && pat[0] == s[0] && capture_match(pat.substr(1), s.substr(1), caps, index);
}

/// A pattern with its `*` replaced by `caps` in order and its `#` by `index`.
inline std::string fill_pattern(std::string_view pat, const std::vector<std::string>& caps, const std::string& index = {}) {
  std::string out;
  std::size_t c = 0;
  for (char ch : pat) {
    if (ch == '*' && c < caps.size())
      out += caps[c++];
    else if (ch == '#')
      out += index;
    else
      out += ch;
  }
  return out;
}

/// A tensor on its way through the transforms.
struct Staged {
  std::string key;   // after the key rules and the transforms so far
  NamedTensor t;     // t.key: the checkpoint key(s) it was made from, as the report names them
  std::string rule;  // what the transforms did to it, for the report ("" if nothing)
};

/// What the stage made, and what went wrong (a transform that does not fit is an error of the
/// load, which then changes nothing).
struct StageResult {
  std::vector<std::string> errors;
  std::vector<std::string> warnings;  // a transform that matched no key
};

/// Runs the transforms in order over `items`. `lazy`: every transformed tensor is made when needed
/// (convert and save write them contiguous, one at a time); otherwise views of the checkpoint's
/// tensors are kept as views, which a load reads from the file as it reads any other.
class Stage {
public:
  Stage(std::vector<Staged>& items, bool lazy) : items_(items), lazy_(lazy) {}

  StageResult run(const std::vector<statedict::Transform>& transforms) {
    for (const statedict::Transform& t : transforms) {
      const std::size_t before = res_.errors.size();
      const bool touched = one(t);
      if (!touched && res_.errors.size() == before)
        res_.warnings.push_back(t.text() + " changed no key: no checkpoint key matches its pattern");
    }
    return std::move(res_);
  }

private:
  bool one(const statedict::Transform& t) {
    switch (t.kind) {
    case statedict::Transform::Kind::transpose:
    case statedict::Transform::Kind::reshape:
      return per_key(t);
    case statedict::Transform::Kind::split:
    case statedict::Transform::Kind::unstack:
      return cut(t);
    case statedict::Transform::Kind::merge:
    case statedict::Transform::Kind::stack:
      return join(t);
    }
    return false;
  }

  void fail(const statedict::Transform& t, const std::string& key, const std::string& why) {
    res_.errors.push_back(t.text() + " on " + key + ": " + why);
  }

  static std::string with_rule(const std::string& before, const std::string& what) { return before.empty() ? what : before + "; " + what; }
  static std::int64_t norm_dim(std::int64_t dim, std::int64_t dims) { return dim < 0 ? dim + dims : dim; }

  /// A view op applied to a tensor: directly to a view, or recorded in a lazy tensor.
  NamedTensor viewed(const NamedTensor& in, const ViewOp& op) const {
    const std::vector<std::int64_t> shape = op.shape_of(in.tensor.sizes().vec());
    if (!in.lazy && !lazy_) return {in.key, op.apply(in.tensor), nullptr, nullptr};
    LazyTensor l;
    if (in.lazy)
      l = *in.lazy;
    else
      l.base = in.tensor;
    l.ops.push_back(op);
    const c10::ScalarType type = l.cast ? *l.cast : in.tensor.scalar_type();
    return {in.key, placeholder(find_dtype(type), shape), nullptr, std::make_shared<const LazyTensor>(std::move(l))};
  }

  bool refuse_raw(const statedict::Transform& t, const Staged& s) {
    if (s.t.raw_dtype == nullptr) return false;
    fail(t, s.key, std::string("a ") + s.t.raw_dtype + " tensor, a dtype this LibTorch cannot hold, cannot be transformed here");
    return true;
  }

  /// transpose and reshape: each matching tensor in place.
  bool per_key(const statedict::Transform& t) {
    bool touched = false;
    for (Staged& s : items_) {
      if (!glob_match(t.key, s.key)) continue;
      touched = true;
      if (refuse_raw(t, s)) continue;
      const std::vector<std::int64_t> shape = s.t.tensor.sizes().vec();
      if (t.kind == statedict::Transform::Kind::transpose) {
        if (shape.size() != 2) {
          fail(t, s.key, "a " + std::to_string(shape.size()) + "-d tensor " + shape_str(shape) + "; transpose takes 2-d weights");
          continue;
        }
        s.t = viewed(s.t, {ViewOp::Kind::transpose});
        s.rule = with_rule(s.rule, "transpose " + shape_str(shape) + " -> " + shape_str(s.t.tensor.sizes().vec()));
        continue;
      }
      // reshape: the checkpoint's shape must be `from`; its carried dims fill `to`'s -1s in order.
      std::vector<std::int64_t> carried, out;
      bool fits = shape.size() == t.from.size();
      for (std::size_t d = 0; fits && d < shape.size(); ++d) {
        if (t.from[d] == -1)
          carried.push_back(shape[d]);
        else
          fits = shape[d] == t.from[d];
      }
      if (!fits) {
        fail(t, s.key, "its shape " + shape_str(shape) + " is not " + pattern_str(t.from));
        continue;
      }
      std::size_t c = 0;
      for (auto d : t.to) out.push_back(d == -1 ? carried[c++] : d);
      s.t = viewed(s.t, {ViewOp::Kind::reshape, 0, 0, 0, out});
      s.rule = with_rule(s.rule, "reshape " + shape_str(shape) + " -> " + shape_str(out));
    }
    return touched;
  }

  static std::string pattern_str(const std::vector<std::int64_t>& p) {
    std::string r = "[";
    for (std::size_t i = 0; i < p.size(); ++i) r += (i ? ", " : "") + (p[i] == -1 ? std::string("*") : std::to_string(p[i]));
    return r + "]";
  }

  /// split and unstack: one tensor becomes several, in its place.
  bool cut(const statedict::Transform& t) {
    bool touched = false;
    std::vector<Staged> out;
    out.reserve(items_.size());
    for (Staged& s : items_) {
      std::vector<std::string> caps;
      if (!capture_match(t.key, s.key, caps)) {
        out.push_back(std::move(s));
        continue;
      }
      touched = true;
      if (refuse_raw(t, s)) {
        out.push_back(std::move(s));
        continue;
      }
      const std::vector<std::int64_t> shape = s.t.tensor.sizes().vec();
      const auto dims = static_cast<std::int64_t>(shape.size());
      const std::int64_t dim = norm_dim(t.dim, dims);
      if (dim < 0 || dim >= dims) {
        fail(t, s.key, "dim " + std::to_string(t.dim) + " does not exist in its " + std::to_string(dims) + "-d shape " + shape_str(shape));
        out.push_back(std::move(s));
        continue;
      }
      const std::int64_t size = shape[static_cast<std::size_t>(dim)];
      if (t.kind == statedict::Transform::Kind::unstack) {
        for (std::int64_t i = 0; i < size; ++i) {
          const std::string idx = std::to_string(i);
          out.push_back({fill_pattern(t.parts[0], caps, idx), viewed(s.t, {ViewOp::Kind::select, dim, i, 1}),
                         with_rule(s.rule, "unstack " + idx + " of " + std::to_string(size) + " along dim " + std::to_string(dim) + " of " +
                                               shape_str(shape))});
        }
        continue;
      }
      std::vector<std::int64_t> sizes = t.sizes;
      if (sizes.empty()) {
        const auto n = static_cast<std::int64_t>(t.parts.size());
        if (size % n != 0) {
          fail(t, s.key,
               "dim " + std::to_string(dim) + " has " + std::to_string(size) + ", which does not split into " + std::to_string(n) +
                   " equal parts (give the sizes)");
          out.push_back(std::move(s));
          continue;
        }
        sizes.assign(t.parts.size(), size / n);
      }
      std::int64_t sum = 0;
      for (auto z : sizes) sum += z;
      if (sum != size) {
        fail(t, s.key,
             "the sizes add up to " + std::to_string(sum) + ", but dim " + std::to_string(dim) + " of " + shape_str(shape) + " has " +
                 std::to_string(size));
        out.push_back(std::move(s));
        continue;
      }
      std::int64_t at = 0;
      for (std::size_t i = 0; i < t.parts.size(); ++i) {
        out.push_back({fill_pattern(t.parts[i], caps), viewed(s.t, {ViewOp::Kind::narrow, dim, at, sizes[i]}),
                       with_rule(s.rule, "split part " + std::to_string(i + 1) + " of " + std::to_string(t.parts.size()) + ": [" +
                                             std::to_string(at) + ", " + std::to_string(at + sizes[i]) + ") along dim " +
                                             std::to_string(dim) + " of " + shape_str(shape))});
        at += sizes[i];
      }
    }
    items_ = std::move(out);
    return touched;
  }

  /// merge and stack: several tensors become one, at the place of the first.
  bool join(const statedict::Transform& t) {
    const bool stacked = t.kind == statedict::Transform::Kind::stack;
    std::unordered_map<std::string, std::size_t> at;
    for (std::size_t i = 0; i < items_.size(); ++i) at.emplace(items_[i].key, i);
    struct Group {
      std::vector<std::string> caps;
      std::vector<std::size_t> members;  // stack: by number; merge: by part
      std::size_t first;
      std::string key;
    };
    std::vector<Group> groups;
    std::map<std::vector<std::string>, std::size_t> by_caps;
    bool touched = false;
    for (std::size_t i = 0; i < items_.size(); ++i) {
      std::vector<std::string> caps;
      std::string index;
      if (!capture_match(t.parts[0], items_[i].key, caps, &index)) continue;
      touched = true;
      auto [it, fresh] = by_caps.emplace(caps, groups.size());
      if (fresh) groups.push_back({caps, {}, i, fill_pattern(t.key, caps)});
      Group& g = groups[it->second];
      if (!stacked) {
        g.members.push_back(i);
        for (std::size_t p = 1; p < t.parts.size(); ++p) {
          const std::string want = fill_pattern(t.parts[p], caps);
          const auto f = at.find(want);
          g.members.push_back(f == at.end() ? SIZE_MAX : f->second);
        }
      } else {
        const std::size_t n = index.size() > 9 ? SIZE_MAX : static_cast<std::size_t>(std::stoull(index));
        if (n >= items_.size()) {
          fail(t, items_[i].key, "part number " + index + " but only " + std::to_string(items_.size()) + " tensors in all");
          continue;
        }
        if (g.members.size() <= n) g.members.resize(n + 1, SIZE_MAX);
        g.members[n] = i;
      }
    }
    std::vector<char> gone(items_.size(), 0);
    std::vector<std::pair<std::size_t, Staged>> made;
    for (Group& g : groups) {
      bool whole = true;
      for (std::size_t p = 0; p < g.members.size(); ++p)
        if (g.members[p] == SIZE_MAX) {
          fail(t, g.key,
               "part " + (stacked ? fill_pattern(t.parts[0], g.caps, std::to_string(p)) : fill_pattern(t.parts[p], g.caps)) +
                   " is not in the checkpoint");
          whole = false;
        }
      if (!whole) continue;
      if (auto j = joined(t, g.members, g.key, stacked)) {
        for (auto m : g.members) gone[m] = 1;
        made.emplace_back(g.first, std::move(*j));
      }
    }
    std::vector<Staged> out;
    out.reserve(items_.size());
    std::size_t next = 0;
    for (std::size_t i = 0; i < items_.size(); ++i) {
      while (next < made.size() && made[next].first == i) out.push_back(std::move(made[next++].second));
      if (!gone[i]) out.push_back(std::move(items_[i]));
    }
    items_ = std::move(out);
    return touched;
  }

  /// The joined tensor of `members`, checked: same dtype, same shape but along the dim (merge) or
  /// the same shape (stack), merge sizes as given.
  std::optional<Staged> joined(const statedict::Transform& t, const std::vector<std::size_t>& members, const std::string& key,
                               bool stacked) {
    const Staged& first = items_[members[0]];
    std::vector<std::int64_t> shape = first.t.tensor.sizes().vec();
    const auto dims = static_cast<std::int64_t>(shape.size()) + (stacked ? 1 : 0);
    const std::int64_t dim = norm_dim(t.dim, dims);
    if (dim < 0 || dim >= dims) {
      fail(t, key, "dim " + std::to_string(t.dim) + " does not exist for parts of shape " + shape_str(shape));
      return std::nullopt;
    }
    auto j = std::make_shared<Joined>();
    j->stacked = stacked;
    j->dim = dim;
    j->dtype = first.t.tensor.scalar_type();
    std::int64_t total = 0;
    std::string sources, parts_text;
    for (std::size_t p = 0; p < members.size(); ++p) {
      const Staged& s = items_[members[p]];
      if (refuse_raw(t, s)) return std::nullopt;
      std::vector<std::int64_t> sh = s.t.tensor.sizes().vec();
      if (s.t.tensor.scalar_type() != j->dtype) {
        fail(t, key, s.key + " is " + dtype_name(s.t.tensor.scalar_type()) + ", " + first.key + " " + dtype_name(j->dtype));
        return std::nullopt;
      }
      std::vector<std::int64_t> a = sh, b = shape;
      if (!stacked && static_cast<std::size_t>(dim) < a.size()) a[static_cast<std::size_t>(dim)] = b[static_cast<std::size_t>(dim)] = 0;
      if (a != b) {
        fail(t, key,
             s.key + " has shape " + shape_str(sh) + " and " + first.key + " " + shape_str(shape) +
                 (stacked ? ": stacked parts need one shape" : ": merged parts may differ only along dim " + std::to_string(dim)));
        return std::nullopt;
      }
      const std::int64_t along = stacked ? 1 : sh[static_cast<std::size_t>(dim)];
      if (!stacked && !t.sizes.empty() && t.sizes[p] != along) {
        fail(t, key, s.key + " has " + std::to_string(along) + " along dim " + std::to_string(dim) + ", not " + std::to_string(t.sizes[p]));
        return std::nullopt;
      }
      total += along;
      j->parts.push_back({s.t.tensor, s.t.lazy, s.key});
      sources += (sources.empty() ? "" : " + ") + s.t.key;
      if (!s.rule.empty()) parts_text += (parts_text.empty() ? "" : "; ") + s.key + ": " + s.rule;
    }
    if (stacked)
      shape.insert(shape.begin() + dim, total);
    else
      shape[static_cast<std::size_t>(dim)] = total;
    j->shape = shape;
    LazyTensor l;
    l.joined = j;
    NamedTensor made{sources, placeholder(find_dtype(j->dtype), shape), nullptr, std::make_shared<const LazyTensor>(std::move(l))};
    std::string rule = std::string(stacked ? "stack " : "merge ") + std::to_string(members.size()) + " tensors along dim " +
                       std::to_string(dim) + " into " + shape_str(shape);
    if (!parts_text.empty()) rule += " (after " + parts_text + ")";
    return Staged{key, std::move(made), std::move(rule)};
  }

  std::vector<Staged>& items_;
  const bool lazy_;
  StageResult res_;
};

}  // namespace statedict::detail
