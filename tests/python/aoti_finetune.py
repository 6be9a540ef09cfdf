#!/usr/bin/python3
"""Writes what tests/aoti checks: an AOTInductor package built from a small model's *initial* weights,
the model fine-tuned afterwards, saved the way a DataParallel training script saves it, and PyTorch's
outputs on a fixed input. Run with the PyTorch whose LibTorch the C++ test links (the package's .so is
compiled against it), once per test run, into the build directory. Usage: aoti_finetune.py OUTDIR

OUTDIR receives
  net.pt2                  the package (aoti_compile_and_package), compiled from the initial weights
  finetuned_dp.pt          nn.DataParallel(fine-tuned model).state_dict(): every key under "module."
  finetuned_constants_dp.pt  the same, only the tensors the package can take (its constant FQNs)
  finetuned_f64_dp.pt      finetuned_constants_dp.pt in float64 (loads with a cast)
  wrong_shape_dp.pt        finetuned_constants_dp.pt with one constant of another shape
  expected.json            torch version, input, outputs (initial and fine-tuned), the package's
                           constants (FQN, dtype, shape) and the state-dict keys it folded away
"""
import json
import os
import sys
import time

import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 16)
        self.act = nn.GELU()
        self.out = nn.Linear(16, 4)

    def forward(self, x):
        return self.out(self.act(self.fc(x)))


def floats(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def main(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    model = Net().eval()
    x = torch.randn(2, 8, generator=torch.Generator().manual_seed(1))

    started = time.monotonic()
    with torch.no_grad():
        program = torch.export.export(model, (x,))
        package = torch._inductor.aoti_compile_and_package(program, package_path=os.path.join(out, "net.pt2"))
    compile_seconds = time.monotonic() - started
    compiled = torch._inductor.aoti_load_package(package)
    fqns = sorted(compiled.get_constant_fqns())
    state = model.state_dict()
    folded = [k for k in state if k not in fqns]
    with torch.no_grad():
        initial = model(x)
        initial_package = compiled(x)
    if not torch.allclose(initial, initial_package, rtol=1e-5, atol=1e-6):
        sys.exit("aoti_finetune.py: the package's outputs differ from the model's before any fine-tuning")

    # Fine-tune what the package can take; a tensor folded into its compiled code keeps its value
    # (the package could not take a new one: see tests/aoti).
    for name, p in model.named_parameters():
        p.requires_grad_(name in fqns)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    data = torch.randn(64, 8, generator=torch.Generator().manual_seed(2))
    target = torch.randn(64, 4, generator=torch.Generator().manual_seed(3))
    model.train()
    for _ in range(20):
        opt.zero_grad()
        nn.functional.mse_loss(model(data), target).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        finetuned = model(x)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, state[k])]

    wrapped = nn.DataParallel(model).state_dict()  # on a machine without GPUs it only wraps: "module." keys
    torch.save(wrapped, os.path.join(out, "finetuned_dp.pt"))
    constants = {k: v for k, v in wrapped.items() if k[len("module."):] in fqns}
    torch.save(constants, os.path.join(out, "finetuned_constants_dp.pt"))
    torch.save({k: v.double() for k, v in constants.items()}, os.path.join(out, "finetuned_f64_dp.pt"))
    bad = dict(constants)
    bad["module.fc.weight"] = torch.zeros(16, 9)
    torch.save(bad, os.path.join(out, "wrong_shape_dp.pt"))

    listing = [{"key": k, "dtype": str(state[k].dtype).replace("torch.", ""), "shape": list(state[k].shape)} for k in fqns]
    expected = {
        "torch_version": torch.__version__,
        "compile_seconds": round(compile_seconds, 1),
        "input": floats(x),
        "input_shape": list(x.shape),
        "initial_output": floats(initial),
        "finetuned_output": floats(finetuned),
        "output_shape": list(finetuned.shape),
        "constants": listing,
        "folded": folded,
        "changed": changed,
    }
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print(f"aoti_finetune.py: {out}/net.pt2 compiled in {compile_seconds:.1f} s; constants {fqns}, folded {folded}")


if __name__ == "__main__":
    main(sys.argv[1])
