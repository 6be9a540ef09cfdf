#pragma once
// Suggestions for tied weights: a file that keeps one name of a tensor shared by two (Hugging Face
// and safetensors writers drop `lm_head.weight` because it *is* `transformer.wte.weight`) loaded
// into a module with a separate parameter for each name. Ignoring the missing one would leave it
// untrained; tie() fills it from the tensor it shares.
#include <statedict/detail/match/suggest/advice.hpp>
#include <statedict/detail/match/suggest/text.hpp>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace statedict::detail {

/// Whether a key ends with one of the names tied weights go by (the input embedding, the output
/// layer or an MLM head's decoder that shares it): see docs/failures.md.
inline bool tie_name(std::string_view key) {
  for (std::string_view n : {"lm_head.weight", "wte.weight", "embed_tokens.weight", "word_embeddings.weight", "shared.weight",
                             "tok_embeddings.weight", "decoder.weight", "output.weight", "embed_in.weight", "embed_out.weight"})
    if (key == n ||
        (key.size() > n.size() && key.compare(key.size() - n.size(), n.size(), n) == 0 && key[key.size() - n.size() - 1] == '.'))
      return true;
  return false;
}

/// A missing parameter under a tie name, and a checkpoint tensor of its shape under another: offer
/// tie() for each such parameter, in one fix.
inline void advise_ties(Advice& s) {
  std::vector<std::pair<std::string, std::string>> ties;  // (module key, checkpoint key)
  for (const auto& m : s.missing_hard) {
    if (s.explained.count(m) || s.is_buffer(m) || !tie_name(m)) continue;
    const std::size_t t = s.a.target_set.find(m);
    if (t == KeyIndex::none) continue;
    std::string best;
    for (std::size_t i = 0; i < s.sources.size(); ++i) {
      const std::string_view k = s.keys[i];
      if (k == m || !tie_name(k) || s.sources[i].shape() != s.a.targets[t].tensor.sizes().vec()) continue;
      if (best.empty() || k.size() < best.size()) best = std::string(k);  // the shortest: "shared.weight" before a copy of it
    }
    if (best.empty()) continue;
    ties.emplace_back(m, best);
    s.explained.insert(m);
  }
  if (ties.empty()) return;
  std::string text, opt;
  for (const auto& [m, c] : ties) {
    text += (text.empty() ? "" : "; ") + ("\"" + m + "\" is missing and the checkpoint's \"" + c + "\" has its shape " +
                                          shape_str(s.a.targets[s.a.target_set.find(m)].tensor.sizes().vec()));
    opt += (opt.empty() ? "" : ".") + ("tie(\"" + cpp_escape(m) + "\", \"" + cpp_escape(c) + "\")");
  }
  text += ": the file keeps one name of tied weights (an output layer that shares the input embedding, as Hugging Face and "
          "safetensors writers save it); leaving it out would leave it untrained. To fill it from that tensor, use " +
          opt;
  Suggestion sug{text, opt};
  sug.options = s.a.with([&](LoadOptions& o) {
    for (const auto& [m, c] : ties) o.tie(m, c);
  });
  s.fixes.push_back(std::move(sug));
}

}  // namespace statedict::detail
