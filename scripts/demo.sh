#!/usr/bin/env bash
# The main job on the shipped examples: set up, check and analyse the zoo, compile two
# formulas and show their networks, train each with 3 seeds on all of Fashion-MNIST (the fashion
# recipe: 4 epochs) and compare them on the full 10,000-image test set.
# Outputs go to out/demo/ (out/demo/compare/comparison.json: every run's test accuracy).
# Takes under 10 minutes on 2 CPU cores, set-up included (docs/benchmarks.md).
set -euo pipefail
SECONDS=0
cd "$(dirname "$0")/.."
bash scripts/setup.sh
FC=.venv/bin/formulac
OUT=${FORMULAC_DEMO_OUT:-out/demo}
mkdir -p "$OUT"

echo "== check the zoo"
$FC check examples/*.rec

echo "== analyze: ResNet against the two-step formula"
$FC analyze examples/resnet.rec --depth 8
$FC analyze examples/two_step.rec --depth 8
$FC diff examples/resnet.rec examples/two_step.rec --depth 8 || true   # exit 1 means "they differ"

echo "== compile two formulas (standalone PyTorch files) and show their networks"
$FC compile examples/resnet_post.rec --backbone cifar-resnet --depth 20 -o "$OUT/resnet20.py"
$FC compile examples/two_step.rec --backbone cifar-resnet --depth 20 -o "$OUT/two_step20.py"
$FC info examples/resnet_post.rec --backbone cifar-resnet --depth 20
$FC info examples/two_step.rec --backbone cifar-resnet --depth 20

if $FC --help | grep -q compare; then
  echo "== train both briefly on Fashion-MNIST and compare"
  DATA_ARGS=(--data fashion-mnist)
  if [ ! -e /usr/share/datasets/fashion-mnist ] && [ -z "${FORMULAC_DATA:-}" ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
      (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
        || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1)) \
        || echo "could not install dataset-fashion-mnist"
    fi
  fi
  if [ ! -e /usr/share/datasets/fashion-mnist ] && [ -z "${FORMULAC_DATA:-}" ]; then
    echo "Fashion-MNIST is not available here: comparing on the synthetic dataset instead"
    DATA_ARGS=(--data synthetic)
  fi
  # the network: ResNet-8 on cifar-resnet with 32/64/128 channels at half resolution (a
  # stride-2 stem), fast on a CPU; one run per core at a time
  $FC info examples/two_step.rec --backbone cifar-resnet --depth 8 -O width=32 -O stem_stride=2 \
    --in-channels 1 --input-size 28
  JOBS=$(nproc 2>/dev/null || echo 2)
  [ "$JOBS" -gt 6 ] && JOBS=6
  $FC compare examples/resnet_post.rec examples/two_step.rec --backbone cifar-resnet --depth 8 \
    -O width=32 -O stem_stride=2 "${DATA_ARGS[@]}" --recipe fashion --seeds 3 --jobs "$JOBS" \
    --out "$OUT/compare" --no-progress
fi
echo "== done in $((SECONDS / 60)) min $((SECONDS % 60)) s: outputs in $OUT"
