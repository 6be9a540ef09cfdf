#pragma once
// Suggestions and hints for tensors of another shape: the same number of elements (transposed?
// reshaped?), and how to keep the model's values for them and load the rest.
#include <statedict/detail/match/suggest/advice.hpp>
#include <statedict/detail/match/suggest/text.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace statedict::detail {

/// Shapes with the same number of elements (a hint: transposed? reshaped?); and, where another
/// shape fails the load, how to keep the model's values for those and load the rest.
inline void advise_shapes(Advice& s) {
  for (const auto& sm : s.r.shape_mismatch) {
    if (numel(sm.target_shape) != numel(sm.source_shape)) continue;
    const std::vector<std::int64_t> rev(sm.source_shape.rbegin(), sm.source_shape.rend());
    s.hints.push_back({"\"" + sm.key + "\" has " + shape_str(sm.source_shape) + " in the checkpoint and " + shape_str(sm.target_shape) +
                           " in the model: same number of elements" +
                           (rev == sm.target_shape && sm.target_shape.size() == 2 ? ", transposed?" : ", reshaped?"),
                       ""});
  }
  if (s.r.shape_mismatch.empty() || s.opts.shape_mismatch() != Policy::error) return;
  std::vector<std::string> ks;
  for (const auto& sm : s.r.shape_mismatch) ks.push_back(sm.key);
  Suggestion sug{std::to_string(ks.size()) + " tensor(s) have another shape (" + quoted_list(ks, true) +
                     "), e.g. a classifier head of another size: to keep the model's values for them and load the rest, use "
                     "shape_mismatch(statedict::Policy::warn)",
                 "shape_mismatch(statedict::Policy::warn)"};
  sug.options = s.a.with([](LoadOptions& o) { o.shape_mismatch(Policy::warn); });
  s.fixes.push_back(std::move(sug));
}

}  // namespace statedict::detail
