#!/usr/bin/env bash
# The package test is safe in any layout: with a build folder named b/ (and CLion's
# cmake-build-debug/) inside the source tree, and its work folder inside b/, readme_install.sh copies
# the source and nothing else -- from a git checkout and from a plain copy of the tree. Before, its
# `--exclude='./build*'` copied b/ into itself until the disk was full.
# Usage: layout_test.sh SOURCE_DIR WORK_DIR
set -euo pipefail
src=$(cd "$1" && pwd) work=$2
rm -rf "$work"
mkdir -p "$work/tree"
work=$(cd "$work" && pwd)
tree=$work/tree
# A scratch source tree: the files the checkout tracks (or all but its build folders), as a git
# checkout of its own.
if git -C "$src" ls-files --error-unmatch CMakeLists.txt >/dev/null 2>&1; then
  (cd "$src" && git ls-files -z | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
     tar --null --verbatim-files-from --no-recursion -T - -cf -) | tar -C "$tree" -xf -
else
  tar -C "$src" --exclude=./.git --exclude='./build*' -cf - . | tar -C "$tree" -xf -
fi
source_bytes=$(cd "$tree" && find . -type f -printf '%s\n' | awk '{s += $1} END {print s}')
git -C "$tree" init -q
git -C "$tree" add -A
# Build folders that .gitignore does not name, each with a CMake cache and 16 MiB of objects.
for b in b cmake-build-debug; do
  mkdir -p "$tree/$b/tests"
  echo "CMAKE_HOME_DIRECTORY:INTERNAL=$tree" >"$tree/$b/CMakeCache.txt"
  head -c $((16 << 20)) /dev/zero >"$tree/$b/objects.bin"
done
passed=0 failed=0
check_copy() {  # check_copy NAME: the package test's copy, with its work folder inside b/
  local name=$1 copy="$tree/b/tests/package_install"
  if ! README_INSTALL_COPY_ONLY=1 timeout 300 bash "$src/tests/package/readme_install.sh" "$tree" "$copy" /dev/null; then
    echo "FAIL $name: readme_install.sh failed"; failed=$((failed + 1)); return
  fi
  local bytes
  bytes=$(find "$copy/src" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
  # The copy is the source: no bigger than it (plus 64 KiB for what git adds), and not much smaller.
  if [ "$bytes" -gt $((source_bytes + 65536)) ] || [ "$bytes" -lt $((source_bytes * 9 / 10)) ]; then
    echo "FAIL $name: the copy holds $bytes bytes, the source $source_bytes"; failed=$((failed + 1)); return
  fi
  for f in CMakeLists.txt include/statedict/statedict.hpp tests/package/readme_install.sh; do
    [ -f "$copy/src/$f" ] || { echo "FAIL $name: $f is not in the copy"; failed=$((failed + 1)); return; }
  done
  for d in b cmake-build-debug .git; do
    [ ! -e "$copy/src/$d" ] || { echo "FAIL $name: $d/ was copied"; failed=$((failed + 1)); return; }
  done
  echo "ok $name: the copy holds $bytes bytes, the source $source_bytes"
  passed=$((passed + 1))
}
check_copy git-checkout
rm -rf "$tree/.git"
check_copy plain-tree
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
