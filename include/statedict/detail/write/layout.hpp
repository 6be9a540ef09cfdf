#pragma once
// A state dict's layout changed outside a load: forward (convert: the key rules, then the
// transforms, as a load would apply them) and back (save with a load's options, convert --reverse:
// each transform's inverse in reverse order, then each key rule's). Tensors that a transform makes
// are lazy: written contiguous, one at a time.
#include <statedict/checkpoint.hpp>
#include <statedict/detail/match/keys.hpp>
#include <statedict/detail/match/transforms.hpp>
#include <statedict/options.hpp>

#include <set>
#include <string>
#include <vector>

namespace statedict::detail {

/// The stage's errors as one statedict::Error (transform.failed), its warnings appended to `warnings`.
inline void throw_stage_errors(StageResult& res, const std::string& file, std::vector<std::string>* warnings) {
  if (!res.errors.empty()) {
    std::string why = res.errors.front();
    if (res.errors.size() > 1) why += " (and " + std::to_string(res.errors.size() - 1) + " more)";
    throw Error("transform.failed", file, "", why);
  }
  if (warnings != nullptr)
    for (auto& w : res.warnings) warnings->push_back(std::move(w));
}

/// The tensors as the module would see them: keys through the rules, then the transforms.
/// `fired` receives which key rules changed a key.
inline std::vector<NamedTensor> module_layout(std::vector<NamedTensor> tensors, const LoadOptions& o, const std::string& file,
                                              std::vector<std::string>* warnings, std::vector<char>* fired) {
  const KeyRewriter rewrite(o.rules());
  std::vector<Staged> items;
  items.reserve(tensors.size());
  for (auto& t : tensors) {
    std::string key = rewrite.apply(t.key, nullptr, fired);
    items.push_back({std::move(key), std::move(t), ""});
  }
  StageResult res = Stage(items, true).run(o.transforms());
  throw_stage_errors(res, file, warnings);
  std::vector<NamedTensor> out;
  out.reserve(items.size());
  for (auto& s : items) {
    s.t.key = std::move(s.key);
    out.push_back(std::move(s.t));
  }
  return out;
}

/// The key a checkpoint had before rule `r` made it `k`: options.not_invertible where no key could
/// have been made so, or where the rule has no inverse (a regex rename).
inline std::string unapply_rule(const KeyRule& r, const std::string& k, const std::string& file) {
  switch (r.kind) {
  case KeyRule::Kind::strip_prefix:
    return r.pattern + k;  // every key is taken to have had it
  case KeyRule::Kind::add_prefix:
    if (!starts_with(k, r.pattern))
      throw Error("options.not_invertible", file, k, "does not start with \"" + r.pattern + "\", so " + r.text() + " did not make it");
    return k.substr(r.pattern.size());
  case KeyRule::Kind::rename: {
    std::string from, to;
    bool whole = false;
    if (!literal_parts(r.pattern, r.replacement, from, to, whole))
      throw Error("options.not_invertible", file, r.text(),
                  "a regular expression has no inverse; only a rename of a literal prefix or key (\"^fc\\\\.\" to \"head.\") is undone");
    if (whole ? k == to : starts_with(k, to)) return from + k.substr(to.size());
    return k;
  }
  case KeyRule::Kind::strip_segment:
    throw Error("options.not_invertible", file, r.text(),
                "where the segment stood in each key is not known once it is removed; convert without it, or add it back with a "
                "literal rename");
  }
  return k;
}

/// The tensors of a module (or of a converted file) in the layout of the checkpoint `o` loads:
/// the inverse transforms in reverse order, then the key rules undone, each key checked to give
/// itself back through the rules.
inline std::vector<NamedTensor> checkpoint_layout(std::vector<NamedTensor> tensors, const LoadOptions& o, const std::string& file,
                                                  std::vector<std::string>* warnings) {
  if (!o.ties().empty())
    throw Error("options.not_invertible", file, "tie(\"" + o.ties().front().module_key + "\", ...)",
                "a tie is not undone (the tied key would have to be dropped); convert without it");
  if (!o.rename_families().empty())
    throw Error("options.not_invertible", file, "rename_family(" + o.rename_families().front().name + ")",
                "a rename family is not undone yet; convert without it");
  std::vector<Staged> items;
  items.reserve(tensors.size());
  for (auto& t : tensors) {
    std::string key = t.key;
    items.push_back({std::move(key), std::move(t), ""});
  }
  std::vector<statedict::Transform> inverse;
  for (auto it = o.transforms().rbegin(); it != o.transforms().rend(); ++it) inverse.push_back(it->inverse());
  StageResult res = Stage(items, true).run(inverse);
  throw_stage_errors(res, file, warnings);
  const KeyRewriter forward(o.rules());
  std::set<std::string> seen;
  std::vector<NamedTensor> out;
  out.reserve(items.size());
  for (auto& s : items) {
    std::string k = s.key;
    for (auto it = o.rules().rbegin(); it != o.rules().rend(); ++it) k = unapply_rule(*it, k, file);
    if (forward.apply(k) != s.key)
      throw Error("options.not_invertible", file, s.key,
                  "undoing the key rules gives \"" + k + "\", which the rules make \"" + forward.apply(k) + "\", not this key");
    if (!seen.insert(k).second) throw Error("options.not_invertible", file, s.key, "undoing the key rules gives \"" + k + "\" twice");
    s.t.key = std::move(k);
    out.push_back(std::move(s.t));
  }
  return out;
}

}  // namespace statedict::detail
