#!/usr/bin/env bash
# Makes (or reuses) the benchmark checkpoints with real PyTorch, then prints the side-by-side table.
# Usage: benchmarks/run.sh [WORKDIR] [--quick] [--runs N] [--many]   (the full run needs ~6 GiB of disk;
# --many: only the many-small-tensors table, ~40 MiB)
# On bookworm the anchors are PyTorch 1.13 and, from the trixie root, 2.6. Run inside the sid root
# (scripts/sid.sh bash benchmarks/run.sh [WORKDIR] ...) the library is built against LibTorch 2.14
# and the anchors are PyTorch 2.14 (torch.load, mmap=True) and safetensors 0.8's load_file.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}  # where scripts/build.sh builds, whatever its name
work=${1:-$build/bench-data}
shift || true
bash scripts/build.sh >/dev/null
/usr/bin/python3 benchmarks/make_checkpoints.py "$work" "$@" >&2
# The tensor-parallel rows' DCP folders need PyTorch 2.x: written in the trixie root when it exists
# (scripts/trixie.sh makes it) and WORKDIR lies inside this checkout, where the root sees it.
root=${STATEDICT_TRIXIE_ROOT:-/var/lib/statedict/trixie}
[ -z "${STATEDICT_IN_ROOT:-}" ] || root=/nonexistent  # inside a root: no nested root
case " $* " in *" --quick "* | *" --many "*) ;; *)
  if [ -f "$root/.statedict-ready" ] && [ "${work#/}" = "$work" ]; then
    bash scripts/trixie.sh python3 benchmarks/make_dcp.py "$work" >&2
  else
    echo "run.sh: no DCP folders for the tensor-parallel rows (needs the trixie root and a WORKDIR inside the checkout)" >&2
  fi ;;
esac
# PyTorch 2.6 rows: its python3 in the trixie root, which sees WORKDIR when it lies inside the checkout.
torch2=()
if [ -f "$root/.statedict-ready" ] && [ "${work#/}" = "$work" ]; then
  torch2=(--torch2 "bash scripts/trixie.sh python3")
else
  echo "run.sh: no PyTorch 2.6 rows (needs the trixie root and a WORKDIR inside the checkout)" >&2
fi
echo "statedict $("$build/tools/statedict/statedict" --version | cut -d' ' -f2), $(date -u +%Y-%m-%d), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
"$build/benchmarks/statedict_bench" "$work" "$@" "${torch2[@]}"
