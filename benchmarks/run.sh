#!/usr/bin/env bash
# Makes (or reuses) the benchmark checkpoints with real PyTorch, then prints the side-by-side table.
# Usage: benchmarks/run.sh [WORKDIR] [--quick] [--runs N]   (the full run needs ~6 GiB of disk)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-build/bench-data}
shift || true
bash scripts/build.sh >/dev/null
/usr/bin/python3 benchmarks/make_checkpoints.py "$work" "$@" >&2
echo "statedict $(./build/tools/statedict/statedict --version | cut -d' ' -f2), $(date -u +%Y-%m-%d), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
./build/benchmarks/statedict_bench "$work" "$@"
