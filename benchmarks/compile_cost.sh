#!/usr/bin/env bash
# What statedict costs the translation unit that uses it: the same small LibTorch application compiled
# without statedict (torch_only), calling statedict::load via <statedict/load.hpp> header-only (load_only),
# via <statedict/statedict.hpp> (umbrella), and via <statedict/load.hpp> against statedict::compiled
# (load_compiled). Release flags as CMake gives them, one unit at a time, median of N runs; prints CPU
# seconds (user+sys), the compiler's peak memory, and each unit's ratio to torch_only.
# Usage: benchmarks/compile_cost.sh [RUNS] [BUILD_DIR]   (default 3, build/compile-cost)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
dir=${2:-build/compile-cost}
src=$PWD
cmake -S benchmarks/compile_cost -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSTATEDICT_SOURCE_DIR="$src" \
      -DSTATEDICT_BUILD_COMPILED=ON -DSTATEDICT_BUILD_TOOLS=OFF -DCMAKE_CXX_COMPILER_LAUNCHER= >/dev/null
/usr/bin/python3 - "$dir" "$runs" <<'PY'
import json, os, shlex, statistics, subprocess, sys, tempfile
build, runs = sys.argv[1], int(sys.argv[2])
units = ("torch_only", "load_only", "umbrella", "load_compiled")
cmds = {}
for e in json.load(open(os.path.join(build, "compile_commands.json"))):
    unit = os.path.splitext(os.path.basename(e["file"]))[0]
    if unit in units:
        cmds[unit] = (e["directory"], e["command"])
res = {}
for unit in units:
    d, cmd = cmds[unit]
    cpu, mem = [], []
    for _ in range(runs):
        with tempfile.NamedTemporaryFile() as t:
            subprocess.run(["/usr/bin/time", "-f", "%U %S %M", "-o", t.name, "sh", "-c", cmd], cwd=d, check=True)
            u, s, m = open(t.name).read().split()[-3:]
        cpu.append(float(u) + float(s)); mem.append(int(m) / 1024)
    res[unit] = (statistics.median(cpu), max(mem))
base = res["torch_only"]
print("| unit | CPU s | x torch_only | peak MiB | x torch_only |")
print("|---|---|---|---|---|")
for unit, (c, m) in res.items():
    print(f"| {unit} | {c:.1f} | {c / base[0]:.2f} | {m:.0f} | {m / base[1]:.2f} |")
PY
