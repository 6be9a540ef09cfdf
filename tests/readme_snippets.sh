#!/usr/bin/env bash
# Turns every ```cpp block of README.md into a function, so the build proves the README compiles.
# Usage: readme_snippets.sh README.md OUT.cpp
set -euo pipefail
{
  echo '// Generated from README.md by tests/readme_snippets.sh; do not edit.'
  echo '#include "readme_prelude.hpp"'
  awk '/^```cpp$/ { inb = 1; n++; print "namespace snippet_" n " {\n[[maybe_unused]] void run() {"; next }
       /^```/ { if (inb) { print "}\n} // namespace snippet_" n; inb = 0 }; next }
       inb { print }' "$1"
} >"$2.tmp"
mv "$2.tmp" "$2"
