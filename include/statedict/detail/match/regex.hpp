#pragma once
// The std::regex behind LoadOptions::rename. It is reached only through the function pointer that
// rename() stores in its KeyRule, so a header-only unit that never calls rename() does not generate
// std::regex's code (the renames statedict's own suggestions make are literal and need none), and a
// unit of a statedict::compiled program does not even parse <regex>.
#include <statedict/detail/config.hpp>

#include <functional>
#include <string>

namespace statedict::detail {

/// A rename rule made ready to apply: the key with the rule's replacement done.
using Rewrite = std::function<std::string(const std::string& key)>;

/// Compiles `pattern` (ECMAScript) once; the Rewrite is std::regex_replace(key, pattern, replacement).
/// A pattern std::regex refuses is an options.bad_regex error naming the rule.
STATEDICT_FUNC Rewrite compile_regex(const std::string& pattern, const std::string& replacement);

}  // namespace statedict::detail

#if STATEDICT_DEFINITIONS
#include <statedict/error.hpp>

#include <memory>
#include <regex>

namespace statedict::detail {

STATEDICT_FUNC Rewrite compile_regex(const std::string& pattern, const std::string& replacement) {
  try {
    auto re = std::make_shared<const std::regex>(pattern, std::regex::ECMAScript);
    return [re, replacement](const std::string& key) { return std::regex_replace(key, *re, replacement); };
  } catch (const std::regex_error& e) {
    throw Error("options.bad_regex", "", "rename(\"" + pattern + "\")", std::string("not a valid regular expression: ") + e.what());
  }
}

}  // namespace statedict::detail
#endif
