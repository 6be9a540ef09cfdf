#!/usr/bin/env bash
# Configures and builds statedict (library, CLI, examples, tests) in build/ (or $BUILD_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
source scripts/ccache_env.sh
build="${BUILD_DIR:-build}"
# Everything a developer of statedict builds (a plain configure builds only what users install).
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" -DSTATEDICT_BUILD_TESTS=ON \
      -DSTATEDICT_BUILD_COMPILED=ON -DSTATEDICT_BUILD_EXAMPLES=ON -DSTATEDICT_BUILD_BENCHMARKS=ON -DSTATEDICT_WERROR=ON >/dev/null
# BUILD_TARGETS: only these (a CI stage that runs part of the suite builds only that part).
# shellcheck disable=SC2086
cmake --build "$build" -j "$(nproc)" ${BUILD_TARGETS:+--target $BUILD_TARGETS}
