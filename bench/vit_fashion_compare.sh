#!/usr/bin/env bash
# The transformer comparison of issue 16: pre-norm vs parallel vs ReZero vs x0-mixing vs momentum
# on the vit backbone, Fashion-MNIST, the whole training set and the full test set, the
# transformer recipe, the same seeds for every model (paired), via `formulac compare`.
#
#   bash bench/vit_fashion_compare.sh [DIR]                 # the issue's run (3 seeds, 30 epochs)
#   BUDGET=reduced bash bench/vit_fashion_compare.sh [DIR]  # a small run of the same pipeline
#   BUDGET=cpu bash bench/vit_fashion_compare.sh [DIR]      # 2 CPU cores, <= 10 min a run
#
# The cpu budget is the issue's 10-minutes-a-run target on a 2-core CPU: a dim-64 ViT, mean
# pooling, 6 epochs at one thread a run and two runs at a time (68 CPU s an epoch measured), without
# augmentation or label smoothing (with mean pooling: 86.6 % after 5 epochs against 82.1 % with the
# recipe's class token, crops, flips and smoothing: docs/benchmarks.md).
#
# The models have equal parameters up to their per-step scalars (ReZero's alpha_n, x0-mixing's
# a_n and b_n: 1 or 2 per layer). DIR/comparison.md is the table (means, sd, paired t-test,
# Wilcoxon, effect size, time per run); docs/benchmarks.md records it.
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET=${BUDGET:-full}
MODELS="pre_norm parallel rezero x0_mixing momentum"
FILES=$(for m in $MODELS; do printf 'examples/transformers/%s.rec ' "$m"; done)
if [ "$BUDGET" = reduced ]; then
  OUT=${1:-runs/vit-fashion-reduced}
  SIZE=(--depth 2 -O dim=32 -O heads=4 -O patch=4 -O mlp_ratio=2)
  RUN=(--epochs 1 --limit-train 2000 --limit-test 2000 --seeds 2 --threads 1)
elif [ "$BUDGET" = cpu ]; then
  OUT=${1:-runs/vit-fashion-cpu}
  SIZE=(--depth 4 -O dim=64 -O heads=4 -O patch=4 -O mlp_ratio=2 -O input_size=28 -O pool=mean)
  RUN=(--epochs 6 --seeds 3 --no-augment --label-smoothing 0 --jobs 2 --threads 1)
else
  OUT=${1:-runs/vit-fashion}
  SIZE=(--depth 6 -O dim=128 -O heads=4 -O patch=4 -O mlp_ratio=2)
  RUN=(--epochs 30 --seeds 3)
fi
# shellcheck disable=SC2086
.venv/bin/python -m formulac compare $FILES --backbone vit "${SIZE[@]}" --data fashion-mnist \
  --recipe transformer "${RUN[@]}" -o "$OUT" --overwrite
cat "$OUT/comparison.md"
