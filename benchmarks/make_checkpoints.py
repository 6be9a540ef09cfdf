#!/usr/bin/python3
"""Checkpoints for the benchmark, written by real PyTorch: n x Linear(4096, 4096) state dicts as
torch zip, plain dict (LibTorch's pickle_load cannot read an OrderedDict), legacy, fp16 and
safetensors; and state dicts of 1k to 100k small tensors. Reuses files already there. For the
headline files it also writes what Python's load_state_dict leaves in an fp32 model (sha256 of each
tensor), which the benchmark compares with what statedict loaded.
Usage: make_checkpoints.py OUTDIR [--quick] [--many]   (--many: only the many-small-tensor files)"""
import collections
import hashlib
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))
from generate import save_safetensors, tensor_bytes  # noqa: E402

out = sys.argv[1]
quick = "--quick" in sys.argv
many_only = "--many" in sys.argv
os.makedirs(out, exist_ok=True)


def write(name, fn):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        fn(path + ".tmp")
        os.rename(path + ".tmp", path)


torch.manual_seed(0)
headline = 4 if quick else 16
for n in ([] if many_only else [1, 4] if quick else [1, 4, 16, 32]):
    sd = None

    def state():
        global sd
        if sd is None:
            sd = torch.nn.Sequential(*[torch.nn.Linear(4096, 4096) for _ in range(n)]).state_dict()
        return sd

    write(f"mlp{n}.pt", lambda p: torch.save(state(), p))
    if n == headline:
        write(f"mlp{n}_plaindict.pt", lambda p: torch.save(dict(state()), p))
        write(f"mlp{n}_legacy.pt", lambda p: torch.save(state(), p, _use_new_zipfile_serialization=False))
        write(f"mlp{n}_fp16.pt", lambda p: torch.save({k: v.half() for k, v in state().items()}, p))
        write(f"mlp{n}.safetensors", lambda p: save_safetensors(state(), p))


def python_values(src, n):
    """sha256 of every tensor of an fp32 model after Python's load_state_dict(torch.load(src))."""
    def fn(p):
        m = torch.nn.Sequential(*[torch.nn.Linear(4096, 4096) for _ in range(n)])
        m.load_state_dict(torch.load(src))
        with open(p, "w") as f:
            json.dump({k: hashlib.sha256(tensor_bytes(v)).hexdigest() for k, v in m.state_dict().items()}, f, indent=0)
    return fn


if not many_only:
    write(f"mlp{headline}.values.json", python_values(os.path.join(out, f"mlp{headline}.pt"), headline))
    write(f"mlp{headline}_fp16.values.json", python_values(os.path.join(out, f"mlp{headline}_fp16.pt"), headline))


def write_sharded(n, shards):
    """The n-layer state dict as HF-style torch shards with a pytorch_model.bin.index.json."""
    folder = os.path.join(out, f"mlp{n}_sharded")
    index = os.path.join(folder, "pytorch_model.bin.index.json")
    if os.path.exists(index):
        return
    os.makedirs(folder, exist_ok=True)
    sd = torch.load(os.path.join(out, f"mlp{n}.pt"))
    keys = list(sd)
    weight_map = {}
    for i in range(shards):
        name = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        part = collections.OrderedDict((k, sd[k]) for k in keys[i * len(keys) // shards:(i + 1) * len(keys) // shards])
        torch.save(part, os.path.join(folder, name))
        weight_map.update({k: name for k in part})
    total = sum(v.numel() * v.element_size() for v in sd.values())
    with open(index + ".tmp", "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1)
    os.rename(index + ".tmp", index)


if not many_only:
    write_sharded(headline, 4)
for n in ([1000, 10000] if quick else [1000, 10000, 100000]):
    write(f"many{n}.pt", lambda p: torch.save(collections.OrderedDict((f"p{i}", torch.randn(64)) for i in range(n)), p))
print(f"checkpoints ready in {out}")
