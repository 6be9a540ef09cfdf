#!/usr/bin/python3
"""Round trips through PyTorch: files statedict writes (statedict convert) must load in Python with
torch.load(weights_only=True), bit for bit equal to what Python reads from the original.
Usage: roundtrip.py STATEDICT_BINARY FIXTURE_DIR WORKDIR"""
import collections
import json
import os
import struct
import subprocess
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from generate import TinyResNet, flatten, tensor_bytes  # noqa: E402

binary, fixtures, work = sys.argv[1:4]
os.makedirs(work, exist_ok=True)
ST = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32,
      "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool, "C64": torch.complex64}
for _st, _name in [("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2"), ("U16", "uint16"), ("U32", "uint32"), ("U64", "uint64")]:
    if hasattr(torch, _name):
        ST[_st] = getattr(torch, _name)


def read_safetensors(path):
    """A reader written from the safetensors specification (the pip package is not in Debian)."""
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    assert n % 8 == 0, "header not padded to 8 bytes"
    header = json.loads(data[8:8 + n])
    out = collections.OrderedDict()
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        raw = bytearray(data[8 + n + b:8 + n + end])
        out[name] = torch.frombuffer(raw, dtype=torch.uint8).view(ST[e["dtype"]]).reshape(e["shape"]) if raw else torch.zeros(e["shape"], dtype=ST[e["dtype"]])
    return out


def python_view(path, select=None):
    if os.path.isdir(path):  # a torch.distributed.checkpoint folder, as torch itself makes one file of it
        from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
        dcp_to_torch_save(path, os.path.join(work, "dcp_whole.pt"))
        path = os.path.join(work, "dcp_whole.pt")
    obj = read_safetensors(path) if path.endswith(".safetensors") else torch.load(path, weights_only=False)  # our own fixtures (whole modules too)
    if select:
        obj = obj[select]
    return flatten(obj, "", [])


passed = failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


cases = [("resnet_plain.pt", []), ("resnet_legacy.pt", []), ("resnet.safetensors", []), ("resnet_bf16.pt", []),
         ("resnet_module.pt", []), ("dtypes.pt", []), ("training.pt", ["--select", "model"]),
         ("resnet_dataparallel.pt", ["--strip-prefix", "module."])]
# Files only PyTorch 2.x writes (tests/fixtures/torch2): new dtypes through our writers, DCP folders.
if tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 3):
    cases += [("torch2/dtypes2.pt", []), ("torch2/dtypes2.safetensors", []), ("torch2/dcp_2ranks", []), ("torch2/dcp_4ranks", [])]
for src, flags in cases:
    want = python_view(os.path.join(fixtures, src), flags[1] if flags[:1] == ["--select"] else None)
    if flags[:1] == ["--strip-prefix"]:
        want = [(k[len(flags[1]):] if k.startswith(flags[1]) else k, t) for k, t in want]
    for ext in (".pt", ".safetensors"):
        if ext == ".safetensors" and src in ("dtypes.pt", "torch2/dtypes2.pt"):
            continue  # complex128, complex32 and the fnuz float8s have no safetensors dtype
        out = os.path.join(work, src.replace(".", "_").replace("/", "_") + ext)
        r = subprocess.run([binary, "convert", os.path.join(fixtures, src), out] + flags, capture_output=True, text=True)
        check(f"{src}->{ext} exit", r.returncode == 0, r.stderr)
        if r.returncode:
            continue
        if ext == ".pt":
            got_obj = torch.load(out, weights_only=True)
            check(f"{src}->{ext} OrderedDict", isinstance(got_obj, collections.OrderedDict) and hasattr(got_obj, "_metadata"))
            got = list(got_obj.items())
        else:
            got = list(read_safetensors(out).items())
        check(f"{src}->{ext} keys", [k for k, _ in got] == [k for k, _ in want], f"{[k for k, _ in got][:3]} vs {[k for k, _ in want][:3]}")
        for (k, g), (_, w) in zip(got, want):
            same = g.dtype == w.dtype and g.shape == w.shape and tensor_bytes(g) == tensor_bytes(w) and g.stride() == (w.stride() if ext == ".pt" else g.stride())
            check(f"{src}->{ext} {k}", same, f"{g.dtype}{tuple(g.shape)} vs {w.dtype}{tuple(w.shape)}")
            if not same:
                break

# Shared storages survive: Python sees tied tensors as views of one storage.
d = torch.load(os.path.join(work, "dtypes_pt.pt"), weights_only=True)
check("tied storage", d["tied_a"].data_ptr() == d["tied_b"].data_ptr() and d["row_view"].storage_offset() == 6)
# The DataParallel fix works for everyone downstream: a strict load in Python.
m = TinyResNet()
m.load_state_dict(torch.load(os.path.join(work, "resnet_dataparallel_pt.pt"), weights_only=True))
check("strict load after --strip-prefix", True)
# --dtype converts on the way.
out = os.path.join(work, "half.pt")
subprocess.run([binary, "convert", os.path.join(fixtures, "resnet_plain.pt"), out, "--dtype", "float16"], check=True, capture_output=True)
h = torch.load(out, weights_only=True)
check("--dtype float16", h["conv1.weight"].dtype == torch.float16 and h["bn1.num_batches_tracked"].dtype == torch.int64 and
      torch.equal(h["conv1.weight"], torch.load(os.path.join(fixtures, "resnet_plain.pt"), weights_only=False)["conv1.weight"].half()))
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
