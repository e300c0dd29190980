#!/usr/bin/env bash
# The search machinery's time per trial (storage, sampler, analysis, pruner) against the time of
# a realistic short trial: cifar-resnet-8 on 3000 Fashion-MNIST images (2700 after the
# validation split), 1 epoch, 1 thread, 8 TPE trials of the two-step family. The parts come from
# the timestamps the engine records in DIR/timings.jsonl.
#
#   bash bench/search_overhead.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/search-overhead}
if [ -e "$OUT/study.db" ]; then
  echo "$OUT holds a study already; choose another DIR" >&2
  exit 2
fi
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
.venv/bin/formulac search examples/two_step_free.rec --space a=-0.9:0 --data fashion-mnist \
  --backbone cifar-resnet --depth 8 --limit-train 3000 --limit-test 500 --epochs 1 --trials 8 \
  --threads 1 --sampler-seed 0 --out "$OUT" -q
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
.venv/bin/python bench/search_report.py --overhead "$OUT"
