#!/usr/bin/env bash
# The demo: a checkpoint saved by real PyTorch, read and shown by statedict.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh >/dev/null
./build/tools/statedict/statedict inspect tests/fixtures/training.pt
