#pragma once
// Suggestions for keys that differ by a prefix: DataParallel's "module.", a wrapper's, a renamed
// layer; strip_prefix, add_prefix or a rename, or the module as the part of the file under it.
#include <statedict/detail/match/keys.hpp>
#include <statedict/detail/match/suggest/advice.hpp>

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace statedict::detail {

/// Several prefixes fit equally (the model and its EMA copy under "model." and
/// "model_ema.module."): name each with the option that loads it alone.
inline void advise_copies(Advice& s, const std::vector<PrefixFix>& fixes, const KeyIndex& missing_set) {
  for (const auto& f : fixes)
    for (const auto& u : s.unexpected_keys)
      if (missing_set.count(f.apply(u))) s.explained.insert(f.apply(u));
  std::string all;
  for (const auto& f : fixes) all += (all.empty() ? "'" : ", '") + f.strip + "'";
  for (const auto& f : fixes) {
    if (f.strip.empty()) continue;
    const std::string opt = f.add.empty() ? "submodule(\"" + f.strip + "\")" : f.option();
    Suggestion sug{std::to_string(fixes.size()) + " prefixes fit the model equally (" + all + ", " + std::to_string(f.matches) +
                       " keys each): copies of the model whose values may differ, and the copy loaded decides the model's accuracy. "
                       "For the copy under '" +
                       f.strip + "'" + (names_an_average(f.strip) ? " (by its name, an average of the weights, such as EMA)" : "") +
                       ", use " + opt,
                   opt};
    sug.options = s.a.with([&](LoadOptions& o) {
      if (f.add.empty())
        o.submodule(f.strip);
      else
        f.add_to(o);
    });
    s.fixes.push_back(std::move(sug));
  }
}

/// What adds a path segment inside keys, for the report's words.
inline const char* wrapper_of(const std::string& segment) {
  if (segment == "_checkpoint_wrapped_module.") return " (activation checkpointing's wrapper)";
  if (segment == "_fsdp_wrapped_module.") return " (FSDP's wrapper)";
  if (segment == "_orig_mod.") return " (torch.compile's wrapper of a compiled submodule)";
  if (segment == "module.") return " (DataParallel's wrapper)";
  return "";
}

/// Path segments inside keys that a wrapper added (`layers.0._checkpoint_wrapped_module.attn.weight`):
/// the segments whose removal makes unexpected keys match missing ones, the most first, offered
/// together as strip_segment rules.
inline void advise_segments(Advice& s) {
  if (s.r.missing.empty() || s.unexpected_keys.empty()) return;
  const KeyIndex missing_set(std::vector<std::string_view>(s.r.missing.begin(), s.r.missing.end()));
  std::vector<std::string> keys = s.unexpected_keys, segments;
  std::size_t total = 0;
  for (int round = 0; round < 3; ++round) {
    std::vector<std::pair<std::string, std::size_t>> count;
    for (const auto& k : keys) {
      if (missing_set.count(k)) continue;
      // Inside the key only: a segment in front is a prefix (advise_prefix).
      for (std::size_t b = k.find('.'); b != std::string::npos; b = k.find('.', b + 1)) {
        const std::size_t e = k.find('.', b + 1);
        if (e == std::string::npos) break;
        const std::string seg = k.substr(b + 1, e - b);
        if (seg.find_first_not_of("0123456789.") == std::string::npos) continue;
        if (!missing_set.count(without_segment(k, seg))) continue;
        auto it = std::find_if(count.begin(), count.end(), [&](const auto& c) { return c.first == seg; });
        if (it == count.end())
          count.emplace_back(seg, 1);
        else
          ++it->second;
      }
    }
    if (count.empty()) break;
    const auto best = *std::max_element(count.begin(), count.end(), [](const auto& x, const auto& y) { return x.second < y.second; });
    segments.push_back(best.first);
    total += best.second;
    for (auto& k : keys) k = without_segment(k, best.first);
  }
  if (segments.empty()) return;
  std::string text, opt;
  for (const auto& seg : segments) {
    text += (text.empty() ? "'" : " and '") + seg + "'" + wrapper_of(seg);
    opt += (opt.empty() ? "" : ".") + ("strip_segment(\"" + seg + "\")");
  }
  for (const auto& k : s.unexpected_keys) {
    std::string m = k;
    for (const auto& seg : segments) m = without_segment(m, seg);
    if (missing_set.count(m)) s.explained.insert(m);
  }
  Suggestion sug{std::to_string(total) + " unexpected key(s) have the path segment " + text +
                     " inside them and match the model once it is removed: use " + opt,
                 opt};
  sug.options = s.a.with([&](LoadOptions& o) {
    for (const auto& seg : segments) o.strip_segment(seg);
  });
  s.fixes.push_back(std::move(sug));
}

/// Keys that differ by a prefix: strip_prefix, add_prefix or a rename; or the module is the part of
/// the file under the prefix.
inline void advise_prefix(Advice& s) {
  if (s.r.missing.empty() || s.unexpected_keys.empty()) return;
  const KeyIndex missing_set(std::vector<std::string_view>(s.r.missing.begin(), s.r.missing.end()));
  const std::vector<PrefixFix> fixes = best_prefix_fixes(s.unexpected_keys, missing_set);
  const PrefixFix& fix = fixes.front();
  if (fix.identity() || fix.matches == 0) return;
  if (fixes.size() > 1) return advise_copies(s, fixes, missing_set);
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
