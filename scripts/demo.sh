#!/usr/bin/env bash
# The main job on the shipped examples: set up, check and analyse the zoo, compile two
# formulas and show their networks, train each briefly on Fashion-MNIST and compare them.
# Outputs go to out/demo/. Takes a few minutes on 2 CPU cores.
set -euo pipefail
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
  $FC compare examples/resnet_post.rec examples/two_step.rec --backbone cifar-resnet --depth 8 \
    "${DATA_ARGS[@]}" --recipe fashion --seeds 2 --limit-train 15000 --limit-test 2000 --epochs 2 \
    --out "$OUT/compare" --no-progress
fi
echo "== done: outputs in $OUT"
