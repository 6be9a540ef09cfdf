#!/usr/bin/python3
"""Live cross-check against PyTorch: writes every fixture afresh (plus real torchvision ResNet-18
checkpoints) with the PyTorch installed here, then compares `statedict inspect --json --hash` of each
with the listing PyTorch gives for the same object. Usage: crosscheck.py STATEDICT_BINARY WORKDIR"""
import json
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
binary, work = sys.argv[1], sys.argv[2]
subprocess.run([sys.executable, os.path.join(here, "..", "fixtures", "generate.py"), work, "--large"], check=True)
subprocess.run([sys.executable, os.path.join(here, "..", "fixtures", "generate_public_shapes.py"), work], check=True)
passed = failed = 0
for name in sorted(os.listdir(os.path.join(work, "expected"))):
    expected = json.load(open(os.path.join(work, "expected", name)))
    ckpt = name[: -len(".json")]
    if ckpt.startswith("loaded_"):
        continue  # a model's state after a Python load, not a file
    out = subprocess.run([binary, "inspect", "--json", "--hash", os.path.join(work, ckpt)], capture_output=True, text=True)
    if out.returncode != 0:
        print(f"FAIL {ckpt}: exit {out.returncode}: {out.stderr.strip()}")
        failed += 1
        continue
    got = json.loads(out.stdout)
    want = [dict(t) for t in expected["tensors"]]
    problems = []
    if got["format"] != expected["format"]:
        problems.append(f"format {got['format']} != {expected['format']}")
    if len(got["tensors"]) != len(want):
        problems.append(f"{len(got['tensors'])} tensors, PyTorch lists {len(want)}")
    for g, w in zip(got["tensors"], want):
        if g != w:
            problems.append(f"{g['key']}: {g} != {w}")
            break
    if problems:
        print(f"FAIL {ckpt}: " + "; ".join(problems))
        failed += 1
    else:
        passed += 1
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
