#!/usr/bin/env bash
# What statedict costs the translation unit that uses it: the same small LibTorch application compiled
# without statedict (torch_only), calling statedict::load via <statedict/load.hpp> header-only (load_only),
# via <statedict/statedict.hpp> (umbrella), and via <statedict/load.hpp> against statedict::compiled
# (load_compiled). Release flags as CMake gives them, one unit at a time, median of N runs; prints CPU
# seconds (user+sys), the compiler's peak memory, and each unit's ratio to torch_only (see the rounds below).
# With --phases it also compiles torch_only and load_only with -fsyntax-only (parsing and templates) and
# with -O0 (code generated, not optimized): where the header-only cost goes.
# Usage: benchmarks/compile_cost.sh [--phases] [RUNS] [BUILD_DIR]   (default 3, build/compile-cost)
set -euo pipefail
cd "$(dirname "$0")/.."
phases=0
if [ "${1:-}" = --phases ]; then phases=1; shift; fi
runs=${1:-3}
dir=${2:-build/compile-cost}
src=$PWD
cmake -S benchmarks/compile_cost -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSTATEDICT_SOURCE_DIR="$src" \
      -DSTATEDICT_BUILD_COMPILED=ON -DSTATEDICT_BUILD_TOOLS=OFF -DCMAKE_CXX_COMPILER_LAUNCHER= >/dev/null
/usr/bin/python3 - "$dir" "$runs" "$phases" <<'PY'
import json, os, shlex, statistics, subprocess, sys, tempfile
build, runs, phases = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
units = ["torch_only", "load_only", "umbrella", "load_compiled"]
cmds = {}
for e in json.load(open(os.path.join(build, "compile_commands.json"))):
    unit = os.path.splitext(os.path.basename(e["file"]))[0]
    if unit in units:
        cmds[unit] = (e["directory"], e["command"])
if phases:  # the same commands, stopped after parsing, or generating code without optimizing it
    for unit in ("torch_only", "load_only"):
        d, cmd = cmds[unit]
        cmds[unit + " -fsyntax-only"] = (d, cmd + " -fsyntax-only")
        cmds[unit + " -O0"] = (d, cmd + " -O0")  # the last -O wins
        units += [unit + " -fsyntax-only", unit + " -O0"]
# Rounds, not blocks: each round compiles every unit once, and a unit's ratio is taken against the
# torch_only compile of the same round. This machine's speed drifts by 15% and more within minutes
# (shared host), so ratios within a round hold where absolute seconds do not.
cpu = {unit: [] for unit in units}
mem = {unit: [] for unit in units}
for _ in range(runs):
    for unit in units:
        d, cmd = cmds[unit]
        with tempfile.NamedTemporaryFile() as t:
            subprocess.run(["/usr/bin/time", "-f", "%U %S %M", "-o", t.name, "sh", "-c", cmd], cwd=d, check=True)
            u, s, m = open(t.name).read().split()[-3:]
        cpu[unit].append(float(u) + float(s)); mem[unit].append(int(m) / 1024)
print(f"{runs} rounds; ratio = median over rounds of (unit CPU s / torch_only CPU s in the same round)")
print("| unit | CPU s (median) | x torch_only | ratio range | peak MiB | x torch_only |")
print("|---|---|---|---|---|---|")
for unit in units:
    ratios = [c / b for c, b in zip(cpu[unit], cpu["torch_only"])]
    m = max(mem[unit])
    print(f"| {unit} | {statistics.median(cpu[unit]):.1f} | {statistics.median(ratios):.2f} | "
          f"{min(ratios):.2f}-{max(ratios):.2f} | {m:.0f} | {m / max(mem['torch_only']):.2f} |")
PY
