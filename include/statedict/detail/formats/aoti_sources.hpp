#pragma once
// What an AOTInductor package's generated wrapper source says about the model's constants. The
// wrapper's constructor sets, for each constant i, lines such as
//   constants_info_[0].name = "fc_weight";
//   constants_info_[0].dtype = static_cast<int32_t>(cached_torch_dtype_float32);
//   constants_info_[0].data_size = 512;
//   constants_info_[0].from_folded = false;
//   constants_info_[0].shape = {16, 8};
//   constants_info_[0].stride = {8, 1};
//   constants_info_[0].offset = 0;
//   constants_info_[0].original_fqn = "fc.weight";
// The source is text the package carries beside the .so; it is read as text only (never compiled,
// never loaded), and a line that does not parse is skipped: it describes, it does not decide.
#include <statedict/detail/dtypes.hpp>
#include <statedict/detail/formats/zip.hpp>

#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace statedict::detail {

struct AotiSourceConstant {
  std::string name, fqn;
  Dtype dtype = nullptr;
  std::vector<std::int64_t> sizes, strides;
  std::int64_t offset = 0;
  std::uint64_t data_size = 0;
  bool from_folded = false;
  bool has_data_size = false;
};

namespace aoti_src {
inline bool parse_uint(std::string_view s, std::uint64_t& out) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == 'L' || s.back() == 'U' || s.back() == 'l' || s.back() == 'u')) s.remove_suffix(1);
  if (s.empty() || s.size() > 18) return false;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  out = v;
  return true;
}
inline bool parse_list(std::string_view s, std::vector<std::int64_t>& out) {
  if (s.size() < 2 || s.front() != '{' || s.back() != '}') return false;
  s = s.substr(1, s.size() - 2);
  out.clear();
  while (!s.empty()) {
    const auto comma = s.find(',');
    std::uint64_t v = 0;
    if (!parse_uint(s.substr(0, comma), v) || out.size() >= 64) return false;
    out.push_back(static_cast<std::int64_t>(v));
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return true;
}
/// A C string literal's contents ("fc.weight"), its escapes undone; false for anything else.
inline bool parse_string(std::string_view s, std::string& out) {
  if (s.size() < 2 || s.front() != '"' || s.back() != '"') return false;
  out.clear();
  for (std::size_t i = 1; i + 1 < s.size(); ++i) {
    char c = s[i];
    if (c == '\\' && i + 2 < s.size()) {
      c = s[++i];
      if (c == 'n') c = '\n';
      if (c == 't') c = '\t';
    }
    out.push_back(c);
  }
  return true;
}
}  // namespace aoti_src

/// The constants a wrapper source describes, in index order (only those whose name it sets).
inline std::vector<AotiSourceConstant> aoti_constants_in_source(std::string_view text) {
  static constexpr std::string_view tag = "constants_info_[";
  std::map<std::uint64_t, AotiSourceConstant> found;
  for (std::size_t at = text.find(tag); at != std::string_view::npos; at = text.find(tag, at + 1)) {
    const std::size_t eol = text.find('\n', at);
    std::string_view line = text.substr(at + tag.size(), eol == std::string_view::npos ? std::string_view::npos : eol - at - tag.size());
    const auto close = line.find("].");
    const auto eq = line.find(" = ");
    const auto semi = line.rfind(';');
    std::uint64_t index = 0;
    if (close == std::string_view::npos || eq == std::string_view::npos || semi == std::string_view::npos || eq < close || semi < eq ||
        !aoti_src::parse_uint(line.substr(0, close), index) || index > 10'000'000)
      continue;
    const std::string_view field = line.substr(close + 2, eq - close - 2);
    std::string_view value = line.substr(eq + 3, semi - eq - 3);
    AotiSourceConstant& c = found[index];
    std::uint64_t u = 0;
    if (field == "name") {
      aoti_src::parse_string(value, c.name);
    } else if (field == "original_fqn") {
      aoti_src::parse_string(value, c.fqn);
    } else if (field == "dtype") {
      static constexpr std::string_view dt = "cached_torch_dtype_";
      const auto d = value.find(dt);
      if (d != std::string_view::npos) {
        std::string_view name = value.substr(d + dt.size());
        const auto end = name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_");
        c.dtype = dtype_from_torch(name.substr(0, end));
      }
    } else if (field == "shape") {
      aoti_src::parse_list(value, c.sizes);
    } else if (field == "stride") {
      aoti_src::parse_list(value, c.strides);
    } else if (field == "offset") {
      if (aoti_src::parse_uint(value, u)) c.offset = static_cast<std::int64_t>(u);
    } else if (field == "data_size") {
      c.has_data_size = aoti_src::parse_uint(value, c.data_size);
    } else if (field == "from_folded") {
      c.from_folded = value == "true";
    }
  }
  std::vector<AotiSourceConstant> out;
  for (auto& [i, c] : found)
    if (!c.name.empty()) out.push_back(std::move(c));
  return out;
}

}  // namespace statedict::detail
