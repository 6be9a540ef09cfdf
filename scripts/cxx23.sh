#!/usr/bin/env bash
# The library (statedict::compiled holds all of its code), the CLI and the header-only light unit
# built as C++23, warnings as errors: LibTorch 2.14 needs C++20, which g++ 16 defaults to, and users
# move on to C++23. Run in the sid root: scripts/sid.sh bash scripts/cxx23.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
source scripts/ccache_env.sh
build="${BUILD_DIR:-build}-cxx23"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_STANDARD=23 -DSTATEDICT_BUILD_TESTS=ON \
      -DSTATEDICT_BUILD_COMPILED=ON -DSTATEDICT_WERROR=ON >/dev/null
cmake --build "$build" -j "$(nproc)" --target statedict_compiled statedict_cli statedict_light_unit
ctest --test-dir "$build" --output-on-failure -R '^(light_unit|cli|cli_more)$'
