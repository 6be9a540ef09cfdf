#!/usr/bin/env bash
# The whole test suite built with AddressSanitizer + UndefinedBehaviorSanitizer, leak checking on
# (CMake preset "asan"); package consumers and the format check are left to the main run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
source scripts/ccache_env.sh
cmake --preset asan >/dev/null
cmake --build --preset asan -j "$(nproc)"
# The fault sweep starts a process per injected fault; under ASan it tries fewer points per call.
STATEDICT_FAULT_SWEEP=quick ctest --preset asan -j 2 "$@"
