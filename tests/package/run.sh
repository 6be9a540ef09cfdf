#!/usr/bin/env bash
# Builds and runs the consumer against statedict: MODE is "install" (find_package against an
# installed tree) or "subdir" (add_subdirectory of the source tree).
# CONSUMER_CMAKE_ARGS (environment) adds configure options for the consumer, e.g. -DCONSUMER_MODE=compiled
# (then tests/package/entry_points.sh checks with nm that statedict's code comes from the library).
# Usage: run.sh MODE SOURCE_DIR BUILD_DIR WORK_DIR CHECKPOINT [CONSUMER_DIR [EXE_NAME]]
set -euo pipefail
mode=$1 src=$2 build=$3 work=$4 ckpt=$5
consumer=${6:-$src/tests/package/consumer}
exe=${7:-consumer}
read -r -a extra <<<"${CONSUMER_CMAKE_ARGS:-}"
rm -rf "$work"
mkdir -p "$work"
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
if [ "$mode" = install ]; then
  cmake --install "$build" --prefix "$work/prefix" >/dev/null
  cmake -S "$consumer" -B "$work/build" -G Ninja "${launcher[@]}" -DCMAKE_PREFIX_PATH="$work/prefix" "${extra[@]}" >/dev/null
  test -x "$work/prefix/bin/statedict"
  "$work/prefix/bin/statedict" --version
else
  cmake -S "$consumer" -B "$work/build" -G Ninja "${launcher[@]}" -DSTATEDICT_SOURCE_DIR="$src" "${extra[@]}" >/dev/null
fi
cmake --build "$work/build" >/dev/null
"$work/build/$exe" "$ckpt"
if [[ " ${extra[*]} " == *" -DCONSUMER_MODE=compiled "* ]]; then
  if [ "$mode" = install ]; then lib_dir=$work/prefix; else lib_dir=$work/build/statedict; fi
  lib=$(find "$lib_dir" -name libstatedict.a | head -n 1)
  bash "$src/tests/package/entry_points.sh" "$lib" "$work/build/CMakeFiles/$exe.dir/main.cpp.o"
fi
