#pragma once
// Suggestions for keys that differ by a prefix: DataParallel's "module.", a wrapper's, a renamed
// layer; strip_prefix, add_prefix or a rename, or the module as the part of the file under it.
#include <statedict/detail/match/keys.hpp>
#include <statedict/detail/match/suggest/advice.hpp>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace statedict::detail {

/// Keys that differ by a prefix: strip_prefix, add_prefix or a rename; or the module is the part of
/// the file under the prefix.
inline void advise_prefix(Advice& s) {
  if (s.r.missing.empty() || s.unexpected_keys.empty()) return;
  const KeyIndex missing_set(std::vector<std::string_view>(s.r.missing.begin(), s.r.missing.end()));
  const PrefixFix fix = best_prefix_fix(s.unexpected_keys, missing_set);
  if (fix.identity() || fix.matches == 0) return;
  for (const auto& u : s.unexpected_keys)
    if (missing_set.count(fix.apply(u))) s.explained.insert(fix.apply(u));
  std::string text;
  if (!fix.strip.empty() && fix.add.empty())
    text = std::to_string(fix.matches) + " unexpected key(s) start with '" + fix.strip + "' and match the model once it is removed";
  else if (fix.strip.empty())
    text = std::to_string(fix.matches) + " missing key(s) are the checkpoint's keys with '" + fix.add + "' in front";
  else
    text = std::to_string(fix.matches) + " unexpected key(s) match the model once '" + fix.strip + "' is replaced by '" + fix.add +
           "' (a renamed layer)";
  Suggestion sug{text + ": use " + fix.option(), fix.option()};
  sug.options = s.a.with([&](LoadOptions& o) { fix.add_to(o); });
  s.fixes.push_back(std::move(sug));
  // The module may be one part of the checkpoint's model (a backbone): then only that part.
  if (fix.add.empty() && s.opts.submodule().empty()) {
    Suggestion part{"the module may be the part of the checkpoint's model under '" + fix.strip +
                        "': to load only that part, use submodule(\"" + fix.strip + "\")",
                    "submodule(\"" + fix.strip + "\")"};
    part.options = s.a.with([&](LoadOptions& o) { o.submodule(fix.strip); });
    s.fixes.push_back(std::move(part));
  }
}

}  // namespace statedict::detail
