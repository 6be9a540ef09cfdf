#!/usr/bin/python3
"""Writes what a multi-GPU training run leaves behind: torchvision's ResNet-18 saved through
nn.DataParallel (every key starts with "module."), plus Python's logits for a fixed input.
Usage: /usr/bin/python3 make_checkpoint.py OUTDIR"""
import json
import os
import sys

import torch
import torchvision

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
model = torchvision.models.resnet18(weights=None)
with torch.no_grad():  # running statistics as a trained model has them
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
torch.save(torch.nn.DataParallel(model).state_dict(), os.path.join(out, "resnet18_dataparallel.pt"))
model.eval()
with torch.no_grad():
    logits = model(torch.linspace(-1, 1, 3 * 64 * 64).reshape(1, 3, 64, 64))[0]
json.dump({"logits": logits.tolist()}, open(os.path.join(out, "resnet18_expected.json"), "w"))
print(f"wrote {out}/resnet18_dataparallel.pt")
