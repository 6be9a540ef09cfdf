#!/usr/bin/env bash
# The demo: torchvision's ResNet-18 saved by real PyTorch through nn.DataParallel, loaded into the
# same network written in LibTorch. Prints the report PyTorch users know (and the fix), the report
# after auto_prefix(), and the logits compared with Python's.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh >/dev/null
demo=build/demo
if [ ! -f "$demo/resnet18_dataparallel.pt" ]; then
  /usr/bin/python3 examples/resnet18/make_checkpoint.py "$demo"
fi
./build/examples/resnet18 "$demo/resnet18_dataparallel.pt" "$demo/resnet18_expected.json"
