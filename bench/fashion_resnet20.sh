#!/usr/bin/env bash
# Fashion-MNIST test accuracy of the compiled ResNet-20 formula after a short CPU schedule.
# Usage: bash bench/fashion_resnet20.sh [OUT_DIR]   (figures go to docs/benchmarks.md by hand)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/bench/fashion_resnet20}
.venv/bin/formulac train examples/resnet_post.rec --backbone cifar-resnet --depth 20 \
  --data fashion-mnist --recipe fashion --epochs 3 --limit-train 30000 \
  --out "$OUT" --overwrite --no-progress
.venv/bin/python -c "import json,sys; s=json.load(open(sys.argv[1])); print(json.dumps(s, indent=1))" "$OUT/summary.json"
