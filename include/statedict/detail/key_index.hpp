#pragma once
// KeyIndex: finds a key among many without a node per key; used to pair checkpoint keys with module
// keys and to look up a zip archive's entries.
#include <statedict/error.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace statedict::detail {

/// An open-addressing index of keys stored elsewhere (the views must outlive it): one allocation
/// however many keys, so pairing 100k keys costs milliseconds rather than 100k node allocations.
class KeyIndex {
public:
  static constexpr std::size_t none = static_cast<std::size_t>(-1);
  KeyIndex() = default;
  explicit KeyIndex(std::vector<std::string_view> keys) : keys_(std::move(keys)) {
    if (keys_.size() >= UINT32_MAX / 2) throw Error("limit.tensors", "", "", "too many keys to index: " + std::to_string(keys_.size()));
    std::size_t cap = 16;
    while (cap < keys_.size() * 2) cap <<= 1;
    slots_.assign(cap, 0);
    for (std::size_t i = 0; i < keys_.size(); ++i) {
      std::size_t s = slot_of(keys_[i]);
      while (slots_[s] != 0 && keys_[slots_[s] - 1] != keys_[i]) s = (s + 1) & (cap - 1);
      if (slots_[s] != 0)
        duplicates_.emplace_back(slots_[s] - 1, i);
      else
        slots_[s] = static_cast<std::uint32_t>(i + 1);
    }
  }
  /// Position of `key` (its first occurrence), or none.
  std::size_t find(std::string_view key) const {
    if (slots_.empty()) return none;
    for (std::size_t s = slot_of(key);; s = (s + 1) & (slots_.size() - 1)) {
      if (slots_[s] == 0) return none;
      if (keys_[slots_[s] - 1] == key) return slots_[s] - 1;
    }
  }
  bool contains(std::string_view key) const { return find(key) != none; }
  std::size_t count(std::string_view key) const { return contains(key) ? 1 : 0; }
  const std::vector<std::string_view>& keys() const { return keys_; }
  /// (first, later) positions of keys that occur more than once.
  const std::vector<std::pair<std::size_t, std::size_t>>& duplicates() const { return duplicates_; }

private:
  std::size_t slot_of(std::string_view k) const { return std::hash<std::string_view>{}(k) & (slots_.size() - 1); }
  std::vector<std::string_view> keys_;
  std::vector<std::uint32_t> slots_;  // position + 1; 0 is empty
  std::vector<std::pair<std::size_t, std::size_t>> duplicates_;
};

}  // namespace statedict::detail
