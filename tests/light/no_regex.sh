#!/usr/bin/env bash
# A program that never calls LoadOptions::rename carries no std::regex code (the light unit), while one
# that does (the CLI, --rename) carries it: std::regex is paid for only where it is used.
# Usage: no_regex.sh LIGHT_BINARY RENAMING_BINARY
set -euo pipefail
# libstdc++'s names (the test runs only with GCC); nm failing is a failure, not "no symbols".
regex_code() {
  local symbols
  symbols=$(nm -C "$1")
  grep -E '^[0-9a-f]+ [TtWw] ' <<<"$symbols" | grep -cE 'std::(__cxx11::)?basic_regex<|std::regex_replace<|std::__detail::_Compiler<' || true
}
light=$(regex_code "$1")
renaming=$(regex_code "$2")
echo "std::regex functions: $light in $(basename "$1"), $renaming in $(basename "$2")"
[ "$renaming" -gt 0 ] || { echo "FAILED: no std::regex code found in $2, which calls rename(): the check sees nothing" >&2; exit 1; }
[ "$light" -eq 0 ] || { echo "FAILED: $1 never calls rename() but carries std::regex code" >&2; exit 1; }
