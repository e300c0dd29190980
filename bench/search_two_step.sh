#!/usr/bin/env bash
# The search benchmark of issue 8: the two-step family a in [-0.9, 0.9] on cifar-resnet-20,
# Fashion-MNIST, 24 trials with pruning, then --confirm 2 --seeds 3 against ResNet.
#
#   bash bench/search_two_step.sh [DIR]                    # the issue's command, exactly
#   BUDGET=reduced bash bench/search_two_step.sh [DIR]     # a small run of the same pipeline
#
# Writes DIR/bench.json (machine, load, command, wall time, best a, counts, epochs and time
# saved by rejection and pruning, machinery overhead, confirmation table); then
#   .venv/bin/python bench/search_report.py DIR/bench.json
# prints the docs/benchmarks.md section (--write docs/benchmarks.md puts it there).
#
# The reduced run keeps the family, --require stable, the pruner, the baseline and the
# confirmation, and shrinks the rest: cifar-resnet-8, 2000 training images, 3 epochs, a grid of
# 6 values of a (two of them expanding, so rejected untrained), --confirm 1 --seeds 2.
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET=${BUDGET:-full}
if [ "$BUDGET" = reduced ]; then
  OUT=${1:-runs/search-a-reduced}
  CMD=(.venv/bin/formulac search examples/two_step_free.rec --space a=-0.9,-0.6,-0.3,0,0.3,0.6 --require stable
    --data fashion-mnist --epochs 3 --trials 6 --confirm 1 --seeds 2 --baseline examples/resnet_post.rec
    --backbone cifar-resnet --depth 8 --limit-train 2000 --limit-test 1000 --out "$OUT")
elif [ "$BUDGET" = full ]; then
  OUT=${1:-runs/search-a}
  # the command of issue 8, word for word
  CMD=(.venv/bin/formulac search examples/two_step_free.rec --space a=-0.9:0.9 --require stable
    --data fashion-mnist --epochs 4 --trials 24 --confirm 2 --seeds 3 --baseline examples/resnet_post.rec
    --backbone cifar-resnet --depth 20 --out "$OUT")
else
  echo "BUDGET must be full or reduced, not $BUDGET" >&2
  exit 2
fi
shift || true
CMD+=("$@")
if [ -e "$OUT/study.db" ]; then
  echo "$OUT holds a study already: the run would continue it; choose another DIR" >&2
  exit 2
fi
mkdir -p "$OUT"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
start=$(date +%s.%N)
"${CMD[@]}" 2> >(tee "$OUT/search.log" >&2)
end=$(date +%s.%N)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
.venv/bin/python bench/search_report.py --collect "$OUT" --budget "$BUDGET" --wall "$start" "$end" \
  --load "$load_before" "$load_after" --command "${CMD[*]}"
