#!/usr/bin/env bash
# Builds the libFuzzer targets with clang-14, replays the saved corpus (fuzz/corpus/, regressions
# included), then fuzzes each target for a bounded time seeded from the test fixtures.
# Usage: fuzz/run.sh [SECONDS_PER_TARGET]   (default 60)
# FUZZ_BUDGET=N: the fuzzing may take N seconds in all (after the build): each target gets at most
# SECONDS_PER_TARGET, at least 10 (CI passes what its time budget leaves).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
bash scripts/deps.sh clang-14 libclang-rt-14-dev unzip
source scripts/ccache_env.sh
cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DSTATEDICT_BUILD_FUZZERS=ON -DSTATEDICT_BUILD_TESTS=OFF -DSTATEDICT_BUILD_EXAMPLES=OFF \
      -DSTATEDICT_BUILD_TOOLS=OFF -DSTATEDICT_BUILD_BENCHMARKS=OFF -DSTATEDICT_INSTALL=OFF >/dev/null
cmake --build build-fuzz -j "$(nproc)"
export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1   # LibTorch's static registries are not ours
fx=tests/fixtures
declare -A seeds=(
  [torch_zip]="$fx/resnet_plain.pt $fx/training.pt $fx/dtypes.pt $fx/resnet_module.pt $fx/resnet_bigendian.pt $fx/torch214/dtypes_torch.pt $fx/torch214/extra_state_bytesio.pt"
  [pickle]=""
  [plain_pickle]="$(ls $fx/files/*.pkl $fx/files/numpy2/*.pkl 2>/dev/null | tr '\n' ' ')"
  [legacy]="$fx/resnet_legacy.pt $fx/dtypes_legacy.pt"
  [safetensors]="$fx/resnet.safetensors $fx/torch214/dtypes_st.safetensors"
  [index]="$fx/sharded_st/model.safetensors.index.json"
  [dcp]=""
  [dcp_st]="$fx/torch214/dcp_st_ranks/__1_0.distcp $fx/torch214/dcp_st_single/__0_0.distcp $fx/torch214/dcp_zstd_st/__1_0.distcp"
  [zstd]="$fx/torch214/dcp_zstd_ranks/__1_0.distcp $fx/torch214/dcp_zstd_twice/__1_0.distcp"
  [hf_shards]="$fx/torch214/hf_consolidated/sharded/shard-00002-model-00001-of-00002.safetensors"
  [pt2]=""
)
targets=(torch_zip pickle plain_pickle legacy safetensors index dcp dcp_st zstd hf_shards pt2)
if [ -n "${FUZZ_BUDGET:-}" ]; then
  share=$((FUZZ_BUDGET / ${#targets[@]} - 3))  # a few seconds a target go to its replay
  [ "$share" -ge 10 ] || share=10
  [ "$share" -ge "$seconds" ] || seconds=$share
  echo "fuzz/run.sh: ${seconds}s a target (budget ${FUZZ_BUDGET}s for ${#targets[@]} targets)"
fi
failed=0
passed=0
for t in "${targets[@]}"; do
  work=build-fuzz/corpus-$t
  mkdir -p "$work" "fuzz/corpus/$t"
  for s in ${seeds[$t]}; do cp -f "$s" "$work/"; done
  if [ "$t" = dcp ]; then for r in 1 2 4; do cp -f "$fx/torch2/dcp_${r}ranks/.metadata" "$work/dcp_${r}ranks.metadata"; done; fi
  if [ "$t" = pickle ]; then
    unzip -p "$fx/training.pt" 'training/data.pkl' >"$work/training.pkl" 2>/dev/null || true
    # torch 2.14's new dtypes (_rebuild_tensor_v3) and an _extra_state io.BytesIO
    unzip -p "$fx/torch214/dtypes_torch.pt" 'dtypes_torch/data.pkl' >"$work/dtypes_torch.pkl" 2>/dev/null || true
    unzip -p "$fx/torch214/extra_state_bytesio.pt" 'extra_state_bytesio/data.pkl' >"$work/extra_state.pkl" 2>/dev/null || true
  fi
  if [ "$t" = pt2 ]; then  # each config of the base archives, behind the byte that picks it
    i=0
    for pair in "export_mlp:data/weights/model_weights_config.json" "export_mlp:data/constants/model_constants_config.json" \
                "aoti_pickle:data/aotinductor/model/weights_config.json"; do
      { printf "\\x$(printf %02x $i)"; unzip -p "$fx/torch214/${pair%%:*}.pt2" "*/${pair#*:}" 2>/dev/null || true; } >"$work/seed$i.json"
      i=$((i + 1))
    done
  fi
  echo "== fuzz_$t: replay fuzz/corpus/$t, then ${seconds}s"
  if ./build-fuzz/fuzz/fuzz_$t -runs=0 "fuzz/corpus/$t" "$work" >/dev/null 2>"build-fuzz/replay-$t.log" &&
     ./build-fuzz/fuzz/fuzz_$t -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=4096 -timeout=20 \
        -artifact_prefix="build-fuzz/crash-$t-" "$work" >/dev/null 2>"build-fuzz/fuzz-$t.log"; then
    grep -E "DONE" "build-fuzz/fuzz-$t.log" | tail -1 || true
    passed=$((passed + 1))
  else
    echo "FAIL fuzz_$t: see build-fuzz/replay-$t.log / build-fuzz/fuzz-$t.log"; tail -30 "build-fuzz/fuzz-$t.log" "build-fuzz/replay-$t.log"
    failed=$((failed + 1))
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
