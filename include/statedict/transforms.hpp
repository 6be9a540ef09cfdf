#pragma once
// statedict::Transform: a change of a tensor's layout between checkpoint and module (a transpose, a
// split of a fused tensor, a merge, a stack of per-expert tensors, their reverses, a reshape where
// only size-1 dims differ). LoadOptions holds them in order, after the key rules; each has an
// inverse, which statedict::save and `statedict convert --reverse` apply to write the checkpoint's
// layout back.
//
// Key patterns: transforms act on checkpoint keys after the key rules, which are the module's keys
// once everything fits. `*` matches any run of characters and is carried into the other patterns
// of the same transform in order ("h.*.attn.c_attn.weight" -> "h.*.attn.q.weight"); in stack and
// unstack, `#` is the number of the part (its index along the stacked dim).
#include <statedict/error.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace statedict {

struct Transform {
  enum class Kind {
    transpose,  ///< `key` (a glob): a 2-D tensor stored [in, out] for a module's [out, in]
    split,      ///< checkpoint tensor `key` cut along `dim` into module tensors `parts`
    merge,      ///< checkpoint tensors `parts` joined along `dim` into module tensor `key`
    stack,      ///< checkpoint tensors `parts[0]` (with `#` = 0..E-1) stacked along `dim` into `key`
    unstack,    ///< checkpoint tensor `key` taken apart along `dim` into `parts[0]` (with `#`)
    reshape,    ///< `key` (a glob): shape `from` in the checkpoint, `to` in the module
  } kind;
  std::string key;
  std::vector<std::string> parts;
  std::int64_t dim = 0;
  /// split and merge: each part's size along `dim`; empty: equal parts.
  std::vector<std::int64_t> sizes = {};
  /// reshape: the checkpoint's and the module's shape, -1 for a dim carried over (in order) and a
  /// literal size (1) for a dim that only one side has: {-1, -1, 1, 1} and {-1, -1} for a 1x1
  /// convolution's weight loaded as a Linear's.
  std::vector<std::int64_t> from = {}, to = {};

  /// The transform that undoes this one (what save and convert --reverse apply, in reverse order).
  Transform inverse() const {
    Transform t = *this;
    switch (kind) {
    case Kind::split:
      t.kind = Kind::merge;
      break;
    case Kind::merge:
      t.kind = Kind::split;
      break;
    case Kind::stack:
      t.kind = Kind::unstack;
      break;
    case Kind::unstack:
      t.kind = Kind::stack;
      break;
    case Kind::reshape:
      std::swap(t.from, t.to);
      break;
    case Kind::transpose:
      break;
    }
    return t;
  }

  /// The kind's name, as the option, the CLI flag and the recipe file spell it.
  static const char* name(Kind k) {
    switch (k) {
    case Kind::transpose:
      return "transpose";
    case Kind::split:
      return "split";
    case Kind::merge:
      return "merge";
    case Kind::stack:
      return "stack";
    case Kind::unstack:
      return "unstack";
    case Kind::reshape:
      return "reshape";
    }
    return "";
  }

  /// The option as a user writes it: split("h.*.c_attn.weight", {"h.*.q.weight", "h.*.k.weight"}, 0).
  std::string text() const {
    const auto q = [](const std::string& s) {
      std::string r = "\"";
      for (char c : s) r += c == '"' || c == '\\' ? std::string("\\") + c : std::string(1, c);
      return r + "\"";
    };
    const auto list = [](const std::vector<std::string>& v, auto&& item) {
      std::string r = "{";
      for (std::size_t i = 0; i < v.size(); ++i) r += (i ? ", " : "") + item(v[i]);
      return r + "}";
    };
    const auto ints = [](const std::vector<std::int64_t>& v) {
      std::string r = "{";
      for (std::size_t i = 0; i < v.size(); ++i) r += (i ? ", " : "") + std::to_string(v[i]);
      return r + "}";
    };
    const std::string n = name(kind);
    switch (kind) {
    case Kind::transpose:
      return n + "(" + q(key) + ")";
    case Kind::reshape:
      return n + "(" + q(key) + ", " + ints(from) + ", " + ints(to) + ")";
    case Kind::split:
      return n + "(" + q(key) + ", " + list(parts, q) + ", " + std::to_string(dim) + (sizes.empty() ? "" : ", " + ints(sizes)) + ")";
    case Kind::merge:
      return n + "(" + list(parts, q) + ", " + q(key) + ", " + std::to_string(dim) + (sizes.empty() ? "" : ", " + ints(sizes)) + ")";
    case Kind::stack:
      return n + "(" + q(parts.at(0)) + ", " + q(key) + (dim == 0 ? "" : ", " + std::to_string(dim)) + ")";
    case Kind::unstack:
      return n + "(" + q(key) + ", " + q(parts.at(0)) + (dim == 0 ? "" : ", " + std::to_string(dim)) + ")";
    }
    return {};
  }

  /// Throws options.bad_transform when the transform cannot mean anything (the setters call it).
  void check() const {
    const auto bad = [&](const std::string& why) { throw Error("options.bad_transform", "", text_or_name(), why); };
    const auto stars = [](const std::string& s) { return std::count(s.begin(), s.end(), '*'); };
    if (key.empty()) bad("the key pattern is empty");
    switch (kind) {
    case Kind::transpose:
      break;
    case Kind::reshape: {
      const auto carried = [](const std::vector<std::int64_t>& v) { return std::count(v.begin(), v.end(), -1); };
      if (carried(from) != carried(to)) bad("the two shapes must carry over (-1) the same number of dims");
      for (const auto* v : {&from, &to})
        for (auto d : *v)
          if (d != -1 && d != 1) bad("a reshape changes only size-1 dims: each entry is -1 (carried over) or 1");
      break;
    }
    case Kind::split:
    case Kind::merge:
      if (parts.size() < 2) bad("it needs at least two parts");
      if (!sizes.empty() && sizes.size() != parts.size()) bad("give one size per part, or none for equal parts");
      for (auto s : sizes)
        if (s < 0) bad("a part's size is 0 or more");
      for (const auto& p : parts)
        if (stars(p) != stars(key)) bad("every pattern must have as many '*' as \"" + key + "\"");
      break;
    case Kind::stack:
    case Kind::unstack:
      if (parts.size() != 1) bad("it takes one pattern for the parts");
      if (std::count(parts[0].begin(), parts[0].end(), '#') != 1) bad("the parts' pattern needs one '#' for the part's number");
      if (stars(parts[0]) != stars(key)) bad("both patterns must have as many '*'");
      break;
    }
  }

private:
  std::string text_or_name() const {
    try {
      return text();
    } catch (...) { return name(kind); }
  }
};

}  // namespace statedict
