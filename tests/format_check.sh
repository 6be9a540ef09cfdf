#!/usr/bin/env bash
# Every C++ file is formatted as .clang-format says (clang-format 14).
# Usage: format_check.sh SOURCE_DIR CLANG_FORMAT
set -u
cd "$1"
bad=0
total=0
for f in $(git ls-files '*.hpp' '*.cpp' 2>/dev/null || find include tools tests examples benchmarks -name '*.[ch]pp'); do
  total=$((total + 1))
  "$2" --dry-run --Werror "$f" >/dev/null 2>&1 || { echo "not formatted: $f (run: $2 -i $f)"; bad=$((bad + 1)); }
done
echo "$((total - bad)) passed, $bad failed"
[ "$bad" = 0 ]
