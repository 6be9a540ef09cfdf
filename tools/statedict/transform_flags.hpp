#pragma once
// The layout transforms as command line flags (the same names as the LoadOptions calls):
//   --transpose GLOB
//   --split KEY=PART,PART,...@DIM[:SIZE,SIZE,...]     --merge PART,PART,...=KEY@DIM[:SIZE,SIZE,...]
//   --stack PARTS=KEY[@DIM]                            --unstack KEY=PARTS[@DIM]      (PARTS has one '#')
//   --reshape GLOB=FROM:TO                             (FROM, TO: -1 or 1 each, comma-separated)
// Parsed into statedict::Transform and written back the same way (a suggestion's `cli`).
#include <statedict/options.hpp>

#include <string>
#include <vector>

namespace transform_flags {

inline std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::size_t from = 0;
  for (;;) {
    const auto comma = s.find(',', from);
    out.push_back(s.substr(from, comma == std::string::npos ? std::string::npos : comma - from));
    if (comma == std::string::npos) return out;
    from = comma + 1;
  }
}

inline std::string join(const std::vector<std::string>& v) {
  std::string r;
  for (const auto& s : v) r += (r.empty() ? "" : ",") + s;
  return r;
}
inline std::string join(const std::vector<std::int64_t>& v) {
  std::string r;
  for (auto x : v) r += (r.empty() ? "" : ",") + std::to_string(x);
  return r;
}

/// The value of a flag `--NAME TEXT` as a Transform; options.bad_transform when it does not parse.
inline statedict::Transform parse(statedict::Transform::Kind kind, const std::string& text) {
  using K = statedict::Transform::Kind;
  const std::string flag = std::string("--") + statedict::Transform::name(kind) + " " + text;
  const auto bad = [&](const std::string& why) -> statedict::Transform { throw statedict::Error("options.bad_transform", "", flag, why); };
  const auto ints = [&](const std::string& s) {
    std::vector<std::int64_t> v;
    for (const auto& part : split_list(s)) {
      char* end = nullptr;
      const long long x = std::strtoll(part.c_str(), &end, 10);
      if (part.empty() || *end != '\0') bad("'" + part + "' is not an integer");
      v.push_back(x);
    }
    return v;
  };
  statedict::Transform t{kind, {}, {}, 0};
  if (kind == K::transpose) {
    t.key = text;
    t.check();
    return t;
  }
  const auto eq = text.rfind('=');
  if (eq == std::string::npos) return bad("expected '=' (see statedict convert --help)");
  std::string left = text.substr(0, eq), right = text.substr(eq + 1);
  if (kind == K::reshape) {
    const auto colon = right.find(':');
    if (colon == std::string::npos) return bad("expected GLOB=FROM:TO, e.g. 'proj.*.weight=-1,-1,1,1:-1,-1'");
    t.key = left;
    t.from = ints(right.substr(0, colon));
    t.to = ints(right.substr(colon + 1));
    t.check();
    return t;
  }
  // @DIM[:SIZES] ends the value.
  const auto at = right.rfind('@');
  if (at != std::string::npos) {
    std::string spec = right.substr(at + 1);
    right.resize(at);
    const auto colon = spec.find(':');
    if (colon != std::string::npos) {
      if (kind != K::split && kind != K::merge) return bad("only split and merge take sizes");
      t.sizes = ints(spec.substr(colon + 1));
      spec.resize(colon);
    }
    const auto dims = ints(spec);
    if (dims.size() != 1) return bad("@DIM takes one integer");
    t.dim = dims[0];
  } else if (kind == K::split || kind == K::merge) {
    return bad("expected @DIM at the end, e.g. @0");
  }
  switch (kind) {
  case K::split:
    t.key = left;
    t.parts = split_list(right);
    break;
  case K::merge:
    t.parts = split_list(left);
    t.key = right;
    break;
  case K::stack:
    t.parts = {left};
    t.key = right;
    break;
  default:  // unstack
    t.key = left;
    t.parts = {right};
    break;
  }
  t.check();
  return t;
}

/// The flag's value for a transform (what parse() reads back).
inline std::string value(const statedict::Transform& t) {
  using K = statedict::Transform::Kind;
  const std::string dim = "@" + std::to_string(t.dim) + (t.sizes.empty() ? "" : ":" + join(t.sizes));
  switch (t.kind) {
  case K::transpose:
    return t.key;
  case K::reshape:
    return t.key + "=" + join(t.from) + ":" + join(t.to);
  case K::split:
    return t.key + "=" + join(t.parts) + dim;
  case K::merge:
    return join(t.parts) + "=" + t.key + dim;
  case K::stack:
    return t.parts.at(0) + "=" + t.key + (t.dim == 0 ? "" : dim);
  case K::unstack:
    return t.key + "=" + t.parts.at(0) + (t.dim == 0 ? "" : dim);
  }
  return {};
}

}  // namespace transform_flags
