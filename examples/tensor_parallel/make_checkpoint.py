#!/usr/bin/python3
"""A tensor-parallel MLP saved the way distributed training saves it, for examples/tensor_parallel.

Two processes (gloo on 127.0.0.1) hold the MLP as DTensors, Megatron-style: w1 column-parallel
(Shard(0) of its weight and bias), w2 row-parallel (Shard(1) of its weight, bias replicated), and
save it with torch.distributed.checkpoint. Also writes expected.json: an input and the unsplit
model's output, which the C++ ranks' partial outputs, summed, must reproduce.
Run with PyTorch 2.x: `scripts/trixie.sh python3 examples/tensor_parallel/make_checkpoint.py [OUTDIR]`.
"""
import json
import os
import sys

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.multiprocessing as mp
import torch.nn as nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate, Shard, distribute_tensor


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8))


PLACEMENT = {"0.weight": Shard(0), "0.bias": Shard(0), "2.weight": Shard(1), "2.bias": Replicate()}


def worker(rank, world, out):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", "29531"
    dist.init_process_group("gloo", rank=rank, world_size=world)
    mesh = init_device_mesh("cpu", (world,))
    state = {k.replace("0.", "w1.", 1).replace("2.", "w2.", 1): distribute_tensor(v.detach(), mesh, [PLACEMENT[k]])
             for k, v in mlp().state_dict().items()}
    dcp.save(state, checkpoint_id=out)
    dist.barrier()
    dist.destroy_process_group()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else here
    folder = os.path.join(out, "tp_mlp")
    os.makedirs(folder, exist_ok=True)
    for f in os.listdir(folder):
        os.remove(os.path.join(folder, f))
    mp.spawn(worker, args=(2, folder), nprocs=2, join=True)
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = mlp()(x)
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump({"x": x.tolist(), "y": y.tolist()}, f)
    print(f"wrote {folder} and expected.json")


if __name__ == "__main__":
    main()
