#!/usr/bin/env bash
# Follows the README's install steps ("Use it in your build") on a copy of the source tree, with HOME in a
# scratch folder, then builds and runs a consumer against what they installed, header-only and linking
# statedict::compiled (whose entry points nm must find in the library, not in the consumer). Also checks that
# installing before building stops with a message saying what to do, and that a headers-only
# configure (tools and compiled library off) installs with nothing to build.
# Usage: readme_install.sh SOURCE_DIR WORK_DIR CHECKPOINT
# With README_INSTALL_COPY_ONLY=1 it stops after copying the tree (tests/package/layout_test.sh).
set -euo pipefail
src=$(cd "$1" && pwd) work=$2 ckpt=$3
rm -rf "$work"
mkdir -p "$work/src" "$work/home"
work=$(cd "$work" && pwd)

# The copy holds the source and nothing else, whatever the layout: a build folder of any name inside
# the tree (build/, CLion's cmake-build-debug/, a plain b/) holding WORK_DIR would otherwise be copied
# into itself until the disk is full. In a git checkout, the files git tracks (as the working tree
# has them; a new file counts once it is added); otherwise everything except .git, every CMake build
# folder (one with a CMakeCache.txt) and WORK_DIR itself.
copy_tree() {
  if [ "$(git -C "$src" rev-parse --is-inside-work-tree 2>/dev/null)" = true ] &&
     git -C "$src" ls-files --error-unmatch CMakeLists.txt >/dev/null 2>&1; then
    (cd "$src" && git ls-files -z --cached | while IFS= read -r -d '' f; do
       if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi  # tracked but deleted here: skipped
     done | tar --null --verbatim-files-from --no-recursion -T - -cf -) | tar -C "$work/src" -xf -
    echo "copied the $(cd "$work/src" && find . -type f | wc -l) files git tracks"
  else
    local excludes=(--exclude=./.git) dir
    while IFS= read -r -d '' dir; do
      [ "$dir" = "$src" ] || excludes+=("--exclude=.${dir#"$src"}")  # an in-source build: the source stays
    done \
      < <(find "$src" -name CMakeCache.txt -printf '%h\0')
    case "$work/" in "$src"/*) excludes+=("--exclude=.${work#"$src"}") ;; esac
    tar -C "$src" "${excludes[@]}" -cf - . | tar -C "$work/src" -xf -
    echo "copied the tree (not a git checkout) without ${excludes[*]}"
  fi
}
copy_tree
[ "${README_INSTALL_COPY_ONLY:-0}" = 1 ] && exit 0
export HOME="$work/home"

# The three command lines of the fenced block that follows the README's marker.
mapfile -t steps < <(awk '/<!-- tested by tests\/package\/readme_install.sh -->/ {m = 1; next}
                          m && /^```sh/ {b = 1; next}
                          b && /^```/ {exit}
                          b && NF {sub(/ *#.*/, ""); print}' "$src/README.md")
if [ "${#steps[@]}" -ne 3 ]; then
  echo "expected 3 commands (configure, build, install) in the README's install block, found ${#steps[@]}" >&2
  exit 1
fi
configure=${steps[0]} build=${steps[1]} install=${steps[2]}
run() { echo "+ $1"; (cd "$work/src" && eval "$1") >/dev/null; }

run "$configure"
# Installing what is not built yet fails, before installing anything, and says what to run.
if (cd "$work/src" && eval "$install") >"$work/early.log" 2>&1; then
  echo "cmake --install succeeded before the build" >&2
  exit 1
fi
# CMake wraps its message at a width, so where the line breaks depends on the path's length.
early=$(tr -s ' \n' '  ' <"$work/early.log")
grep -q "not built yet" <<<"$early" || { cat "$work/early.log" >&2; exit 1; }
[ ! -e "$HOME/.local/include/statedict" ] || { echo "the failed install left headers behind" >&2; exit 1; }
echo "  before the build, it stops: $(grep -o "statedict: [^ ]* is not built yet" <<<"$early")"
run "$build"
run "$install"

prefix="$HOME/.local"
for f in include/statedict/statedict.hpp share/statedict/cmake/statedictConfig.cmake share/statedict/LICENSE; do
  [ -f "$prefix/$f" ] || { echo "missing after install: $prefix/$f" >&2; exit 1; }
done
"$prefix/bin/statedict" --version

# A project of the user's: find_package(statedict) against that prefix, as the README says.
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$src/tests/package/consumer" -B "$work/consumer" -G Ninja "${launcher[@]}" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/consumer" >/dev/null
"$work/consumer/consumer" "$ckpt"
# The same project linking statedict::compiled, which the same install provides (libstatedict.a).
cmake -S "$src/tests/package/consumer" -B "$work/consumer-compiled" -G Ninja "${launcher[@]}" -DCMAKE_PREFIX_PATH="$prefix" \
      -DCONSUMER_MODE=compiled >/dev/null
cmake --build "$work/consumer-compiled" >/dev/null
"$work/consumer-compiled/consumer" "$ckpt" | grep -q "^statedict::compiled$"
bash "$src/tests/package/entry_points.sh" "$(find "$prefix" -name libstatedict.a | head -n 1)" \
     "$work/consumer-compiled/CMakeFiles/consumer.dir/main.cpp.o"

# Headers alone: configure with the tools and the compiled library off, build (nothing to do), install.
(cd "$work/src" && cmake -S . -B build-headers -G Ninja -DSTATEDICT_BUILD_TOOLS=OFF -DSTATEDICT_BUILD_COMPILED=OFF >/dev/null &&
   cmake --build build-headers >/dev/null && cmake --install build-headers --prefix "$work/headers" >/dev/null)
[ -f "$work/headers/include/statedict/statedict.hpp" ] && [ ! -e "$work/headers/bin" ] && [ ! -e "$work/headers/lib" ] ||
  { echo "headers-only install: wrong contents" >&2; find "$work/headers" >&2; exit 1; }
echo "headers-only install: $(find "$work/headers" -type f | wc -l) files, no binary"
