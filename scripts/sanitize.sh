#!/usr/bin/env bash
# The whole test suite built with AddressSanitizer + UndefinedBehaviorSanitizer, leak checking on
# (CMake preset "asan"); package consumers and the format check are left to the main run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
# Paths relative to the checkout in ccache's hashes: another clone (CI's) reuses this one's objects.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}" CCACHE_NOHASHDIR=1
cmake --preset asan >/dev/null
cmake --build --preset asan -j "$(nproc)"
# The fault sweep starts a process per injected fault; under ASan it tries fewer points per call.
STATEDICT_FAULT_SWEEP=quick ctest --preset asan -j 2 "$@"
