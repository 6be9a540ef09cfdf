#!/usr/bin/env bash
# Turns every ```cpp block of the README and the docs/ pages into a function, so the build proves
# the documentation compiles.
# Usage: readme_snippets.sh OUT.cpp README.md [docs/PAGE.md ...]
set -euo pipefail
out=$1
shift
{
  echo '// Generated from the README and docs/ by tests/readme_snippets.sh; do not edit.'
  echo '#include "readme_prelude.hpp"'
  # n counts blocks across all the files, so every snippet gets a namespace of its own.
  awk 'FNR == 1 { file = FILENAME }
       /^```cpp$/ { inb = 1; n++; print "// " file ":" FNR "\nnamespace snippet_" n " {\n[[maybe_unused]] void run() {"; next }
       /^```/ { if (inb) { print "}\n} // namespace snippet_" n; inb = 0 }; next }
       inb { print }' "$@"
} >"$out.tmp"
mv "$out.tmp" "$out"
