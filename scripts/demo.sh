#!/usr/bin/env bash
# The demo: torchvision's ResNet-18 saved by real PyTorch through nn.DataParallel, loaded into the
# same network written in LibTorch. Prints the report PyTorch users know (and the fix), the report
# after auto_prefix(), and the logits compared with Python's.
#
# It builds only what it runs: the header-only library and examples/resnet18, in their own build
# folder (build-demo, or $DEMO_BUILD_DIR), not the development tree scripts/build.sh makes (tests,
# benchmarks, every example: several minutes more on a fresh clone). The checkpoint is written by
# PyTorch while the example compiles. The one unit is compiled with -O1: on this project's 2-core
# machine that took 47 s of CPU against about 65 s at -O3 (-O0: 42 s), and the demo's run time is
# LibTorch's forward pass and a 47 MB load either way.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
source scripts/ccache_env.sh
build="${DEMO_BUILD_DIR:-build-demo}"
demo="$build/demo"
mkdir -p "$demo"
python_pid=""
if [ ! -f "$demo/resnet18_dataparallel.pt" ] || [ ! -f "$demo/resnet18_expected.json" ]; then
  /usr/bin/python3 examples/resnet18/make_checkpoint.py "$demo" >"$demo/make_checkpoint.log" 2>&1 &
  python_pid=$!
fi
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" -DSTATEDICT_BUILD_EXAMPLES=ON \
      -DSTATEDICT_BUILD_TOOLS=OFF -DSTATEDICT_BUILD_COMPILED=OFF -DSTATEDICT_BUILD_TESTS=OFF \
      -DSTATEDICT_BUILD_BENCHMARKS=OFF -DSTATEDICT_INSTALL=OFF >/dev/null
if ! cmake --build "$build" --target example_resnet18 >"$build/build.log" 2>&1; then
  cat "$build/build.log" >&2
  exit 1
fi
if [ -n "$python_pid" ] && ! wait "$python_pid"; then
  cat "$demo/make_checkpoint.log" >&2
  echo "statedict demo: writing the checkpoint with /usr/bin/python3 failed (log above)" >&2
  exit 1
fi
"./$build/examples/resnet18" "$demo/resnet18_dataparallel.pt" "$demo/resnet18_expected.json"
