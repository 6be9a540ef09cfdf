#!/usr/bin/env bash
# What statedict costs the translation unit that uses it, for the three ways to consume it, in one run:
# the same small LibTorch application compiled without statedict (torch_only); calling statedict::load
# header-only via <statedict/load.hpp> (load_only) and via <statedict/statedict.hpp> (umbrella); via
# <statedict/load.hpp> against statedict::compiled (load_compiled); and with separate compilation, the
# unit compiled with -DSTATEDICT_SEPARATE_COMPILATION (load_separate). Also, once, the unit that
# includes <statedict/src.hpp> (src_unit: statedict::compiled's library, paid once per program).
# Release flags as CMake gives them, one unit at a time; prints CPU seconds (user+sys), the compiler's
# peak memory, each unit's ratio to torch_only (see the rounds below) and the goal of its way.
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
import json, os, statistics, subprocess, sys, tempfile
build, runs, phases = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
# unit -> (way of consuming statedict, goal for the ratio to torch_only or None)
ways = {
    "torch_only": ("no statedict", None),
    "load_only": ("header-only", 2.8),
    # The goal is the application's unit (load_only: the header it needs); the umbrella adds
    # TorchScript (<torch/script.h>) and every other header, for comparison.
    "umbrella": ("header-only, the umbrella header", None),
    "load_compiled": ("statedict::compiled", 1.25),
    "load_separate": ("separate compilation", 1.25),
    "src_unit": ("the one src.hpp unit, once per program", None),
}
units = [u for u in ways if u != "src_unit"]
cmds = {}
for e in json.load(open(os.path.join(build, "compile_commands.json"))):
    unit = os.path.splitext(os.path.basename(e["file"]))[0]
    if unit in ways:
        cmds[unit] = (e["directory"], e["command"])
if phases:  # the same commands, stopped after parsing, or generating code without optimizing it
    for unit in ("torch_only", "load_only"):
        d, cmd = cmds[unit]
        cmds[unit + " -fsyntax-only"] = (d, cmd + " -fsyntax-only")
        cmds[unit + " -O0"] = (d, cmd + " -O0")  # the last -O wins
        for suffix in (" -fsyntax-only", " -O0"):
            ways[unit + suffix] = ("phase of " + ways[unit][0], None)
            units.append(unit + suffix)

def compile_once(unit):
    d, cmd = cmds[unit]
    with tempfile.NamedTemporaryFile() as t:
        subprocess.run(["/usr/bin/time", "-f", "%U %S %M", "-o", t.name, "sh", "-c", cmd], cwd=d, check=True)
        u, s, m = open(t.name).read().split()[-3:]
    return float(u) + float(s), int(m) / 1024

# Rounds, not blocks: each round compiles every unit once, and a unit's ratio is taken against the
# torch_only compile of the same round. This machine's speed drifts by 15% and more within minutes
# (shared host), so ratios within a round hold where absolute seconds do not. src_unit, the slowest
# and paid once per program, is compiled in the first round only.
cpu = {unit: [] for unit in ways}
mem = {unit: [] for unit in ways}
for r in range(runs):
    for unit in units + (["src_unit"] if r == 0 else []):
        c, m = compile_once(unit)
        cpu[unit].append(c); mem[unit].append(m)
print(f"{runs} rounds; ratio = median over rounds of (unit CPU s / torch_only CPU s in the same round)")
print("| unit | way | CPU s (median) | x torch_only | ratio range | peak MiB | x torch_only | goal |")
print("|---|---|---|---|---|---|---|---|")
failed = []
for unit in units + ["src_unit"]:
    ratios = [c / b for c, b in zip(cpu[unit], cpu["torch_only"])]
    ratio = statistics.median(ratios)
    m = max(mem[unit])
    way, goal = ways[unit]
    verdict = ""
    if goal is not None:
        verdict = f"<= {goal}x: {'met' if ratio <= goal else 'NOT met'}"
        if ratio > goal: failed.append(unit)
    print(f"| {unit} | {way} | {statistics.median(cpu[unit]):.1f} | {ratio:.2f} | "
          f"{min(ratios):.2f}-{max(ratios):.2f} | {m:.0f} | {m / max(mem['torch_only']):.2f} | {verdict} |")
if failed:
    print("goals not met: " + ", ".join(failed))
    sys.exit(1)
PY
