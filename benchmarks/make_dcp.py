#!/usr/bin/python3
"""The benchmark's tensor-parallel checkpoints, written by torch.distributed.checkpoint itself.

Run in the trixie root (PyTorch 2.6): `scripts/trixie.sh python3 benchmarks/make_dcp.py OUTDIR`, after
make_checkpoints.py wrote OUTDIR/mlp16.pt (benchmarks/run.sh does both). For 2 and 4 ranks it writes
OUTDIR/mlp16_tp{2,4}: the same 16 x Linear(4096, 4096) as DTensors laid out as Megatron-style tensor
parallelism does, even layers column-parallel (weight and bias Shard(0)), odd layers row-parallel
(weight Shard(1), bias replicated), each rank writing its own pieces (gloo on 127.0.0.1).
"""
import os
import sys

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.multiprocessing as mp
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate, Shard, distribute_tensor


def placement(key):
    layer, name = key.split(".")
    if int(layer) % 2 == 0:
        return Shard(0)
    return Shard(1) if name == "weight" else Replicate()


def worker(rank, world, port, src, out):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    mesh = init_device_mesh("cpu", (world,))
    full = torch.load(src, mmap=True, weights_only=True)
    state = {k: distribute_tensor(v, mesh, [placement(k)]) for k, v in full.items()}
    dcp.save(state, checkpoint_id=out)
    dist.barrier()
    dist.destroy_process_group()


def main():
    out = sys.argv[1]
    src = os.path.join(out, "mlp16.pt")
    for world, port in [(2, 29522), (4, 29524)]:
        folder = os.path.join(out, f"mlp16_tp{world}")
        if os.path.exists(os.path.join(folder, ".metadata")):
            continue
        tmp = folder + ".tmp"
        os.makedirs(tmp, exist_ok=True)
        mp.spawn(worker, args=(world, port, src, tmp), nprocs=world, join=True)
        os.rename(tmp, folder)


if __name__ == "__main__":
    main()
